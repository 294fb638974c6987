"""Experiment: NNCF post-training INT8 recipes against the 99% top-1 agreement contract, on a trained net.

For an FP32 export and its QDQ file (whose metadata ranks every node's sensitivity and names the recipe's float
nodes), quantizes with NNCF under several recipes (calibration on ``--calib-images`` images of the training
folder) and writes, as JSON (``-o``), each recipe's top-1 agreement with OpenVINO FP32 on the first ``--images`` test
images, beside the QDQ file's.

    python benchmarks/gate_speed/nncf_recipes_try.py se.onnx se_int8.onnx ../shared/data/cifar10/test \
        ../shared/data/cifar10/train -o nncf_recipes_se.json
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

from timm_recal_deploy.images import make_loader
from timm_recal_deploy.metadata import read_metadata
from timm_recal_deploy.openvino_runtime import open_openvino, top1_agreement
from timm_recal_deploy.timing import machine_info


def base_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every NNCF experiment here takes (``nncf_accuracy_control_try.py`` adds its own)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument('fp32')
    p.add_argument('qdq')
    p.add_argument('test_dir')
    p.add_argument('train_dir')
    p.add_argument('--images', type=int, default=3000)
    p.add_argument('--calib-images', type=int, default=512)
    p.add_argument('-o', '--output', required=True, help='JSON file to write (NNCF logs to stdout)')
    return p


def write_json(out, path: str) -> None:
    """``out`` as JSON at ``path``, whole or not at all."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh:
        json.dump(out, fh, indent=1)
    os.replace(tmp, path)


def recipes(nncf, quantization):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Ranges
    ranked = [name for name, _ in quantization['sensitivity']]

    def ignore(names):
        return nncf.IgnoredScope(names=list(names), validate=False)

    hist = AdvancedQuantizationParameters(activations_range_estimator_params=Ranges.HISTOGRAM)
    hist_no_overflow_fix = AdvancedQuantizationParameters(activations_range_estimator_params=Ranges.HISTOGRAM,
                                                          overflow_fix=OverflowFix.DISABLE)
    return {
        'defaults': {},
        "the QDQ recipe's float nodes ignored": {'ignored_scope': ignore(quantization['fp32_layers'])},
        'histogram ranges': {'advanced_parameters': hist},
        'histogram ranges, float nodes ignored': {'advanced_parameters': hist,
                                                  'ignored_scope': ignore(quantization['fp32_layers'])},
        'histogram ranges, no overflow fix, float nodes ignored': {
            'advanced_parameters': hist_no_overflow_fix, 'ignored_scope': ignore(quantization['fp32_layers'])},
        'histogram ranges, no overflow fix, 80 most sensitive ignored': {
            'advanced_parameters': hist_no_overflow_fix, 'ignored_scope': ignore(ranked[:80])},
    }


def main(argv=None) -> int:
    import nncf
    import openvino as ov
    args = base_parser(__doc__).parse_args(argv)
    meta = read_metadata(args.fp32)
    quantization = read_metadata(args.qdq)['quantization']
    images = np.concatenate([x.numpy() for x, _ in make_loader(args.test_dir, meta, 500, limit=args.images)])
    calib = [x.numpy() for x, _ in make_loader(args.train_dir, meta, 1, limit=args.calib_images)]
    ref = open_openvino(args.fp32, precision='fp32')(images)
    out = {'machine': machine_info(), 'nncf': nncf.__version__, 'openvino': ov.__version__,
           'model': meta.get('model_spec'), 'images': len(images), 'calib_images': len(calib),
           'agreement': {'QDQ file': round(top1_agreement(open_openvino(args.qdq, precision='int8')(images), ref), 4)}}
    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix='nncf_try_') as tmp:
        for i, (name, kwargs) in enumerate(recipes(nncf, quantization).items()):
            model = nncf.quantize(core.read_model(args.fp32), nncf.Dataset(calib), subset_size=len(calib), **kwargs)
            path = os.path.join(tmp, f'r{i}.xml')
            ov.save_model(model, path)
            agreement = top1_agreement(open_openvino(path, precision='int8')(images), ref)
            out['agreement'][f'NNCF: {name}'] = round(agreement, 4)
            print(f'{name}: {agreement:.4f}', file=sys.stderr, flush=True)
    write_json(out, args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
