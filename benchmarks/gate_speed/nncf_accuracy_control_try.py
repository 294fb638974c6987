"""Experiment: NNCF's ``quantize_with_accuracy_control`` against the 99% top-1 agreement contract.

NNCF quantizes (histogram activation ranges, overflow fix off, ``--calib-images`` training images), then puts
nodes back in float until top-1 agreement with OpenVINO FP32 on 1,000 other training images (a seeded sample
disjoint from the calibration one) drops by at most ``--max-drop``. Writes, as JSON (``-o``), the
time it took, the FakeQuantize nodes left, the agreement on the first ``--images`` test images, and images/s of
the FP32 export, the QDQ file and the result at batch 1 and 16 (one interleaved run, 2 threads).

    python benchmarks/gate_speed/nncf_accuracy_control_try.py se.onnx se_int8.onnx ../shared/data/cifar10/test \
        ../shared/data/cifar10/train -o nncf_accuracy_control_se.json
"""
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from timm_recal_deploy.images import make_dataset, make_loader, spread_indices
from timm_recal_deploy.metadata import read_metadata
from timm_recal_deploy.openvino_runtime import open_openvino, top1_agreement
from timm_recal_deploy.timing import machine_info, time_interleaved

from nncf_recipes_try import base_parser, write_json  # same folder: the shared arguments and JSON output


def main(argv=None) -> int:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    p = base_parser(__doc__)
    p.add_argument('--max-drop', type=float, default=0.005)
    args = p.parse_args(argv)
    meta = read_metadata(args.fp32)
    test = np.concatenate([x.numpy() for x, _ in make_loader(args.test_dir, meta, 500, limit=args.images)])
    n_train = len(make_dataset(args.train_dir, meta))
    calib_idx = spread_indices(n_train, args.calib_images)
    held_idx = spread_indices(n_train, 1000, seed=1, exclude=calib_idx)
    calib = [x.numpy() for x, _ in make_loader(args.train_dir, meta, 1, indices=calib_idx)]
    held_out = np.concatenate([x.numpy() for x, _ in make_loader(args.train_dir, meta, 500, indices=held_idx)])
    fp32 = open_openvino(args.fp32, precision='fp32')
    labels = fp32(held_out).argmax(1)
    validation = [(held_out[i:i + 100], labels[i:i + 100]) for i in range(0, len(held_out), 100)]

    def agreement(compiled, data) -> float:
        hits = sum(int((compiled(x)[0].argmax(1) == y).sum()) for x, y in data)
        return hits / sum(len(y) for _, y in data)

    params = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM, overflow_fix=OverflowFix.DISABLE)
    core = ov.Core()
    t0 = time.perf_counter()
    model = nncf.quantize_with_accuracy_control(
        core.read_model(args.fp32), nncf.Dataset(calib), nncf.Dataset(validation), agreement,
        max_drop=args.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib),
        advanced_quantization_parameters=params)
    seconds = time.perf_counter() - t0
    ref = fp32(test)
    out = {'machine': machine_info(), 'nncf': nncf.__version__, 'openvino': ov.__version__,
           'model': meta.get('model_spec'), 'test_images': len(test), 'calib_images': len(calib),
           'max_drop': args.max_drop, 'quantize_seconds': round(seconds, 1),
           'fake_quantize_nodes': sum(op.get_type_name() == 'FakeQuantize' for op in model.get_ops())}
    with tempfile.TemporaryDirectory(prefix='nncf_aa_') as tmp:
        path = os.path.join(tmp, 'aa.xml')
        ov.save_model(model, path)
        runners = {'FP32 export': open_openvino(args.fp32, precision='fp32', threads=2),
                   'QDQ file': open_openvino(args.qdq, precision='int8', threads=2),
                   'NNCF accuracy control': open_openvino(path, precision='int8', threads=2)}
        out['agreement'] = {k: round(top1_agreement(r(test), ref), 4) for k, r in runners.items() if k != 'FP32 export'}
        calls = [(f'{k} b{b}', r.prepare(b)) for k, r in runners.items() for b in (1, 16)]
        windows = time_interleaved(calls, warmup=3, repeats=7, min_time_s=0.7)
        out['images_per_s'] = {k: round(int(k.rsplit(' b', 1)[1]) / statistics.median([statistics.median(w) for w in ws]))
                               for k, ws in windows.items()}
    write_json(out, args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
