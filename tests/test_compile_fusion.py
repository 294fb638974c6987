"""fuse_gates (deploy/compile_fusion.py): every gate of the registry rewritten exactly, eager, compiled and exported."""
import copy

import pytest
import timm
import torch
from timm.layers.squeeze_excite import SEModule
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from conftest import randomize_bn_
from timm_recal.layers import BoosterGate, SkipLayerExcitation, SqueezeExcite, get_gate, list_gates
from timm_recal_deploy.compile_fusion import (
    FusedChannelGate, FusedSkipLayerExcitation, PointwiseConvGate, fuse_gates, squeeze_early,
)

C, SIZE = 32, 8
#: gates without a pool: nothing to squeeze, fuse_gates leaves them as they are
UNPOOLED = {'nosqueeze', 'pixel3', 'pixel7', 'pixel9', 'pixel_dw3', 'pixel_dw7', 'pixel_dw9', 'pixel_dw3_bn',
            'pixel_dw9_bn'}
#: one gate of each code path of the rewrite (pools avg / max / weighted, conv groups 1 / G / C, BN, a spatial
#: conv before the pool), for the compile and export tests of the default run (the whole registry under -m slow)
PATHS = ('se', 'se_max', 'se_tanh', 'ab', 'ab_g4', 'abplus', 'gdw_wavg', 'dw7_ab', 'pixel_dw3')


def _gate(name: str) -> nn.Module:
    return get_gate(name, **({'feat_size': SIZE} if name == 'gdw_wavg' else {}))(C, reduction=4)


class GateZoo(nn.Module):
    """The named registry gates (each after a 1x1 conv + BN), a timm bottleneck with timm's SE (early squeeze) and
    one with our AB, and an SLE: one small model, so one compile covers every gate type."""

    def __init__(self, names=tuple(list_gates())):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.gated = nn.ModuleList(
            nn.Sequential(nn.Conv2d(C, C, 1), nn.BatchNorm2d(C), _gate(name)) for name in names)
        self.timm_se = Bottleneck(C, C // 4, attn_layer=SEModule)
        self.our_ab = Bottleneck(C, C // 4, attn_layer=get_gate('ab'))
        self.sle = SkipLayerExcitation(C, C)

    def forward(self, x):
        x = early = self.stem(x)
        for block in self.gated:
            x = torch.tanh(block(x))  # keeps activations bounded through ~30 gates
        x = self.our_ab(self.timm_se(x))
        return self.sle(early, x).mean((2, 3))


@torch.no_grad()
def _randomized(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return randomize_bn_(model).eval()


def _zoo(names):
    torch.manual_seed(0)
    model = _randomized(GateZoo(names))
    fused = copy.deepcopy(model)
    count = fuse_gates(fused)
    return model, fused, count, torch.randn(3, 3, SIZE, SIZE)


@pytest.fixture(scope='module')
def zoo():
    return _zoo(list_gates())


@pytest.fixture(scope='module')
def small_zoo():
    return _zoo(PATHS)


def test_every_pooled_gate_is_rewritten(zoo):
    _, fused, count, _ = zoo
    pooled = len(list_gates()) - len(UNPOOLED)
    assert count == pooled + 3  # + timm's SEModule, our AB in a bottleneck, the SLE
    kinds = [type(m) for m in fused.modules()]
    assert not any(issubclass(k, (SqueezeExcite, SEModule, SkipLayerExcitation)) for k in kinds)
    assert sum(isinstance(m, BoosterGate) for m in fused.modules()) == sum(n.startswith('pixel') for n in UNPOOLED)
    assert kinds.count(PointwiseConvGate) == 2 and kinds.count(FusedSkipLayerExcitation) == 1
    assert fused.timm_se.se is None and isinstance(fused.timm_se.bn3, nn.Identity)
    assert fuse_gates(fused) == 0  # nothing left to rewrite


@pytest.mark.parametrize('name', list_gates())
def test_each_gate_equals_the_unfused_one(name):
    torch.manual_seed(1)
    model = _randomized(nn.Sequential(nn.Conv2d(C, C, 1), nn.BatchNorm2d(C), _gate(name)))
    fused = copy.deepcopy(model)
    assert fuse_gates(fused) == (0 if name in UNPOOLED else 1)
    x = torch.randn(2, C, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


def test_zoo_equals_the_unfused_model_in_eager(zoo):
    model, fused, _, x = zoo
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


def test_weighted_pool_gate_refuses_another_map_size_as_the_unfused_one_does():
    model = _randomized(nn.Sequential(_gate('gdw_wavg')))
    fused = copy.deepcopy(model)
    fuse_gates(fused)
    x = torch.randn(2, C, SIZE + 4, SIZE + 4)
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(x)
    with torch.no_grad(), pytest.raises(ValueError, match=r'built for \(8, 8\) maps, got \(12, 12\)'):
        fused(x)


def test_pointwise_conv_gates_in_a_timm_resnet_match():
    # seresnet50's blocks and timm's own SE, one block per stage (with its downsample shortcut); at 32x32 input
    # the first two stages pool conv3's input (early squeeze), the last two its output (squeeze_early)
    torch.manual_seed(0)
    model = _randomized(ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, block_args=dict(attn_layer='se')))
    fused = copy.deepcopy(model)
    assert fuse_gates(fused) == 4
    assert sum(isinstance(m, PointwiseConvGate) for m in fused.modules()) == 4
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # the identity in float64 (the random net's logits reach ~1e7, where FP32 round-off alone is ~1e-4)
        reference = copy.deepcopy(model).double()(x.double())
        torch.testing.assert_close(copy.deepcopy(fused).double()(x.double()), reference, rtol=1e-10, atol=1e-6)
        # and in FP32 no further from float64 than the unfused model is
        scale = reference.abs().max()
        unfused_error = ((model(x).double() - reference).abs().max() / scale).item()
        fused_error = ((fused(x).double() - reference).abs().max() / scale).item()
    assert fused_error <= 2 * unfused_error, (fused_error, unfused_error)


def test_squeeze_early_pools_whichever_map_reads_less():
    # resnet50 at 224x224: C_in -> C_out of conv3 and its map, per stage
    stages = [(64, 256, 56 * 56), (128, 512, 28 * 28), (256, 1024, 14 * 14), (512, 2048, 7 * 7)]
    assert [squeeze_early(hw, c_in, c_out) for c_in, c_out, hw in stages] == [True, True, False, False]
    assert [squeeze_early(16 * hw, c_in, c_out) for c_in, c_out, hw in stages] == [True] * 4
    assert squeeze_early(1, 8, 8) is False  # no narrower input: never worth the weights


def _pooled_channels(program) -> set:
    """Channels of the maps the graph pools: a sum or mean over a 4-d map (``spatial_sum``'s row sums)."""
    return {n.args[0].meta['val'].shape[1] for n in program.graph.nodes
            if n.op == 'call_function' and n.target in (torch.ops.aten.sum.dim_IntList, torch.ops.aten.mean.dim)
            and n.args[0].meta['val'].dim() == 4}


@pytest.mark.parametrize('max_batch, pooled', [(64, 16), (4, 64)])
def test_a_symbolic_batch_pools_early_unless_its_range_decides(max_batch, pooled):
    # 16 -> 64 channels on 2x2 maps: the early squeeze reads less from batch 6 on; a range up to 64 leaves it
    # open (the early squeeze, no guard), one up to 4 decides for the output's pool
    torch.manual_seed(2)
    gate = FusedChannelGate([nn.Conv2d(64, 16, 1), nn.ReLU(), nn.Conv2d(16, 64, 1), nn.Sigmoid()])
    module = _randomized(PointwiseConvGate(nn.Conv2d(16, 64, 1), nn.BatchNorm2d(64), gate))
    x = torch.randn(2, 16, 2, 2)
    with torch.no_grad():
        program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim('batch', min=2,
                                                                                           max=max_batch)},))
        assert _pooled_channels(program) == {pooled}
        for n in (2, min(max_batch, 32)):
            y = torch.randn(n, 16, 2, 2)
            torch.testing.assert_close(program.module()(y), module(y), rtol=1e-5, atol=1e-5)


def _linears(program) -> int:
    return sum(n.op == 'call_function' and 'linear' in str(n.target) for n in program.graph.nodes)


@pytest.mark.parametrize('batch, dynamic, linears', [(1, False, 0), (1024, False, 2), (2, True, 2)])
def test_small_excitations_are_loops_where_the_graph_knows_the_batch_is_small(batch, dynamic, linears):
    """``LOOP_MAX_MACS``: batch x weights of a 64 -> 16 -> 64 excitation is 1,024 per sample, a loop at batch 1;
    a GEMM at batch 1024 and for a symbolic batch (up to 1024, undecided); the same numbers either way."""
    torch.manual_seed(3)
    gate = _randomized(FusedChannelGate([nn.Conv2d(64, 16, 1), nn.ReLU(), nn.Conv2d(16, 64, 1), nn.Sigmoid()]))
    x = torch.randn(batch, 64, 4, 4)
    shapes = ({0: torch.export.Dim('batch', min=1, max=1024)},) if dynamic else None
    with torch.no_grad():
        program = torch.export.export(gate, (x,), dynamic_shapes=shapes)
        assert _linears(program) == linears
        reference = torch.cat([gate.excite(v[None]) for v in gate.pool(x)]) if batch > 1 else None
        if reference is not None:  # the loop form (each sample alone) against the GEMM form of the batch
            torch.testing.assert_close(reference, gate.excite(gate.pool(x)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(program.module()(x), gate(x), rtol=1e-5, atol=1e-5)


def test_the_compiled_cpu_pool_sums_rows_first_so_its_round_off_does_not_grow_with_the_map():
    """A channels-last map (a oneDNN convolution's output): inductor's C++ reduction keeps one running sum per
    channel over the 4,096 pixels (9x eager FP32's error on this map); ``spatial_sum``'s rows first stay near
    eager's cascade sum (1.8x)."""
    torch.manual_seed(0)
    gate = FusedChannelGate([nn.Sigmoid()])
    x = (torch.randn(2, 24, 64, 64).exp() * 10).contiguous(memory_format=torch.channels_last)
    exact = x.double().mean((2, 3))
    eager_err = (x.mean((2, 3)).double() - exact).abs().max()
    torch._dynamo.reset()
    with torch.no_grad():
        pooled = torch.compile(gate.pool, fullgraph=True, dynamic=False)(x)
    assert pooled.dtype == x.dtype and (pooled.double() - exact).abs().max() <= 3 * eager_err


def test_fused_gates_refuse_train_mode(zoo):
    fused = copy.deepcopy(zoo[1]).train()
    with pytest.raises(RuntimeError, match='inference rewrite'):
        fused(zoo[3])


def test_nothing_to_fuse_in_a_plain_model():
    model = timm.create_model('resnet18', num_classes=10)
    assert fuse_gates(model) == 0 and not model.training


def _compiled_matches(zoo):
    import torch._inductor.config as inductor_config
    model, fused, _, x = zoo
    torch._dynamo.reset()
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(fused, fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_fused_gates_compile_fullgraph_with_freezing_and_match(small_zoo):
    _compiled_matches(small_zoo)


@pytest.mark.slow
def test_every_fused_gate_compiles_fullgraph_with_freezing_and_matches(zoo):
    _compiled_matches(zoo)


def test_fused_gates_export_with_a_dynamic_batch(small_zoo):
    model, fused, _, x = small_zoo
    batch = torch.export.Dim('batch', min=1, max=64)
    with torch.no_grad():
        program = torch.export.export(fused, (x,), dynamic_shapes=({0: batch},))
        y = torch.randn(5, *x.shape[1:])
        torch.testing.assert_close(program.module()(y), model(y), rtol=1e-5, atol=1e-5)
    targets = {str(n.target) for n in program.graph.nodes if n.op == 'call_function'}
    assert all(t.startswith('aten.') for t in targets), targets  # plain ATen ops: no custom op to register


@pytest.mark.slow
def test_fused_gates_survive_aoti_compile_and_package(small_zoo, tmp_path):
    import torch._inductor.config as inductor_config
    model, fused, _, x = small_zoo
    batch = torch.export.Dim('batch', min=1, max=64)
    with torch.no_grad(), inductor_config.patch(freezing=True):
        program = torch.export.export(fused, (x,), dynamic_shapes=({0: batch},))
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / 'zoo.pt2'))
        runner = torch._inductor.aoti_load_package(path)
        for n in (1, 4):
            y = torch.randn(n, *x.shape[1:])
            torch.testing.assert_close(runner(y), model(y), rtol=1e-4, atol=1e-4)


def _shufflenet(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _randomized(timm.create_model(name))


@pytest.mark.parametrize('name, units, stages', [
    ('se_shufflenetv2_x0_5_cifar', 6, 0), ('ab_shufflenetv2_x0_5_cifar', 6, 0), ('sle_shufflenetv2_x0_5_cifar', 0, 3),
    ('se_shufflenetv2_x0_5', 6, 0)])
def test_shufflenet_gates_multiply_before_the_shuffle_exactly(name, units, stages):
    """A unit's gate after its channel shuffle moves before it (``ShuffleGatedUnit``), and so does the multiply of
    an SLE on a stage's output (``ShuffleGatedStage``), their parameters permuted."""
    from timm_recal_deploy.compile_fusion import LateMap, ShuffleGatedStage, ShuffleGatedUnit
    model = _shufflenet(name)
    fused = copy.deepcopy(model)
    fuse_gates(fused)
    assert sum(isinstance(m, ShuffleGatedUnit) for m in fused.modules()) == units
    assert sum(isinstance(m, ShuffleGatedStage) for m in fused.modules()) == stages
    assert sum(isinstance(m, LateMap) for m in fused.modules()) == stages
    size = model.pretrained_cfg['input_size'][-1]
    for batch in (1, 2):  # an SLE stage multiplies after the shuffle at batch 1 (faster there)
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():  # FP32 round-off of a deep random net: relative to its logits' scale
            y = model(x)
            torch.testing.assert_close(fused(x), y, rtol=1e-5, atol=1e-5 * y.abs().max().item())


@pytest.mark.parametrize('gate, moved', [('se', True), ('ab', True), ('se_max', True), ('gdw_wavg', True),
                                         ('ab_g4', False), ('dw7_ab', False)])
def test_a_unit_gate_moves_before_the_shuffle_unless_it_mixes_channels_in_groups(gate, moved):
    """Per-channel layers, ungrouped convs and the weighted pool permute; grouped mixing and a spatial conv
    before the pool do not, and those units keep the gate after the shuffle. Both exact."""
    from timm_recal.models.shufflenetv2 import ShuffleUnit
    from timm_recal_deploy.compile_fusion import ShuffleGatedUnit
    torch.manual_seed(0)

    def attn(size):
        return lambda c, **dd: get_gate(gate, **({'feat_size': size} if gate == 'gdw_wavg' else {}))(c, reduction=4,
                                                                                                   **dd)
    model = _randomized(nn.Sequential(ShuffleUnit(C, C, 1, attn_layer=attn(SIZE)),
                                      ShuffleUnit(C, 2 * C, 2, attn_layer=attn(SIZE // 2))))
    fused = copy.deepcopy(model)
    assert fuse_gates(fused) == 2
    assert [isinstance(m, ShuffleGatedUnit) for m in fused] == [moved, moved]
    x = torch.randn(2, C, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
        if gate == 'se':  # exported with a dynamic batch, as aoti packages are
            program = torch.export.export(fused, (x,), dynamic_shapes=({0: torch.export.Dim('batch', max=64)},))
            y = torch.randn(5, C, SIZE, SIZE)
            torch.testing.assert_close(program.module()(y), model(y), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match='inference rewrite'):
        fused.train()(x)


def test_the_compiled_unit_gate_indexes_channels_without_a_division():
    """What the move is for: inductor's code of a unit gated after its shuffle has ``div_floor_integer`` channel
    indices (the shuffle inside the gate's pool and multiply: scalar loops); gated before it, none."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code
    from timm_recal.models.shufflenetv2 import ShuffleUnit
    from timm_recal_deploy.compile_fusion import ShuffleGatedUnit, _fused
    torch.manual_seed(0)
    se = lambda c, **dd: get_gate('se')(c, reduction=4, **dd)  # noqa: E731
    # a conv before and after, as in the net: inductor lays the unit's maps out as it does there (channels last)
    unit = _randomized(nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.ReLU(), ShuffleUnit(C, C, 1, attn_layer=se),
                                     nn.Conv2d(C, C, 1)))
    after = copy.deepcopy(unit)
    after[2].attn = _fused(after[2].attn).eval()  # the gate fused, still after the shuffle
    before = copy.deepcopy(unit)
    fuse_gates(before)
    assert isinstance(before[2], ShuffleGatedUnit) and type(after[2]) is ShuffleUnit
    x = torch.randn(4, 3, SIZE, SIZE)
    codes = {}
    for name, model in (('after', after), ('before', before)):
        torch._dynamo.reset()
        with inductor_config.patch(freezing=True), torch.no_grad():
            out, code = run_and_get_code(torch.compile(model, fullgraph=True, dynamic=False), x)
            torch.testing.assert_close(out, unit(x), rtol=1e-4, atol=1e-4)
        codes[name] = '\n'.join(code)
    assert 'div_floor_integer' in codes['after'] and 'div_floor_integer' not in codes['before']


@pytest.mark.slow
@pytest.mark.parametrize('name', ['se_shufflenetv2_x0_5_cifar', 'sle_shufflenetv2_x0_5_cifar'])
def test_the_compiled_shufflenets_index_no_channel_through_the_shuffle(name):
    """The whole nets, compiled as the ``inductor`` runtime does: no channel index ``% 2`` / ``// 2`` left (the
    shuffle's, in a gate's pool or multiply); the SLE's 4x4 pool flattening keeps its own ``% 16``."""
    import re
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code
    from timm_recal_deploy.compiled import prepare_for_compile
    model = _shufflenet(name)
    prepared = prepare_for_compile(model, (3, 32, 32))
    x = torch.randn(4, 3, 32, 32)
    torch._dynamo.reset()
    with inductor_config.patch(freezing=True), torch.no_grad():
        out, code = run_and_get_code(torch.compile(prepared, fullgraph=True, dynamic=False), x)
        torch.testing.assert_close(out, model(x), rtol=1e-3, atol=1e-3)
    assert not re.search(r'% static_cast<int64_t>\(2L\)', '\n'.join(code))
