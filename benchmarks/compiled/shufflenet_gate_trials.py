"""Trials (not kept) on the CIFAR ShuffleNetV2 gates in BF16 at batch 16, where `aoti` keeps 0.79-0.85 of the base.

What each gate position costs, and three exact rewrites of the unit's gate tried against the shipped
`fuse_gates` form (README, compiled engines, "what was tried"):

* ``-POSITION``: the shipped SE / AB net with the gate at POSITION replaced by Identity (what that gate costs);
* ``5d``: the gate of a gated ShuffleUnit on the concat's ``[N, 2, C/2, H, W]`` view, so the pool and the multiply
  index channels affinely (the shipped form multiplies after the shuffle, whose channel index inductor writes
  with a division and a modulo: a scalar pool loop and gathered loads in the multiply);
* ``head``: the head gate moved into the global average pool (``GAP(x * g) = GAP(x) * g``), which drops the
  multiply over the head map and the second pool of it;
* ``5d+head``: both.

    python benchmarks/compiled/shufflenet_gate_trials.py --batch 16 --precision bf16 --ablate \\
        -o benchmarks/compiled/shufflenet_gate_trials_bf16_b16_cpu.json

``torch.compile(fullgraph=True)`` with freezing, one static graph per variant (the `inductor` runtime's graph;
FP32 without weight prepacking, as the runtime does for these nets), the shipped trained weights (``weights/``; a
random init leaves the gates near constant); every variant is timed once per repeat, interleaved, and a ratio is
the median over repeats of base time / variant time of the same repeat. Run from the repository root.
"""
import argparse
import copy
import json
import statistics
import sys
import time

import timm
import torch
from torch import nn

import timm_recal  # noqa: F401  (registers the models)
from timm_recal.models.shufflenetv2 import ShuffleUnit
from timm_recal_deploy import compile_fusion as cf
from timm_recal_deploy.compiled import compiled_dtype, prepare_for_compile
from timm_recal_deploy.timing import machine_info

BASE = 'shufflenetv2_x0_5_cifar'
NETS = ('se_shufflenetv2_x0_5_cifar', 'ab_shufflenetv2_x0_5_cifar')


class GateOnHalves(ShuffleUnit):
    """The unit with its fused gate applied on the concat's two halves, before the shuffle's copy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        n, c = out.shape[:2]
        halves = out.unflatten(1, (2, c // 2))  # [n, 2, c/2, h, w]
        s = out if self.attn.pre is None else self.attn.pre(out)
        v = cf.spatial_mean(s).view(n, 2, c // 2).transpose(1, 2).flatten(1)  # the shuffled channel order
        g = self.attn.excite(v).view(n, c // 2, 2).transpose(1, 2)  # back on the halves' [n, 2, c/2]
        return (halves * g[:, :, :, None, None]).transpose(1, 2).flatten(1, 2)


class GatedAvgPool(nn.Module):
    """The head gate inside the global average pool: ``mean(x * g(mean(x)))`` as ``mean(x) * g(mean(x))``."""

    def __init__(self, gate: cf.FusedChannelGate, flatten: bool):
        super().__init__()
        self.gate, self.flatten = gate, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = cf.spatial_mean(x)
        v = v * self.gate.excite(v)
        return v if self.flatten else v[:, :, None, None]


def gate_on_halves(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if type(m) is ShuffleUnit and type(m.attn) is cf.FusedChannelGate and m.attn.pool_type == 'avg':
            m.__class__ = GateOnHalves
    return model


def head_in_pool(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    pool = model.head.global_pool
    if pool.pool_type != 'avg':
        raise SystemExit(f'head_in_pool: the global pool is {pool.pool_type!r}, not avg')
    model.head.global_pool = GatedAvgPool(model.head_attn, pool.flatten.__class__ is nn.Flatten)
    model.head_attn = nn.Identity()
    return model


def trained(name: str) -> nn.Module:
    return timm.create_model(f'local-dir:weights/{name}.cifar10', pretrained=True).eval()  # the shipped weights


def without(model: nn.Module, name: str) -> nn.Module:
    model = copy.deepcopy(model)
    parent, _, attr = name.rpartition('.')
    setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--precision', default='bf16', choices=('fp32', 'bf16'))
    p.add_argument('--repeats', type=int, default=15)
    p.add_argument('--ablate', action='store_true', help='also time each gate position removed')
    p.add_argument('-o', '--output', required=True)
    a = p.parse_args()
    torch.manual_seed(0)
    torch._dynamo.config.cache_size_limit = 64
    torch._dynamo.config.accumulated_cache_size_limit = 1024
    dtype = compiled_dtype(a.precision, 'cpu')
    size = (3, 32, 32)
    models = {BASE: prepare_for_compile(trained(BASE), size, dtype).to(dtype)}
    x = torch.randn(a.batch, *size, dtype=dtype)
    max_err = {}
    for net in NETS:
        shipped = prepare_for_compile(trained(net), size, dtype).to(dtype)
        models[net] = shipped
        tried = {'5d': gate_on_halves(shipped), 'head': head_in_pool(shipped)}
        tried['5d+head'] = head_in_pool(tried['5d'])
        with torch.no_grad():
            ref = shipped(x).float()
            for k, m in tried.items():
                models[f'{net}/{k}'] = m
                max_err[f'{net}/{k}'] = (m(x).float() - ref).abs().max().item()
        if a.ablate:
            for name, m in shipped.named_modules():
                if isinstance(m, cf.FusedChannelGate):
                    models[f'{net}/-{name}'] = without(shipped, name)
    calls = {}
    for k, m in models.items():
        print('compiling', k, file=sys.stderr)
        with torch._inductor.config.patch({'freezing': True, 'cpp.weight_prepack': a.precision != 'fp32'}), \
                torch.no_grad():
            c = torch.compile(m, fullgraph=True, dynamic=False)
            c(x)
            c(x)
        calls[k] = c
    with torch.no_grad():
        t0 = time.perf_counter()
        calls[BASE](x)
        n = max(3, int(0.2 / (time.perf_counter() - t0)))
        times = {k: [] for k in calls}
        for _ in range(a.repeats):
            for k, c in calls.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    c(x)
                times[k].append((time.perf_counter() - t0) / n)
    record = {
        'batch': a.batch, 'precision': a.precision, 'repeats': a.repeats, 'calls_per_window': n,
        'machine': machine_info(), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
        'median_us': {k: statistics.median(v) * 1e6 for k, v in times.items()},
        'vs_base': {k: statistics.median(b / t for b, t in zip(times[BASE], v)) for k, v in times.items()},
        'max_abs_logit_diff_vs_shipped_eager': max_err,
    }
    with open(a.output, 'w') as f:
        json.dump(record, f, indent=1)
    for k in calls:
        print(f"{k:60s} {record['median_us'][k]:9.1f} us  {record['vs_base'][k]:.3f} of the base")


if __name__ == '__main__':
    main()
