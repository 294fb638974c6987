"""INT8 (static QDQ, per-channel, U8S8) and FP16 (FP32 I/O) conversion, calibration disjoint from measurement."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from onnx import numpy_helper  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.images import bundled_samples_dir, make_loader  # noqa: E402
from timm_recal_deploy.metadata import read_metadata  # noqa: E402
from timm_recal_deploy.parity import format_report, parity  # noqa: E402
from timm_recal_deploy.quantize import convert_fp16, quantize_int8  # noqa: E402
from timm_recal_deploy.ort_runtime import create_session  # noqa: E402

from deploy_helpers import SHARED_DATA, randomize_weights_, sample_batch  # noqa: E402

NAME = 'se_resnet20_cifar'
CIFAR_SAMPLES = bundled_samples_dir({'input_size': (3, 32, 32)})


@pytest.fixture(scope='module')
def fp32(tmp_path_factory):
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32))
    path = export_onnx(NAME, str(tmp_path_factory.mktemp('q') / 'fp32.onnx'), model=model, exporter='legacy')['output']
    return model, path


def _logits(path, data=CIFAR_SAMPLES):
    meta = read_metadata(path)
    session = create_session(path, ['CPUExecutionProvider'], threads=1)
    images = np.concatenate([x.numpy() for x, _ in make_loader(data, meta, 64)])
    return session.run(None, {'input': images})[0]


def test_int8_is_per_channel_qdq_u8s8_with_metadata(fp32, tmp_path):
    _, path = fp32
    r = quantize_int8(path, str(tmp_path / 'int8.onnx'), CIFAR_SAMPLES, calib_images=32, batch_size=8, progress=False)
    assert r['calib_images'] == 32 and r['quantize_nodes'] > 0 and r['dequantize_nodes'] > 0
    proto = onnx.load(r['output'])
    init = {t.name: t for t in proto.graph.initializer}
    deq = [n for n in proto.graph.node if n.op_type == 'DequantizeLinear']
    weight_deq = [n for n in deq if init.get(n.input[0]) is not None and init[n.input[0]].data_type == onnx.TensorProto.INT8
                  and len(init[n.input[0]].dims) == 4]
    assert weight_deq, 'conv weights are not stored as int8'
    for n in weight_deq:  # per output channel: one scale per filter (a 1-filter conv, e.g. an SE FC, has one)
        scale = numpy_helper.to_array(init[n.input[1]])
        assert scale.ndim == 1 and scale.shape[0] == init[n.input[0]].dims[0]
    assert any(init[n.input[0]].dims[0] > 1 for n in weight_deq)
    act_zero_points = [init[n.input[2]] for n in proto.graph.node if n.op_type == 'QuantizeLinear' and len(n.input) > 2]
    assert act_zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in act_zero_points)
    for v in list(proto.graph.input) + list(proto.graph.output):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = read_metadata(r['output'])
    assert meta['precision'] == 'int8' and meta['architecture'] == NAME and meta['input_size'] == [3, 32, 32]
    # no absolute local paths in a published file: relative to the working folder, or the folder name alone
    recorded = meta['quantization']['calib_data']
    assert not os.path.isabs(recorded) and os.path.samefile(recorded, CIFAR_SAMPLES) if \
        os.path.abspath(CIFAR_SAMPLES).startswith(os.getcwd() + os.sep) else recorded == os.path.basename(CIFAR_SAMPLES)
    assert meta['quantization']['per_channel'] is True and meta['quantization']['calib_images'] == 32
    ref, out = _logits(path), _logits(r['output'])
    rel = np.abs(out - ref).max(1) / np.abs(ref).max(1)
    assert np.isfinite(out).all() and np.median(rel) < 0.1, np.median(rel)
    with pytest.raises(DeployError, match='already int8'):
        quantize_int8(r['output'], str(tmp_path / 'again.onnx'), CIFAR_SAMPLES)


def test_int8_parity_calibrates_on_a_disjoint_split(fp32):
    model, path = fp32
    r = parity(path, model=model, precision='int8', calib_images=20)
    cal = r['calibration']
    assert cal['calib_split'] and cal['calib_images'] == 20 and r['n_images'] == 30  # 50 bundled = 20 + 30
    assert r['tolerances']['min_top1'] == 0.99 and r['onnx'] is None  # temporary INT8 file
    assert np.isfinite(r['max_abs_err']) and r['mean_rel_err'] < 0.1, format_report(r)


def test_int8_refuses_overlapping_calibration(fp32, tmp_path):
    model, path = fp32
    with pytest.raises(DeployError, match='overlaps'):
        parity(path, model=model, precision='int8', data=CIFAR_SAMPLES, calib_data=CIFAR_SAMPLES)
    q = quantize_int8(path, str(tmp_path / 'q.onnx'), CIFAR_SAMPLES, calib_images=16, progress=False)['output']
    with pytest.raises(DeployError, match='calibrated on'):
        parity(q, model=model)  # its own calibration images are the bundled samples measured by default


def test_fp16_keeps_fp32_inputs_and_outputs(fp32, tmp_path):
    model, path = fp32
    r = convert_fp16(path, str(tmp_path / 'h.onnx'))
    proto = onnx.load(r['output'])
    for v in list(proto.graph.input) + list(proto.graph.output):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {t.data_type for t in proto.graph.initializer if len(t.dims) == 4}
    assert kinds == {onnx.TensorProto.FLOAT16}  # conv weights are half
    assert read_metadata(r['output'])['precision'] == 'fp16'
    p = parity(r['output'], model=model)
    assert p['passed'] and p['precision'] == 'fp16', format_report(p)
    assert p['max_abs_err'] > 1e-6  # really computed in half precision
    with pytest.raises(DeployError, match='already fp16'):
        convert_fp16(r['output'], str(tmp_path / 'hh.onnx'))


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, 'cifar10', 'train')), reason='no shared data')
def test_int8_parity_cifar_train_calibration_test_measurement(fp32):
    """The route of the 10,000-image check, on a subset: calibrate on CIFAR-10 train, measure on test."""
    model, path = fp32
    r = parity(path, model=model, precision='int8', data=os.path.join(SHARED_DATA, 'cifar10', 'test'),
               calib_data=os.path.join(SHARED_DATA, 'cifar10', 'train'), calib_images=64, limit=200)
    assert r['n_images'] == 200 and not r['calibration']['calib_split']
    assert r['calibration']['calib_data'].endswith(os.path.join('cifar10', 'train'))
    assert r['accuracy']['onnx_top1'] is not None and r['mean_rel_err'] < 0.1, format_report(r)


def test_int8_keeps_the_most_sensitive_nodes_in_float(fp32, tmp_path):
    _, path = fp32
    r = quantize_int8(path, str(tmp_path / 'mixed.onnx'), CIFAR_SAMPLES, calib_images=32, batch_size=8, progress=False,
                      fp32_layers=3)
    ranking = r['sensitivity']
    errors = [err for _, err in ranking]
    assert len(ranking) > 10 and errors == sorted(errors, reverse=True) and errors[0] > 0
    kept = r['fp32_layers']
    assert kept == [name for name, _ in ranking[:3]] and r['float_nodes'] == 3
    proto = onnx.load(r['output'])
    by_name = {n.name: n for n in proto.graph.node}
    init = {t.name: t for t in proto.graph.initializer}
    for name in kept:  # still in the graph, with float weights (its activations may still arrive through Q/DQ)
        assert all(init[i].data_type == onnx.TensorProto.FLOAT for i in by_name[name].input if i in init), name
    pure = quantize_int8(path, str(tmp_path / 'pure.onnx'), CIFAR_SAMPLES, calib_images=32, batch_size=8,
                         progress=False)
    assert r['quantize_nodes'] < pure['quantize_nodes']
    assert [n for n in proto.graph.node if n.op_type == 'Conv' and n.name not in kept]
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights  # the rest stays INT8
    meta = read_metadata(r['output'])['quantization']
    assert meta['fp32_layers'] == kept and meta['moving_average'] is True
    with pytest.raises(DeployError, match='fp32_layers'):
        quantize_int8(path, str(tmp_path / 'bad.onnx'), CIFAR_SAMPLES, fp32_layers=-1)


def test_fp16_refuses_int8_options(fp32, tmp_path, capsys):
    """``--precision fp16`` ignored every INT8 option (the gate rewrite included: ``convert_fp16`` applies none)
    and exited 0; now one line naming them, before anything is read or written."""
    from deploy_helpers import run_cli
    from timm_recal_deploy.quantize import quantize
    _, path = fp32
    out = tmp_path / 'q.onnx'
    rc, _, err = run_cli(capsys, 'quantize', path, '-o', out, '--precision', 'fp16', '--gate-fusion', 'early_squeeze',
                         '--float-gates-from', '/nonexist', '--symmetric', '--fp32-layers', '5', '--calib-method',
                         'entropy')
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert '--calib-method, --fp32-layers, --gate-fusion, --symmetric, --float-gates-from shape INT8 ' in err
    rc, _, err = run_cli(capsys, 'quantize', path, '-o', out, '--precision', 'fp16', '--no-per-channel')
    assert rc == 2 and '--no-per-channel shapes INT8 quantization only' in err
    with pytest.raises(DeployError, match='--calib-data shapes INT8'):
        quantize(path, str(out), precision='fp16', calib_data='somewhere')
    assert not out.exists()
