"""What a package's batch shape costs in ``aoti`` at one batch: the dynamic model of the default range
(``--max-batch 1024``), a dynamic model of a small range (``--max-batch 16``: the symbolic batch's range then
decides ``compile_fusion.LOOP_MAX_MACS``, so the small excitation layers are loops, not GEMM calls) and a static
model of that batch (``--static-batches 16``), for a base net and its recalibrated nets, and beside them the
``inductor`` runner's graph of that batch (``torch.compile`` in this process, static): all timed interleaved.

    python benchmarks/compiled/aoti_batch_shapes.py --precision bf16 --batch 16 --repeats 11 \\
        -o benchmarks/compiled/aoti_batch_shapes_bf16_b16_cpu.json

Packages come from ``export_aoti`` (compiled in a child process, cached), the shipped trained weights
(``local-dir:weights/NAME.cifar10``). Per repeat, every runner runs one window of at least ``--min-time`` seconds
(``timing.time_interleaved``: list order on even repeats, reversed on odd); a ratio is the median over repeats of
base time / net time of the same repeat and shape. Run from the repository root, alone on the machine.
"""
import argparse
import json
import os
import statistics
import tempfile
from typing import Dict, Tuple

import numpy as np
import timm
import torch

import timm_recal  # noqa: F401  (registers the models)
from timm_recal_deploy.aoti_package import AotiExportOptions, export_aoti
from timm_recal_deploy.runtimes import open_runtime
from timm_recal_deploy.timing import machine_info, time_interleaved

BASE = 'shufflenetv2_x0_5_cifar'
NETS = (BASE, 'se_shufflenetv2_x0_5_cifar', 'ab_shufflenetv2_x0_5_cifar')


def shapes(batch: int) -> Dict[str, Tuple[int, Tuple[int, ...]]]:
    """``{label: (max_batch, static_batches)}``: the default range, a small dynamic range, a static model."""
    return {'dynamic_1_1024': (1024, (1,)), f'dynamic_1_{batch}': (batch, (1,)), f'static_{batch}': (batch, (batch,))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--precision', default='bf16')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--repeats', type=int, default=11)
    p.add_argument('--min-time', type=float, default=1.0)
    p.add_argument('-o', '--output', required=True)
    a = p.parse_args()
    x = np.random.default_rng(0).standard_normal((a.batch, 3, 32, 32)).astype(np.float32)
    calls, described = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (max_batch, statics) in shapes(a.batch).items():
            for net in NETS:
                path = os.path.join(tmp, f'{net}-{label}.pt2')
                export_aoti(f'local-dir:weights/{net}.cifar10', path,
                            AotiExportOptions(precision=a.precision, max_batch=max_batch, static_batches=statics),
                            log=print)
                runner = open_runtime('aoti', path, precision=a.precision)
                described[f'{net}/{label}'] = runner.describe()['shape']
                calls.append((f'{net}/{label}', runner.prepare(a.batch)))
        for net in NETS:  # the same graph through torch.compile
            model = timm.create_model(f'local-dir:weights/{net}.cifar10', pretrained=True).eval()
            runner = open_runtime('inductor', model, precision=a.precision, input_size=(3, 32, 32))
            calls.append((f'{net}/inductor_{a.batch}', runner.prepare(a.batch)))
            described[f'{net}/inductor_{a.batch}'] = runner.describe()['shape']
        windows = time_interleaved(calls, warmup=3, repeats=a.repeats, min_time_s=a.min_time)
    per_call = {k: [statistics.median(w) for w in v] for k, v in windows.items()}
    record = {'machine': machine_info(), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
              'precision': a.precision, 'batch': a.batch, 'repeats': a.repeats, 'shapes': described,
              'images_per_s': {k: a.batch / statistics.median(v) for k, v in per_call.items()},
              'vs_base': {}, 'vs_dynamic_1_1024': {}}
    for label in [*shapes(a.batch), f'inductor_{a.batch}']:
        base = per_call[f'{BASE}/{label}']
        for net in NETS:
            key = f'{net}/{label}'
            record['vs_base'][key] = statistics.median(b / t for b, t in zip(base, per_call[key]))
            default = per_call[f'{net}/dynamic_1_1024']
            record['vs_dynamic_1_1024'][key] = statistics.median(d / t for d, t in zip(default, per_call[key]))
    with open(a.output, 'w') as f:
        json.dump(record, f, indent=1)
    for k in per_call:
        print(f"{k:45s} {record['images_per_s'][k]:8.0f} img/s  {record['vs_base'][k]:.3f} of the base  "
              f"{record['vs_dynamic_1_1024'][k]:.3f} of its 1..1024 package")


if __name__ == '__main__':
    main()
