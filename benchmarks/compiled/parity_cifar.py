"""Parity of the compiled runtimes on the trained CIFAR-10 nets (issue 20, "Done when"): every logit against
float64 eager, and top-1 agreement with it over the CIFAR-10 test set.

For each net (shipped weights, ``local-dir:weights/<arch>.cifar10``) the whole test set goes through eager
float64 (the reference), eager FP32, and ``inductor`` / ``aoti`` in FP32 and BF16 (CPU). Recorded per runner: the
largest |logit - float64| (FP32: the goal is at most 2x eager FP32's own), the top-1 agreement with float64
(BF16: the goal is >= 99.5%) and the top-1 accuracy. Writes one JSON document.

    python benchmarks/compiled/parity_cifar.py --data ../shared/data/cifar10/test \
        -o benchmarks/compiled/parity_cifar_cpu.json
"""
import argparse
import json
import platform
import sys
import time
from typing import Dict, List

import numpy as np
import torch

import timm_recal  # noqa: F401  (registers the models)
from timm_recal_deploy.images import make_loader
from timm_recal_deploy.model_io import data_config_of
from timm_recal_deploy.runtimes import open_runtime
from timm_recal_deploy.sources import open_source

NETS = ['shufflenetv2_x0_5_cifar', 'se_shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar',
        'ab_shufflenetv2_x0_5_cifar']
RUNNERS = [('inductor', 'fp32'), ('aoti', 'fp32'), ('eager', 'bf16'), ('inductor', 'bf16'), ('aoti', 'bf16')]


def _logits(fn, batches: List[torch.Tensor]) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x), dtype=np.float64) for x in batches])


def parity_of(net: str, data: str, batch: int, limit, log) -> Dict:
    src = open_source(f'local-dir:weights/{net}.cifar10')
    model = src.model.eval()
    cfg = data_config_of(model, None)
    cfg.update(num_classes=src.info.get('num_classes'), class_labels=src.info.get('class_labels'))
    loader = make_loader(data, cfg, batch, limit=limit)
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y.numpy())
    labels = np.concatenate(labels)
    log(f'{net}: {len(labels)} images')
    with torch.no_grad():
        ref = _logits(lambda x: model.double()(x.double()).numpy(), images)
        fp32 = _logits(lambda x: model.float()(x).numpy(), images)
    top_ref = ref.argmax(1)
    scale = float(np.abs(ref).max())
    rec = {'net': net, 'images': int(len(labels)), 'max_abs_logit_float64': scale,
           'float64_top1': float((top_ref == labels).mean()),
           'eager_fp32': {'max_abs_err': float(np.abs(fp32 - ref).max()),
                          'top1_agreement': float((fp32.argmax(1) == top_ref).mean()),
                          'top1': float((fp32.argmax(1) == labels).mean())},
           'runners': {}}
    for word, precision in RUNNERS:
        t0 = time.perf_counter()
        runner = open_runtime(word, model, precision=precision, input_size=cfg['input_size'], threads=None)
        out = _logits(lambda x: runner(x.numpy()), images)
        err = float(np.abs(out - ref).max())
        rec['runners'][f'{word}/{precision}'] = {
            'max_abs_err': err, 'err_over_eager_fp32': err / rec['eager_fp32']['max_abs_err'],
            'top1_agreement': float((out.argmax(1) == top_ref).mean()),
            'disagreeing_images': int((out.argmax(1) != top_ref).sum()),
            'top1': float((out.argmax(1) == labels).mean()), 'seconds': round(time.perf_counter() - t0, 1),
            'describe': {k: v for k, v in runner.describe().items() if isinstance(v, (str, int, float, bool))}}
        r = rec['runners'][f'{word}/{precision}']
        log(f"  {word}/{precision}: max err {err:.2e} ({r['err_over_eager_fp32']:.2f}x eager FP32), "
            f"agreement {100 * r['top1_agreement']:.2f}%, top-1 {100 * r['top1']:.2f}%")
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', required=True, help='CIFAR-10 test ImageFolder')
    p.add_argument('--nets', default=','.join(NETS))
    p.add_argument('--batch', type=int, default=250)
    p.add_argument('--limit', type=int, help='images (default: all)')
    p.add_argument('-o', '--output', required=True)
    a = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    doc = {'kind': 'timm-recal-compiled-parity', 'torch': torch.__version__, 'platform': platform.platform(),
           'cpu': platform.processor() or platform.machine(), 'threads': torch.get_num_threads(),
           'reference': 'eager float64, same images', 'nets': []}
    for net in a.nets.split(','):
        doc['nets'].append(parity_of(net, a.data, a.batch, a.limit, log))
    with open(a.output, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
