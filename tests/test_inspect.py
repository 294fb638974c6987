"""``timm-recal inspect``: gate hooks on every gate type, excitation / zeroing / cost on a tiny model, the gate-level
diff of an ONNX file against its model, and bad input as one line that writes nothing."""
import json
import os

import numpy as np
import pytest
import timm
import torch
from torch import nn

import timm_recal  # noqa: F401  (registers the models)
from timm_recal.layers import GATES, SkipLayerExcitation
from timm_recal_deploy.errors import DeployError, OutputExistsError
from timm_recal_deploy.gate_probe import GateProbe, find_gates, require_gates, zeroed_channels

from deploy_helpers import cifar_samples, randomize_weights_, run_cli, sample_batch


class _Gated(nn.Module):
    """A conv and one gate module: enough for the probe's contract."""

    def __init__(self, gate: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.attn = gate

    def forward(self, x):
        return self.attn(self.conv(x))


def _timm_gates():
    from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    return {'timm.SEModule': lambda: SEModule(32, rd_ratio=0.25),
            'timm.EffectiveSEModule': lambda: EffectiveSEModule(32),
            'timm.efficientnet.SqueezeExcite': lambda: SqueezeExcite(32, rd_ratio=0.25)}


_FEAT = {'gdw_wavg': dict(feat_size=16)}
ALL_GATES = {**{name: (lambda name=name: GATES[name](32, **_FEAT.get(name, {}))) for name in sorted(GATES)},
             **_timm_gates()}


@pytest.mark.parametrize('name', sorted(ALL_GATES))
def test_probe_reads_every_gate_type(name):
    """Found by the registry, hooked on its nonlinearity: the recorded value is what the map is multiplied by."""
    torch.manual_seed(0)
    model = _Gated(ALL_GATES[name]()).eval()
    sites = find_gates(model)
    assert [s.name for s in sites] == ['attn']
    x = torch.randn(3, 3, 16, 16)
    feat = model.conv(x)
    seen = {}
    h = model.attn.gate.register_forward_hook(lambda m, a, out: seen.setdefault('g', out))
    with GateProbe(model, sites) as probe, torch.no_grad():
        out = model(x)
    h.remove()
    values = probe.take()['attn']
    assert values.shape == (3, 32)
    g = seen['g']
    assert torch.allclose(out, feat * g, atol=1e-6)  # the hooked module output is the multiplier of the map
    np.testing.assert_allclose(values, g.mean((2, 3)).numpy() if g.ndim == 4 else g.numpy(), atol=1e-6)


def test_probe_reads_sle_and_runs_in_call_order():
    model = timm.create_model('sle_shufflenetv2_x0_5_cifar').eval()
    sites = find_gates(model)
    assert sum(isinstance(s.module, SkipLayerExcitation) for s in sites) == 3
    with GateProbe(model, sites) as probe, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    values = probe.take()
    assert set(values) == {s.name for s in sites}
    assert probe.order == ['sle.0', 'sle.1', 'sle.2']
    assert values['sle.0'].shape == (2, sites[[s.name for s in sites].index('sle.0')].channels)


def test_zeroing_every_channel_zeroes_the_gate_output():
    torch.manual_seed(0)
    model = _Gated(GATES['se'](32)).eval()
    sites = find_gates(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert model(x).abs().sum() > 0
        with zeroed_channels(model, sites, {'attn': torch.zeros(32)}):
            assert torch.count_nonzero(model(x)) == 0
        half = torch.tensor([0., 1.] * 16)
        with zeroed_channels(model, sites, {'attn': half}):
            out = model(x)
        assert torch.count_nonzero(out[:, 0::2]) == 0 and torch.count_nonzero(out[:, 1::2]) > 0
        assert torch.equal(model(x), model(x))  # hooks removed: the model is its own again


def test_a_model_without_gates_is_one_line():
    with pytest.raises(DeployError, match='no recalibration gates'):
        require_gates(timm.create_model('cnn3'), 'cnn3')


# --- the stage on a tiny model -------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def se_cnn3_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp('inspect_model')
    model = randomize_weights_(timm.create_model('se_cnn3'), sample_batch('se_cnn3', 32), seed=0)
    ckpt = folder / 'se_cnn3.pth'
    torch.save(model.state_dict(), ckpt)
    return folder, ckpt


@pytest.fixture(scope='session')
def inspected(se_cnn3_checkpoint):
    from timm_recal_deploy.inspect_gates import inspect
    folder, ckpt = se_cnn3_checkpoint
    out = folder / 'report'
    return inspect('se_cnn3', checkpoint=str(ckpt), data=cifar_samples(), output=str(out), batch_size=16,
                   fractions=(0.0, 0.25, 1.0)), out


def test_inspect_writes_the_figures_and_tables(inspected):
    r, out = inspected
    assert sorted(os.listdir(out)) == ['excitation.png', 'importance.png', 'inspect.json', 'inspect.md']
    assert r.n_images == 50 and [g['gate'] for g in r.gates] == ['stages.1.attn']
    g = r.gates[0]
    assert g['params'] == sum(p.numel() for p in timm.create_model('se_cnn3').stages[1].attn.parameters())
    assert g['macs'] > 0 and 0 < g['torch_share'] < 1 and 0 <= g['ort_share'] < 1
    ex = r.excitation[0]
    assert set(ex['per_class']) == {'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                                    'truck'}
    assert ex['class_ratio'] > 0 and 0 <= ex['saturation'] <= 1
    rows = {row['fraction']: row for row in r.importance}
    assert rows[0.0]['top1_highest_zeroed'] == r.top1
    assert rows[1.0]['zeroed_channels'] == ex['channels']
    saved = json.loads((out / 'inspect.json').read_text())
    assert saved['gates'][0]['gate'] == 'stages.1.attn' and saved['files']['excitation_png'] == 'excitation.png'


def test_random_weights_are_said_in_the_summary_and_the_markdown(inspected, tmp_path, capsys):
    """JSON said ``"weights": "random"``; the console and inspect.md, where the numbers are read, said nothing."""
    from timm_recal_deploy.inspect_gates import format_inspect
    r, out = inspected
    assert r.weights == 'checkpoint' and 'random' not in format_inspect(r) + (out / 'inspect.md').read_text()
    rc, stdout, err = run_cli(capsys, 'inspect', 'se_cnn3', '--data', cifar_samples(), '--limit', '20', '-o',
                              tmp_path / 'rand', '--no-importance', '--no-cost')
    assert rc == 0, err
    assert "random weights: timm's init" in stdout.splitlines()[0]
    assert "random weights: timm's init" in (tmp_path / 'rand' / 'inspect.md').read_text().splitlines()[0]
    assert json.loads((tmp_path / 'rand' / 'inspect.json').read_text())['weights'] == 'random'


def test_zeroing_every_channel_gives_one_prediction_for_all(inspected):
    """All gate channels zeroed: the map after the gate is 0, so every image gets the same logits."""
    r, _ = inspected
    full = next(row for row in r.importance if row['fraction'] == 1.0)
    assert full['top1_highest_zeroed'] == full['top1_lowest_zeroed'] == 10.0  # 5 images of each of 10 classes


# --- gate-level diff ---------------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def se_cnn3_onnx(se_cnn3_checkpoint):
    from timm_recal_deploy.export import export_onnx
    folder, ckpt = se_cnn3_checkpoint
    path = folder / 'se_cnn3.onnx'
    export_onnx('se_cnn3', str(path), checkpoint=str(ckpt))
    return path


def _perturbed(onnx_path, folder):
    """A copy whose gate's second FC has 1.5x the weights (the pairing metadata stays that of the model)."""
    import onnx
    from onnx import numpy_helper
    from timm_recal_deploy.gate_cost import node_scopes
    proto = onnx.load(str(onnx_path))
    conv = [n for n in proto.graph.node if n.op_type == 'Conv' and 'stages.1.attn' in node_scopes(n)][-1]
    init = next(t for t in proto.graph.initializer if t.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    path = folder / 'perturbed.onnx'
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope='session')
def gate_diffs(se_cnn3_onnx):
    """``(diff of the file itself, diff of a perturbed copy, the copy's report folder)``."""
    from timm_recal_deploy.inspect_gates import inspect
    folder = se_cnn3_onnx.parent
    same = inspect(str(se_cnn3_onnx), data=cifar_samples(), output=str(folder / 'same'), limit=20)
    bad = inspect(str(_perturbed(se_cnn3_onnx, folder)), data=cifar_samples(), output=str(folder / 'bad'), limit=20)
    return same, bad, folder / 'bad'


def test_diff_of_a_file_against_its_model_is_zero_and_of_a_perturbed_file_not(gate_diffs):
    same, bad, report = gate_diffs
    (g,) = same.gates
    assert g['gate'] == 'stages.1.attn' and g['cosine'] > 1 - 1e-6 and g['max_error'] < 1e-5
    assert g['rank_flips'] < 0.01 and same.damaged == [] and same.first_damaged is None
    assert same.top1_agreement == 100.0
    (g,) = bad.gates
    assert g['max_error'] > 1e-2 and g['rel_error'] > 0.01 and bad.first_damaged == 'stages.1.attn'
    saved = json.loads((report / 'gate_diff.json').read_text())
    assert saved['ranking'] == ['stages.1.attn'] and saved['damaged'] == ['stages.1.attn']


def test_quantize_keeps_the_damaged_gates_in_float(gate_diffs, se_cnn3_onnx, tmp_path, capsys):
    import onnx
    from timm_recal_deploy.gate_cost import node_scopes
    from timm_recal_deploy.quantize import quantize_int8
    _, _, report = gate_diffs
    r = quantize_int8(str(se_cnn3_onnx), str(tmp_path / 'q.onnx'), cifar_samples(), calib_images=16,
                      float_gates_from=str(report / 'gate_diff.json'))
    assert r.quantization['float_gates'] == {'report': 'gate_diff.json', 'gates': ['stages.1.attn']}
    gate_nodes = {n.name for n in onnx.load(str(se_cnn3_onnx)).graph.node
                  if any(sc.startswith('stages.1.attn') for sc in node_scopes(n))}
    assert gate_nodes and gate_nodes <= set(r.quantization['float_node_names'])
    q = onnx.load(str(tmp_path / 'q.onnx'))
    producers = {o: n for n in q.graph.node for o in n.output}
    sig = next(n for n in q.graph.node if n.op_type == 'Sigmoid')
    assert producers[sig.input[0]].op_type != 'DequantizeLinear'  # the gate's MLP ran in float
    rc, _, err = run_cli(capsys, 'quantize', se_cnn3_onnx, '-o', tmp_path / 'q2.onnx', '--calib-data', cifar_samples(),
                         '--float-gates-from', tmp_path / 'nothing.json')
    assert rc != 0 and 'not found' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'q2.onnx').exists()


def test_bad_input_is_one_line_and_writes_nothing(se_cnn3_checkpoint, se_cnn3_onnx, tmp_path, capsys):
    folder, ckpt = se_cnn3_checkpoint
    data = cifar_samples()
    cases = [
        (['cnn3'], 'no recalibration gates'),
        (['se_cnn3', '--checkpoint', ckpt, '--data', tmp_path / 'missing'], 'data folder not found'),
        ([se_cnn3_onnx, '--reference', 'bump_cnn3'], 'was not made from this model'),
        ([se_cnn3_onnx, '--reference', 'se_cnn3'], 'random weights'),
        # a MODEL's hooks run in PyTorch FP32: the file-only flags were silently ignored
        (['se_cnn3', '--checkpoint', ckpt, '--precision', 'int8'], r'inspect: error: --precision applies to an ONNX file'),
        (['se_cnn3', '--checkpoint', ckpt, '--runtimes', 'ort'], r'inspect: error: --runtimes applies to an ONNX file'),
        (['se_cnn3', '--checkpoint', ckpt, '--reference', 'se_cnn3', '--precision', 'fp16'],
         r'inspect: error: --reference and --precision apply to an ONNX file'),
        # the reverse: a file's gate diff runs none of the MODEL's analyses, so their flags were silently ignored
        ([se_cnn3_onnx, '--no-importance'], r'inspect: error: --no-importance applies to a MODEL .*not to an ONNX'),
        ([se_cnn3_onnx, '--no-cost', '--no-ort-profile'],
         r'inspect: error: --no-cost and --no-ort-profile apply to a MODEL'),
    ]
    for i, (argv, message) in enumerate(cases):
        out = tmp_path / f'out{i}'
        extra = [] if '--data' in argv else ['--data', data]
        if str(argv[0]) != str(se_cnn3_onnx):  # keep the MODEL cases quick
            extra += ['--no-importance', '--no-ort-profile']
        rc, _, err = run_cli(capsys, 'inspect', *argv, *extra, '-o', out)
        assert rc != 0 and len(err.strip().splitlines()) == 1, err
        assert __import__('re').search(message, err), err
        assert not out.exists()
    existing = tmp_path / 'exists'
    existing.mkdir()
    (existing / 'keep.txt').write_text('x')
    rc, _, err = run_cli(capsys, 'inspect', 'se_cnn3', '--checkpoint', ckpt, '--data', data, '-o', existing)
    assert rc != 0 and 'exists' in err and os.listdir(existing) == ['keep.txt']
    with pytest.raises(OutputExistsError):
        from timm_recal_deploy.inspect_gates import inspect
        inspect('se_cnn3', data=data, output=str(existing))


def test_openvino_returns_the_same_gate_outputs(se_cnn3_onnx, tmp_path):
    pytest.importorskip('openvino')
    from timm_recal_deploy.inspect_gates import inspect
    r = inspect(str(se_cnn3_onnx), data=cifar_samples(), output=str(tmp_path / 'ov'), limit=10, runtimes=['openvino'])
    (g,) = r.gates
    assert r.runtime['runtime'] == 'openvino' and g['cosine'] > 1 - 1e-6 and g['max_error'] < 1e-4


def test_the_time_shares_print_nothing_on_stderr():
    """kineto's 'USDT: ... profiler_start' lines were noise on every `inspect` run (a fresh process: kineto reads
    its log level once)."""
    import subprocess
    import sys
    code = ('import torch, timm, timm_recal\n'
            'from timm_recal_deploy.gate_cost import torch_time_shares\n'
            'from timm_recal_deploy.gate_probe import find_gates\n'
            'm = timm.create_model("se_cnn3").eval()\n'
            'r = torch_time_shares(m, find_gates(m), torch.randn(2, 3, 32, 32), repeats=1)\n'
            'print(len(r["gates"]))\n')
    env = {k: v for k, v in os.environ.items() if k != 'KINETO_LOG_LEVEL'}
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
    assert 'profiler_st' not in done.stderr and 'USDT' not in done.stderr, done.stderr[-2000:]


def test_a_compiled_package_is_refused_in_one_line(tmp_path, capsys):
    """``inspect m.pt2`` ended in ``'NoneType' object has no attribute 'named_modules'``: a compiled package has
    no gate modules to hook nor tensors to tap, so it is refused by name, before reading it, writing nothing."""
    package = tmp_path / 'm.pt2'
    package.write_bytes(b'PK')  # refused by what it is, before it is read
    rc, _, err = run_cli(capsys, 'inspect', package, '--data', cifar_samples(), '-o', tmp_path / 'out')
    assert rc != 0 and 'is a compiled package: its gates cannot be probed' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'out').exists()
