"""Gate rewrites of the ONNX graph (``timm_recal_deploy.gate_fusion``) keep the function: FP32 parity with the
untouched export in ONNX Runtime and OpenVINO, on small bottleneck nets with SE and AB gates (random weights,
randomized BN so that every gate is active)."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.gate_fusion import apply_gate_fusion, find_gates  # noqa: E402
from timm_recal_deploy.metadata import read_metadata  # noqa: E402
from timm_recal_deploy.ort_runtime import create_session  # noqa: E402

from deploy_helpers import randomize_weights_, sample_batch  # noqa: E402

SIZE = 64


@pytest.fixture(scope='module', params=['seresnet50', 'ab_resnet50', 'se_shufflenetv2_x0_5_cifar'])
def export(request, tmp_path_factory):
    name = request.param
    size = 32 if 'cifar' in name else SIZE
    kwargs = {} if 'cifar' in name else {'layers': [1, 1, 1, 1]}  # one bottleneck per stage: fast
    images = sample_batch(name, size, n=8)
    model = randomize_weights_(timm.create_model(name, **kwargs), images)
    tmp = tmp_path_factory.mktemp('gf')
    path = export_onnx(name, str(tmp / 'fp32.onnx'), model=model, exporter='legacy', img_size=size)['output']
    return name, path, images.numpy(), tmp


def _ort(path, images):
    return create_session(path, ['CPUExecutionProvider'], threads=1).run(None, {'input': images})[0]


@pytest.mark.parametrize('rewrites', [['early_squeeze'], ['nchwc_gate'], ['early_squeeze', 'nchwc_gate']])
def test_rewrites_keep_the_function(export, rewrites):
    name, path, images, tmp = export
    out = str(tmp / f"{'_'.join(rewrites)}.onnx")
    res = apply_gate_fusion(path, out, rewrites, force=True)
    gates = len(find_gates(onnx.load(path)))
    assert gates > 0
    if 'shufflenet' not in name:  # bottleneck gates follow a 1x1 conv: every one is rewritten
        assert res['rewrites'].get('early_squeeze', gates) == gates
    elif rewrites == ['early_squeeze']:
        assert res['rewrites']['early_squeeze'] == 0  # gates after a channel shuffle: nothing to move
    if 'nchwc_gate' in rewrites:
        assert res['rewrites']['nchwc_gate'] == gates and res['gates'] == 0
    ref, got = _ort(path, images), _ort(out, images)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    meta = read_metadata(out)
    assert meta['gate_fusion'] == res['rewrites'] and meta['input_size'] == read_metadata(path)['input_size']
    ov = pytest.importorskip('openvino')  # noqa: F841
    from timm_recal_deploy.openvino_runtime import open_openvino
    got_ov = open_openvino(out, precision='fp32', threads=1)(images)
    assert np.abs(got_ov - ref).max() <= 1e-4 * np.abs(ref).max()


def test_refuses_bad_requests(export):
    _, path, _, tmp = export
    with pytest.raises(DeployError, match='unknown gate rewrite'):
        apply_gate_fusion(path, str(tmp / 'x.onnx'), ['fold_everything'])
    with pytest.raises(DeployError, match='overwrite the input'):
        apply_gate_fusion(path, path, ['early_squeeze'], force=True)


def test_gate_branch_left_in_float_by_quantize(export):
    """``quantize_int8(float_nodes=gate_branch_nodes(...))``: the gate vector reaches its multiply unquantized."""
    from timm_recal_deploy.gate_fusion import gate_branch_nodes
    from timm_recal_deploy.quantize import quantize_int8
    name, path, images, tmp = export
    if 'shufflenet' not in name:
        pytest.skip('one net is enough for the quantizer option')
    names = gate_branch_nodes(onnx.load(path))
    gates = find_gates(onnx.load(path))
    muls = {g['mul'].name: g['gate'] for g in gates}
    assert set(muls) <= set(names) and len(names) > len(muls)
    res = quantize_int8(path, str(tmp / 'gf_int8.onnx'), None, calib_images=16, progress=False, float_nodes=names)
    q = onnx.load(res['output'])
    gate_muls = [n for n in q.graph.node if n.name in muls]
    assert len(gate_muls) == len(muls) and all(muls[n.name] in n.input for n in gate_muls)
    plain = quantize_int8(path, str(tmp / 'all_int8.onnx'), None, calib_images=16, progress=False)
    assert plain['quantize_nodes'] > res['quantize_nodes']  # the option did leave something out
    assert res['float_nodes'] == len(names) and res['quantize_nodes'] > 0


def test_export_writes_the_rewritten_gates(tmp_path):
    """``export --gate-fusion early_squeeze``: the file users get has its gates rewritten, same logits."""
    images = sample_batch('seresnet50', SIZE, n=4)
    model = randomize_weights_(timm.create_model('seresnet50', layers=[1, 1, 1, 1]), images)
    plain = export_onnx('seresnet50', str(tmp_path / 'plain.onnx'), model=model, exporter='legacy', img_size=SIZE)
    fused = export_onnx('seresnet50', str(tmp_path / 'es.onnx'), model=model, exporter='legacy', img_size=SIZE,
                        gate_fusion='early_squeeze')
    assert plain.gate_fusion is None and 'gate_fusion' not in read_metadata(plain.output)
    assert fused.gate_fusion == {'early_squeeze': 4} == read_metadata(fused.output)['gate_fusion']
    def pools_of_conv_outputs(path):
        nodes = onnx.load(path).graph.node
        convs = {o for n in nodes if n.op_type == 'Conv' for o in n.output}
        return sum(n.op_type in ('GlobalAveragePool', 'ReduceMean') and n.input[0] in convs for n in nodes)
    assert pools_of_conv_outputs(plain.output) == 4 and pools_of_conv_outputs(fused.output) == 0  # pool h instead
    ref, got = _ort(plain.output, images.numpy()), _ort(fused.output, images.numpy())
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    again = apply_gate_fusion(fused.output, str(tmp_path / 'es2.onnx'), ['early_squeeze'])
    assert again['rewrites'] == {'early_squeeze': 0}  # nothing left to move; the file still says what was done
    assert read_metadata(again['output'])['gate_fusion'] == {'early_squeeze': 4}
    with pytest.raises(DeployError, match='--gate-fusion takes early_squeeze'):
        export_onnx('seresnet50', str(tmp_path / 'x.onnx'), model=model, gate_fusion='nchwc_gate')
    assert not os.path.exists(tmp_path / 'x.onnx')
