"""Before / after: the CIFAR ShuffleNetV2 gates moved before the channel shuffle (``ShuffleGatedUnit``,
``ShuffleGatedStage`` in ``deploy/compile_fusion.py``), against the form before (the gate after the shuffle).

    python benchmarks/compiled/shuffle_gate_move.py --precision fp32,bf16 --batch 1,16 \\
        -o benchmarks/compiled/shuffle_gate_move_cpu.json

Per precision and batch: the base net, and the SE, AB and SLE nets each as ``prepare_for_compile`` makes them now
(``moved``) and with the two moves switched off (``after_shuffle``, the form before), all with the shipped trained
weights; ``torch.compile(fullgraph=True)`` with freezing, one static graph each (the ``inductor`` runtime's graph;
FP32 without weight prepacking, as the runtime does for these nets). Every graph is timed once per repeat, the
order reversed every other repeat, and a ratio is the median over repeats of base time / net time of the same
repeat. Run from the repository root, alone on the machine.
"""
import argparse
import json
import statistics
import time
from contextlib import contextmanager
from typing import Dict, Iterator

import timm
import torch
from torch import nn

import timm_recal  # noqa: F401  (registers the models)
import timm_recal_deploy.compile_fusion as cf
from timm_recal_deploy.compiled import compiled_dtype, prepare_for_compile
from timm_recal_deploy.timing import machine_info

BASE = 'shufflenetv2_x0_5_cifar'
NETS = ('se_shufflenetv2_x0_5_cifar', 'ab_shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar')
SIZE = (3, 32, 32)


@contextmanager
def gates_after_the_shuffle() -> Iterator[None]:
    """``fuse_gates`` as it was before the moves: the two rewrites off."""
    units, stages = cf._shuffle_gated_units, cf._shuffle_gated_stages
    cf._shuffle_gated_units = cf._shuffle_gated_stages = lambda model: 0
    try:
        yield
    finally:
        cf._shuffle_gated_units, cf._shuffle_gated_stages = units, stages


def trained(name: str) -> nn.Module:
    return timm.create_model(f'local-dir:weights/{name}.cifar10', pretrained=True).eval()  # the shipped weights


def forms(dtype: torch.dtype) -> Dict[str, nn.Module]:
    models = {BASE: prepare_for_compile(trained(BASE), SIZE, dtype).to(dtype)}
    for net in NETS:
        models[f'{net}/moved'] = prepare_for_compile(trained(net), SIZE, dtype).to(dtype)
        with gates_after_the_shuffle():
            models[f'{net}/after_shuffle'] = prepare_for_compile(trained(net), SIZE, dtype).to(dtype)
    return models


def run(precision: str, batch: int, repeats: int) -> dict:
    dtype = compiled_dtype(precision, 'cpu')
    x = torch.randn(batch, *SIZE, dtype=dtype)
    calls, max_err = {}, {}
    for name, model in forms(dtype).items():
        with torch._inductor.config.patch({'freezing': True, 'cpp.weight_prepack': precision != 'fp32'}), \
                torch.no_grad():
            compiled = torch.compile(model, fullgraph=True, dynamic=False)
            out = compiled(x)
            compiled(x)
        calls[name] = compiled
        if name.endswith('/moved'):
            max_err[name.split('/')[0]] = out.float()
        elif name.endswith('/after_shuffle'):
            net = name.split('/')[0]
            max_err[net] = (max_err[net] - out.float()).abs().max().item()
    with torch.no_grad():
        t0 = time.perf_counter()
        calls[BASE](x)
        n = max(3, int(0.25 / (time.perf_counter() - t0)))
        times = {k: [] for k in calls}
        for r in range(repeats):
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t0 = time.perf_counter()
                for _ in range(n):
                    calls[k](x)
                times[k].append((time.perf_counter() - t0) / n)
    return {'precision': precision, 'batch': batch, 'calls_per_window': n,
            'median_us': {k: statistics.median(v) * 1e6 for k, v in times.items()},
            'vs_base': {k: statistics.median(b / t for b, t in zip(times[BASE], v)) for k, v in times.items()},
            'max_abs_logit_diff_moved_vs_after_shuffle': max_err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--precision', default='fp32,bf16')
    p.add_argument('--batch', default='1,16')
    p.add_argument('--repeats', type=int, default=11)
    p.add_argument('-o', '--output', required=True)
    a = p.parse_args()
    torch.manual_seed(0)
    torch._dynamo.config.cache_size_limit = 64  # one graph per net, precision and batch, all kept
    torch._dynamo.config.accumulated_cache_size_limit = 1024
    runs = [run(prec, int(b), a.repeats) for prec in a.precision.split(',') for b in a.batch.split(',')]
    record = {'machine': machine_info(), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
              'repeats': a.repeats, 'runs': runs}
    with open(a.output, 'w') as f:
        json.dump(record, f, indent=1)
    for r in runs:
        for k, v in r['vs_base'].items():
            print(f"{r['precision']} b{r['batch']:<3d} {k:45s} {r['median_us'][k]:9.1f} us  {v:.3f} of the base")


if __name__ == '__main__':
    main()
