"""Recalibration gates rewritten so torch.compile / AOTInductor fuse them (issue 20, item 3).

What inductor does with a gate as written (``TORCH_LOGS=output_code``, CPU, freezing): the convolutions become
oneDNN externs with their BN folded in and their ReLU, or residual sum + ReLU, as post-ops. A gate takes the
residual sum out of its block's last conv and adds: a reduction loop that reads the gated map (the pool), one
oneDNN call per excitation layer on a ``[N, C, 1, 1]`` map, and one loop ``relu(x * g + shortcut)``: inductor
already fuses the multiply with the residual add and the ReLU (in ShuffleNetV2 with the next unit's concat /
shuffle / split copy, and the pool with the concat). ``fuse_gates`` rewrites every pooled gate, exactly (same
parameters, the same arithmetic up to float round-off), so that:

* **the pool reads the cheaper map** (``PointwiseConvGate``): where a gate pools the output of a 1x1 stride-1
  conv + inference BN (the ResNet bottleneck's ``conv3`` / ``bn3``), it may pool that conv's 4x narrower input
  instead (early squeeze, the identity ``gate_fusion.early_squeeze`` uses for ONNX,
  ``GAP(BN(conv(h))) = BN(conv(GAP(h)))``), so the wide gated map is read once, by the loop that multiplies it,
  adds the shortcut and applies the ReLU. That costs a second read of the conv's weights for the pooled vector,
  which outweighs the map where the map is small (batch 1, 14x14 and 7x7 stages), so ``squeeze_early`` picks
  per call, from the shapes, whichever reads fewer values;
* **the excitation runs on vectors**: pool to ``[N, C]`` and run 1x1 convs (grouped and depthwise ones too), BN
  and the SLE's 4x4 conv as matrix products and per-channel arithmetic on ``[N, C]``, so BN, biases and
  activations fuse into inductor loops (the gate's last bias and sigmoid into the multiply's loop); small
  ungrouped layers at a small batch (``LOOP_MAX_MACS``) as loops too, not GEMM calls;
* the multiply stays a plain broadcast ``x * g[:, :, None, None]``, which inductor fuses into the loop after it;
* **the pool sums rows first on the CPU** (``spatial_mean``), so its round-off does not grow with the map;
* **a ShuffleNetV2 unit gates before its channel shuffle** (``ShuffleGatedUnit``): the gate after the shuffle
  pools and multiplies channels whose index inductor writes with a division and a modulo (scalar loops, gathered
  loads); on the concat, in its own channel order, with the excitation's channel-indexed parameters permuted to
  match, the pool is a vectorized reduction and the multiply joins the shuffle's own transposing copy; an SLE's
  multiply on a stage's output likewise (``ShuffleGatedStage``).

No custom op: plain ATen ops export (``torch.export``, ``aoti_compile_and_package``), compile with
``fullgraph=True`` and let inductor fuse across the gate on every device (C++ loops on CPU, Triton on CUDA).
Gates without a pool (``nosqueeze``, the per-pixel ``pixel*`` designs) have nothing to squeeze and are left as
they are; inductor fuses their pointwise parts already.
"""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from timm_recal.layers import BoosterGate, SkipLayerExcitation, SqueezeExcite

__all__ = ['fuse_gates', 'FusedChannelGate', 'FusedSkipLayerExcitation', 'LateMap', 'PointwiseConvGate',
           'ShuffleGatedStage', 'ShuffleGatedUnit', 'spatial_mean', 'spatial_sum', 'squeeze_early']


#: an ungrouped excitation layer runs as an inductor loop, not a GEMM extern, where batch x its weights is at most
#: this (known when the graph is built; ``FusedChannelGate.excite`` has the measurements)
LOOP_MAX_MACS = 1 << 16


def spatial_sum(s: torch.Tensor) -> torch.Tensor:
    """The sum of ``s`` ``[N, C, H, W]`` over H and W, ``[N, C]``, in float32 at least; on the CPU as row sums,
    then their sum.

    Why: inductor's C++ reduction over a channels-last map (a oneDNN convolution's output) keeps one running sum
    per channel and adds the H*W values one after another, so its round-off grows with H*W, where eager's cascade
    sum (and Triton's tree reductions on CUDA) do not. A gate's BN can have a large gain (the trained AB net's),
    which turned that round-off into 3x eager FP32's largest logit error. Rows first: measured in compiled nets
    on the CPU, within 2% of one running sum (``FusedChannelGate.pool``). Row sums in float32, as a BF16 buffer
    would round them."""
    if s.device.type != 'cpu':
        return s.sum((2, 3), dtype=torch.promote_types(s.dtype, torch.float32))
    return s.sum(3, dtype=torch.promote_types(s.dtype, torch.float32)).sum(2)


def spatial_mean(s: torch.Tensor) -> torch.Tensor:
    """The mean of ``s`` ``[N, C, H, W]`` over H and W, ``[N, C]`` in ``s``'s dtype (``spatial_sum``)."""
    return (spatial_sum(s) / (s.shape[2] * s.shape[3])).to(s.dtype)


def _vector_conv(v: torch.Tensor, conv: nn.Conv2d, as_loop: bool = False) -> torch.Tensor:
    """``conv`` applied to pooled vectors ``v`` ``[N, C_in * kh * kw]`` whose map is exactly its kernel's size.

    A conv whose kernel covers its whole input is a (grouped) matrix product; depthwise (groups = C) is an
    elementwise product. The result is ``[N, C_out]``. ``as_loop``: an ungrouped one as a broadcast product and
    a sum, which inductor writes as a loop beside the gate's other loops instead of calling a GEMM.
    """
    w = conv.weight.flatten(1)
    g = conv.groups
    if g == 1 and as_loop:
        out = (v.unsqueeze(1) * w.unsqueeze(0)).sum(-1)
        return out if conv.bias is None else out + conv.bias
    if g == 1:
        return F.linear(v, w, conv.bias)
    n, cout = v.shape[0], w.shape[0]
    if g == cout and w.shape[1] == 1:
        out = v * w.view(1, cout)
    else:
        out = torch.einsum('ngi,goi->ngo', v.view(n, g, -1), w.view(g, cout // g, -1)).reshape(n, cout)
    return out if conv.bias is None else out + conv.bias


def _vector_bn(v: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """Inference BatchNorm on ``[N, C]`` (``nn.BatchNorm2d`` itself insists on 4-d input)."""
    if isinstance(bn, nn.Identity):
        return v
    return F.batch_norm(v, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _vector_layer(v: torch.Tensor, layer: nn.Module, as_loop: bool = False) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        return _vector_conv(v, layer, as_loop)
    if isinstance(layer, nn.BatchNorm2d):
        return _vector_bn(v, layer)
    return layer(v)  # activations and Identity are shape-agnostic


def _check_eval(module: nn.Module) -> None:
    if module.training:
        raise RuntimeError(f'{type(module).__name__} is an inference rewrite (fuse_gates); it has no train mode')


class FusedChannelGate(nn.Module):
    """``x * g(pool(pre(x)))`` with the excitation ``g`` run on ``[N, C]`` vectors.

    Built by ``fuse_gates`` from an SE gate (ours or timm's ``SEModule``) or a pooled Accuracy Booster gate; it
    holds the original gate's own layers (same parameters), so the rewrite copies nothing.
    """

    def __init__(self, layers: List[nn.Module], pool: str = 'avg', pre: Optional[nn.Module] = None,
                 weighted_pool: Optional[nn.Conv2d] = None):
        super().__init__()
        if pool not in ('avg', 'max', 'avg+max', 'weighted'):
            raise ValueError(f'FusedChannelGate: unknown pool {pool!r}')
        self.pool_type = pool
        self.pre = pre
        self.weighted_pool = weighted_pool
        self.layers = nn.ModuleList(layers)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled ``[N, C]``; averages sum rows first on the CPU (``spatial_sum``). Measured, AOTInductor
        FP32, all 10,000 CIFAR-10 test images, largest logit error / eager FP32's: the trained AB net 3.03x with
        one running sum per channel, 1.00x with rows first. Inductor, one interleaved run each, rows first / one
        sum: AB and SE CIFAR nets at batch 1 and 16, FP32 and BF16, seresnet50 FP32 at 1 and 16: 0.98-1.02."""
        s = x if self.pre is None else self.pre(x)
        if self.pool_type == 'avg':
            return spatial_mean(s)
        if self.pool_type == 'max':
            return s.amax((2, 3))
        if self.pool_type == 'avg+max':  # timm SEModule(add_maxpool=True)
            return 0.5 * spatial_mean(s) + 0.5 * s.amax((2, 3))
        # Booster design G: a depthwise conv whose kernel is the whole map, i.e. a per-channel weighted sum
        w = self.weighted_pool.weight
        if s.shape[-2:] != w.shape[-2:]:
            raise ValueError(f'FusedChannelGate: the weighted pool was built for {tuple(w.shape[-2:])} maps, '
                             f'got {tuple(s.shape[-2:])}')
        return spatial_sum(s * w.squeeze(1)).to(s.dtype)

    def excite(self, v: torch.Tensor) -> torch.Tensor:
        """The excitation on ``[N, C]``; an ungrouped layer runs as an inductor loop where batch x weights is at
        most ``LOOP_MAX_MACS`` in the graph being built (a symbolic batch whose range does not decide: a GEMM).

        Why: a oneDNN BF16 linear cost about 27 us per call on the CPU whatever its size (17 took 454 us of a
        6.5 ms ``se_shufflenetv2_x0_5_cifar`` call at batch 16). Inductor, one interleaved run each, recalibrated
        / base with loops for every layer up to 65,536 weights against GEMMs: that net at batch 1 0.95 / 0.82
        (BF16) and 0.97 / 0.92 (FP32); ``seresnet50`` at batch 1 0.93 / 0.90 (BF16) and 0.94 / 0.93 (FP32), but at
        batch 16, where a GEMM reads the weights once for the whole batch, 0.91 / 0.94 and 0.91 / 0.92. SLE's
        layers stay GEMMs: inductor inlines the adaptive pool before them into such a loop, once per output
        (0.41 of the base at batch 16)."""
        for layer in self.layers:
            loop = isinstance(layer, nn.Conv2d) and statically_known_true(
                v.shape[0] * layer.weight.numel() <= LOOP_MAX_MACS)
            v = _vector_layer(v, layer, loop)
        return v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        return x * self.excite(self.pool(x))[:, :, None, None]


class FusedSkipLayerExcitation(nn.Module):
    """SLE with its 4x4 conv and 1x1 conv as matrix products on the flattened adaptive pool of the early map."""

    def __init__(self, sle: SkipLayerExcitation):
        super().__init__()
        self.pool_size = sle.pool.output_size
        self.conv1, self.act, self.conv2, self.gate = sle.conv1, sle.act, sle.conv2, sle.gate

    def excite(self, x_early: torch.Tensor) -> torch.Tensor:
        """The gate ``[N, C_out]`` of ``x_early``."""
        v = F.adaptive_avg_pool2d(x_early, self.pool_size).flatten(1)
        return self.gate(_vector_conv(self.act(_vector_conv(v, self.conv1)), self.conv2))

    def forward(self, x_early: torch.Tensor, x_late: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        return x_late * self.excite(x_early)[:, :, None, None]


class PointwiseConvGate(nn.Module):
    """``gate(BN(conv(h)))`` for a 1x1 stride-1 conv, pooling whichever map costs fewer reads.

    Replaces a bottleneck's ``conv3`` (its ``bn3`` and ``se`` become no-ops). Two exact ways to get the pooled
    vector: pool the wide output, or pool the conv's input and run the conv's weights on it (early squeeze,
    ``GAP(BN(conv(h))) = BN(conv(GAP(h)))``). The early squeeze reads the narrow map (``N*HW*C_in`` values) and
    the weights a second time (``C_in*C_out``, the prepacked copy the conv reads is another buffer); the late
    one reads the wide map (``N*HW*C_out``). Profiled in compiled ResNet-50s at batch 1, the weight re-reads of
    the 14x14 and 7x7 stages were most of the gates' cost, so the choice is made per call from the shapes:
    static in a graph compiled per batch; with a symbolic batch, the early squeeze unless the batch range
    decides it (``statically_known_true``: a guard would pin an exported graph's batch range).
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, gate: FusedChannelGate):
        super().__init__()
        if not _is_pointwise_conv(conv) or gate.pool_type != 'avg' or gate.pre is not None:
            raise ValueError('PointwiseConvGate needs a 1x1 stride-1 unpadded conv and an average-pooled gate')
        self.conv, self.bn, self.gate = conv, bn, gate

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        _check_eval(self)
        out = self.bn(self.conv(h))
        if squeeze_early(h.shape[0] * h.shape[2] * h.shape[3], h.shape[1], out.shape[1]):
            v = _vector_bn(_vector_conv(spatial_mean(h), self.conv), self.bn)
        else:
            v = spatial_mean(out)
        return out * self.gate.excite(v)[:, :, None, None]


class ShuffleGatedUnit(nn.Module):
    """A ShuffleNetV2 unit ``gate(shuffle(cat(...)))`` as ``shuffle(gate'(cat(...)))``: the same gate on the
    concat's channel order, its channel-indexed parameters permuted to it (``permuted_gate``).

    Why: the shuffle's channel index ``c -> (c % 2) * C/2 + c // 2`` reaches the gate's pool and multiply, which
    inductor then writes as scalar loops and gathered loads (BF16 ``se_shufflenetv2_x0_5_cifar`` at batch 16: a
    scalar pool and a gathering multiply per gated unit). Before the shuffle the pool reads the concat in order and
    the multiply fuses into the shuffle's transposing copy, the same copy the ungated base net makes.
    """

    def __init__(self, unit: nn.Module, gate: FusedChannelGate):
        super().__init__()
        unit.attn = nn.Identity()  # its gate runs here, permuted
        self.unit, self.gate = unit, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm_recal.models.shufflenetv2 import channel_shuffle
        _check_eval(self)
        return channel_shuffle(self.gate(self.unit.concat(x)), 2)


class ShuffleGatedStage(nn.Module):
    """A ShuffleNetV2 stage and the SLE that gates its output from its input, the multiply moved before the last
    unit's channel shuffle (``ShuffleGatedUnit``'s reason): ``shuffle(cat * g')`` for ``shuffle(cat) * g``, the
    SLE's last conv's outputs permuted to the concat's order. The net's own SLE slot then passes the map through
    (``LateMap``)."""

    def __init__(self, stage: nn.Sequential, sle: FusedSkipLayerExcitation, order: torch.Tensor):
        super().__init__()
        self.units, self.last = stage[:-1], stage[-1]
        self.sle = copy.deepcopy(sle)  # its conv2 is replaced below; small (a gate)
        self.sle.conv2 = _take(sle.conv2, _inverse(order), 0, ('weight', 'bias'))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm_recal.models.shufflenetv2 import channel_shuffle
        _check_eval(self)
        out = self.last.concat(self.units(x))
        g = self.sle.excite(x)[:, :, None, None]
        if statically_known_true(x.shape[0] == 1):  # measured: at batch 1 the multiply after the shuffle is faster
            return channel_shuffle(out, 2) * channel_shuffle(g, 2)
        return channel_shuffle(out * g, 2)


class LateMap(nn.Module):
    """An SLE slot whose multiply a ``ShuffleGatedStage`` does: returns the later map as it is."""

    def forward(self, x_early: torch.Tensor, x_late: torch.Tensor) -> torch.Tensor:
        return x_late


def shuffle_order(channels: int, groups: int = 2) -> torch.Tensor:
    """``order[c]``: the concat channel that ``channel_shuffle`` puts at channel ``c``."""
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


def _inverse(order: torch.Tensor) -> torch.Tensor:
    """``inverse[order[c]] = c``: where each concat channel lands after the shuffle."""
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return inverse


def _per_channel(layer: nn.Module, channels: int) -> bool:
    """A layer acting on each channel alone: inference BN, a depthwise 1x1 conv, or one without parameters."""
    if isinstance(layer, nn.BatchNorm2d):
        return layer.num_features == channels
    if isinstance(layer, nn.Conv2d):
        return layer.groups == layer.in_channels == layer.out_channels == channels and layer.weight[0].numel() == 1
    return next(layer.parameters(), None) is None and next(layer.buffers(), None) is None


@torch.no_grad()
def _take(layer: nn.Module, index: torch.Tensor, dim: int, names=('weight', 'bias', 'running_mean',
                                                                  'running_var')) -> nn.Module:
    """``layer`` (a copy) with its tensors ``names`` re-indexed by ``index`` along ``dim``."""
    layer = copy.deepcopy(layer)
    for name in names:
        t = getattr(layer, name, None)
        if t is not None and t.dim() > dim:
            t.data = t.data.index_select(dim, index.to(t.device)).contiguous()
    return layer


def permuted_gate(gate: FusedChannelGate, order: torch.Tensor) -> Optional[FusedChannelGate]:
    """``gate`` taking and giving channels in the order before ``order`` (``x[:, order]`` is what it gated):
    per-channel layers and the pool weights are re-indexed, the first ungrouped conv's inputs and the last one's
    outputs; None where a layer mixes channels in groups (or ``gate`` has a map-level ``pre``), which this
    cannot permute."""
    if gate.pre is not None:
        return None
    c, inverse = order.numel(), _inverse(order)
    mixing = [i for i, m in enumerate(gate.layers) if not _per_channel(m, c)]
    if any(not (isinstance(gate.layers[i], nn.Conv2d) and gate.layers[i].groups == 1) for i in mixing):
        return None
    layers = []
    for i, layer in enumerate(gate.layers):
        if not mixing or i < mixing[0] or i > mixing[-1]:  # on the gated channels: BN, depthwise, activations
            layer = _take(layer, inverse, 0)
        if mixing and i == mixing[0]:  # its inputs are the pooled channels
            layer = _take(layer, inverse, 1, ('weight',))
        if mixing and i == mixing[-1]:  # its outputs are the gate's channels
            layer = _take(layer, inverse, 0, ('weight', 'bias'))
        layers.append(layer)
    weighted = None if gate.weighted_pool is None else _take(gate.weighted_pool, inverse, 0, ('weight',))
    return FusedChannelGate(layers, pool=gate.pool_type, weighted_pool=weighted)


def _shuffle_gated_units(model: nn.Module) -> int:
    """ShuffleNetV2 units (forward unchanged) whose gate is a fused channel gate, gated before the shuffle."""
    from timm_recal.models.shufflenetv2 import ShuffleUnit
    done = 0
    for parent in list(model.modules()):
        for name, unit in list(parent.named_children()):
            if type(unit) is not ShuffleUnit or type(unit.attn) is not FusedChannelGate:
                continue
            channels = unit.branch2[-1].conv.out_channels * 2  # the concat: two halves of the branch width
            gate = permuted_gate(unit.attn, shuffle_order(channels))
            if gate is not None:
                setattr(parent, name, ShuffleGatedUnit(unit, gate))
                done += 1
    return done


def _shuffle_gated_stages(model: nn.Module) -> int:
    """ShuffleNetV2 stages whose output an SLE gates (a fused one; the stage's last unit ungated), moved before the
    last unit's shuffle (``ShuffleGatedStage``)."""
    from timm_recal.models.shufflenetv2 import ShuffleNetV2, ShuffleUnit
    done = 0
    for net in model.modules():
        if not isinstance(net, ShuffleNetV2) or net.sle is None:
            continue
        for i, (stage, sle) in enumerate(zip(net.stages, net.sle)):
            if type(sle) is not FusedSkipLayerExcitation or type(stage) is not nn.Sequential \
                    or type(stage[-1]) is not ShuffleUnit or type(stage[-1].attn) is not nn.Identity:
                continue
            net.stages[i] = ShuffleGatedStage(stage, sle, shuffle_order(stage[-1].branch2[-1].conv.out_channels * 2))
            net.sle[i] = LateMap()
            done += 1
    return done


def squeeze_early(positions, c_in: int, c_out: int) -> bool:
    """Whether pooling a 1x1 conv's input and re-reading its weights (``positions*c_in + c_in*c_out`` values)
    reads less than pooling its output (``positions*c_out``); ``positions`` is batch x height x width and may
    be symbolic (then True unless its range decides)."""
    return not statically_known_true(positions * (c_out - c_in) <= c_in * c_out)


def _is_pointwise_conv(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1)
            and conv.padding in ((0, 0), 'valid') and conv.padding_mode == 'zeros')


def _timm_se_types() -> Tuple[type, ...]:
    from timm.layers.squeeze_excite import SEModule
    return (SEModule,)


def _fused(gate: nn.Module) -> Optional[nn.Module]:
    """The fused form of a gate module, or None if it is no pooled gate this module knows."""
    if isinstance(gate, SqueezeExcite):
        return FusedChannelGate(list(gate.fc) + [gate.gate], pool=gate.pool_type)
    if isinstance(gate, _timm_se_types()):
        pool = 'avg+max' if getattr(gate, 'add_maxpool', False) else 'avg'
        return FusedChannelGate([gate.fc1, gate.bn, gate.act, gate.fc2, gate.gate], pool=pool)
    if isinstance(gate, BoosterGate) and gate.pool_type is not None:
        layers = [m for m in (gate.mix, gate.norm) if m is not None] + [gate.gate]
        if gate.pool_type == 'avg':
            return FusedChannelGate(layers, pool='avg', pre=gate.spatial)
        return FusedChannelGate(layers, pool='weighted', pre=gate.spatial, weighted_pool=gate.pool)
    if isinstance(gate, SkipLayerExcitation):
        return FusedSkipLayerExcitation(gate)
    return None


def _early_squeeze_blocks(model: nn.Module) -> int:
    """Bottlenecks (timm's, forward unchanged) whose ``se`` is an average-pooled fused gate after conv3 + bn3."""
    from timm.models.resnet import Bottleneck
    done = 0
    for block in model.modules():
        if type(block).forward is not Bottleneck.forward or not isinstance(block.se, FusedChannelGate):
            continue
        gate = block.se
        if type(gate) is not FusedChannelGate or gate.pool_type != 'avg' or gate.pre is not None:
            continue
        if not _is_pointwise_conv(block.conv3) or not isinstance(block.bn3, (nn.BatchNorm2d, nn.Identity)):
            continue
        block.conv3 = PointwiseConvGate(block.conv3, block.bn3, gate)
        block.bn3 = nn.Identity()
        block.se = None
        done += 1
    return done


def fuse_gates(model: nn.Module) -> int:
    """Rewrite every pooled gate of ``model`` (in place, eval mode) into the form inductor fuses; returns how
    many gates it rewrote.

    Exact: the rewritten model computes the same function with the same parameters (outputs equal to float
    round-off). Inference only: the rewritten gates refuse train mode. Call it before ``torch.compile`` or
    ``torch.export``; a second call finds nothing left to rewrite and returns 0.
    """
    model.eval()
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            fused = _fused(child)
            if fused is not None:
                setattr(parent, name, fused)
                count += 1
    _early_squeeze_blocks(model)
    _shuffle_gated_units(model)
    _shuffle_gated_stages(model)
    model.eval()  # the new modules start in train mode
    return count
