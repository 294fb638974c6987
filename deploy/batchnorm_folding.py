"""Fold inference BatchNorms into the convolutions that feed them, computed in float64 and rounded once to the
model's dtype, before a compiled runtime casts the weights to BF16 or FP16.

Why: inductor's freezing folds conv + BN too, but in the graph's dtype. In a BF16 graph it folds BF16 weights with
BF16 running statistics (each rounded to 8 bits of mantissa) in BF16 arithmetic, so a folded weight carries
several roundings instead of one. Folded first and cast once, the trained CIFAR-10 ShuffleNets' BF16 ``aoti``
top-1 agreement with float64 went from 99.53 / 99.46 / 99.50 / 99.75% (base / SE / SLE / AB) to
99.64 / 99.53 / 99.69 / 99.75% (10,000 test images, one run each). In FP32 it is the fold freezing would do,
with one rounding. On CUDA, where the compiled runtimes do not freeze, the convolutions now carry the BNs
(not measured there).

Which pairs: read from the model's exported graph (``torch.export``), not guessed from module names, so a custom
``forward`` is seen as it runs: a ``BatchNorm2d`` whose input is a ``Conv2d``'s output that nothing else reads,
each module called once. Anything else (a conv whose output is also a residual, a shared module, a conv that
transforms its weight, a BN with an activation built in) is left to freezing. So is a pair whose folded weight or
bias would overflow the dtype the runtime casts to (FP16's 65,504: a BN with a tiny running variance can scale a
weight past it), which the BN alone, computed in the graph, does not.
"""
import copy
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ['conv_batchnorm_pairs', 'fold_batchnorms']

_CONV = torch.ops.aten.conv2d.default
_BATCH_NORM = torch.ops.aten.batch_norm.default


def _graph_names(program: 'torch.export.ExportedProgram') -> Dict[str, str]:
    sig = program.graph_signature
    return {**sig.inputs_to_parameters, **sig.inputs_to_buffers}


def conv_batchnorm_pairs(model: nn.Module, example: torch.Tensor) -> List[Tuple[str, str]]:
    """``(conv name, BN name)`` of every eval ``BatchNorm2d`` that reads only a plain ``Conv2d``'s output, from the
    graph ``torch.export`` traces with ``example``. The conv's own weight must feed the conv node (a subclass that
    standardizes or otherwise transforms it is left alone); the BN must be a plain ``BatchNorm2d`` (timm's
    ``BatchNormAct2d`` has an activation to keep)."""
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    names = _graph_names(program)
    reads: Counter = Counter()  # graph nodes reading each parameter / buffer: a module called twice reads twice
    for node in program.graph.nodes:
        for arg in node.all_input_nodes:
            if arg.name in names:
                reads[names[arg.name]] += 1
    modules = dict(model.named_modules())
    pairs = []
    for node in program.graph.nodes:
        if node.target is not _BATCH_NORM or node.args[0].target is not _CONV or len(node.args[0].users) != 1:
            continue
        conv_node = node.args[0]
        conv_params = [names.get(a.name) for a in conv_node.args[1:3] if isinstance(a, torch.fx.Node)]
        bn_params = [names.get(a.name) for a in node.args[1:5] if isinstance(a, torch.fx.Node)]
        if None in conv_params or None in bn_params or any(reads[p] != 1 for p in conv_params + bn_params):
            continue
        conv_name, bn_name = conv_params[0].rpartition('.')[0], bn_params[-1].rpartition('.')[0]
        conv, bn = modules.get(conv_name), modules.get(bn_name)
        if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
            pairs.append((conv_name, bn_name))
    return pairs


def fold_batchnorms(model: nn.Module, input_size: Optional[Sequence[int]],
                    dtype: Optional[torch.dtype] = None) -> int:
    """Fold (in place, eval mode) every BatchNorm that ``conv_batchnorm_pairs`` finds into its conv, which takes
    the BN's scale into its weight and its shift as a bias (computed in float64, rounded once to the model's
    dtype); the BN becomes ``nn.Identity``. ``dtype``: what the weights will be cast to; a pair whose folded
    values it cannot hold stays unfolded. Returns how many were folded: 0 without an input size or where the
    model does not export (freezing then folds them, as before)."""
    if not input_size:
        return 0
    model.eval()
    param = next(model.parameters(), None)
    example = torch.randn(2, *input_size, dtype=param.dtype if param is not None else torch.float32,
                          device=param.device if param is not None else None)
    try:
        pairs = conv_batchnorm_pairs(model, example)
    except Exception:  # torch.export refuses the model: nothing is changed, freezing folds in the graph's dtype
        return 0
    folded = 0
    for conv_name, bn_name in pairs:
        conv = _folded(model.get_submodule(conv_name), model.get_submodule(bn_name), dtype)
        if conv is not None:
            model.set_submodule(conv_name, conv)
            model.set_submodule(bn_name, nn.Identity())
            folded += 1
    return folded


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d, cast_to: Optional[torch.dtype] = None) -> Optional[nn.Conv2d]:
    """``conv`` with ``bn`` folded in, computed in float64 and rounded once to the conv's dtype; None where a
    folded value is beyond the largest finite number of ``cast_to`` (or of the conv's dtype)."""
    dtype = conv.weight.dtype
    folded = fuse_conv_bn_eval(copy.deepcopy(conv).double(), copy.deepcopy(bn).double())
    limit = min(torch.finfo(t).max for t in (dtype, cast_to or dtype))
    if any(not bool(p.abs().max() <= limit) for p in folded.parameters()):
        return None
    return folded.to(dtype)
