"""Edge-case inputs of export, quantize and info on cnn3 at 32x32: each was a traceback, a late cryptic failure, a
silently wrong file or a wrong description before its fix."""
import json
import os
import shutil

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm_recal  # noqa: E402,F401
from onnx import numpy_helper  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.quantize import convert_fp16, quantize_int8  # noqa: E402

from deploy_helpers import cifar_samples, run_cli  # noqa: E402


@pytest.fixture(scope='module')
def fp32(tmp_path_factory) -> str:
    """A cnn3 export (legacy exporter, opset 18): the FP32 file every test converts."""
    return export_onnx('cnn3', str(tmp_path_factory.mktemp('edge') / 'm.onnx'), exporter='legacy')['output']


def test_export_refuses_a_model_without_classifier(tmp_path, capsys):
    """``--num-classes 0`` (timm: no classifier) wrote a file of 128 pooled features named ``logits`` that recorded
    0 classes, and ``validate --folder-order`` then printed top-1 0.00%; now one line, and no file."""
    out = tmp_path / 'features.onnx'
    rc, _, err = run_cli(capsys, 'export', 'cnn3', '--num-classes', '0', '--exporter', 'legacy', '-o', out)
    assert rc == 2 and 'has no classifier (--num-classes 0)' in err and '128 pooled features' in err, err
    assert not out.exists() and not os.listdir(tmp_path)
    rc, _, _ = run_cli(capsys, 'export', 'cnn3', '--num-classes', '5', '--exporter', 'legacy', '-o', out)
    assert rc == 0 and out.exists()  # a classifier of another size is still a classifier


def test_quantize_default_name_replaces_the_extension_only(fp32, tmp_path, capsys):
    """``-o FOLDER`` named the output ``str.replace('.onnx', suffix)``: ``M.ONNX`` gave an FP16 file named
    ``M.ONNX`` (like its FP32 input), ``a.onnx.onnx`` gave ``a_fp16.onnx_fp16.onnx``."""
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    for name, expected in (('M.ONNX', 'M_fp16.onnx'), ('a.onnx.onnx', 'a.onnx_fp16.onnx')):
        shutil.copy(fp32, tmp_path / name)
        rc, out, err = run_cli(capsys, 'quantize', tmp_path / name, '-o', f'{out_dir}/', '--precision', 'fp16')
        assert rc == 0, err
        assert (out_dir / expected).exists(), os.listdir(out_dir)
    assert sorted(os.listdir(out_dir)) == ['M_fp16.onnx', 'a.onnx_fp16.onnx']


def test_quantize_refuses_replacing_its_input_through_a_symlink(fp32, tmp_path, capsys):
    """The overwrite check compared the paths as typed: ``quantize link.onnx -o m.onnx --force`` (the link points
    to m.onnx) replaced the FP32 input with its FP16 copy. Writing over the link itself stays allowed (the rename
    replaces the link, not the file it points to)."""
    real = tmp_path / 'm.onnx'
    shutil.copy(fp32, real)
    before = real.read_bytes()
    (tmp_path / 'link.onnx').symlink_to(real)
    rc, _, err = run_cli(capsys, 'quantize', tmp_path / 'link.onnx', '-o', real, '--precision', 'fp16', '--force')
    assert rc == 2 and 'would overwrite the input' in err and real.read_bytes() == before
    rc, _, err = run_cli(capsys, 'quantize', real, '-o', tmp_path / 'link.onnx', '--precision', 'fp16', '--force')
    assert rc == 0 and real.read_bytes() == before and not (tmp_path / 'link.onnx').is_symlink()


def _weights(path: str):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


@pytest.mark.parametrize('method', ['percentile', 'entropy'])
def test_histogram_calibration_with_a_partial_last_batch(fp32, tmp_path, method):
    """Percentile and entropy calibration failed ("inhomogeneous shape", from ORT's histogram collector) whenever
    the image count was no multiple of --batch-size (20 images, batches of 8); now every image counts, with the
    ranges of one batch of all of them."""
    kw = dict(calib_method=method, calib_images=20, progress=False)
    r = quantize_int8(fp32, str(tmp_path / 'b8.onnx'), cifar_samples(), batch_size=8, **kw)
    assert r['quantization']['calib_images'] == 20
    whole = quantize_int8(fp32, str(tmp_path / 'b20.onnx'), cifar_samples(), batch_size=20, **kw)
    a, b = _weights(r['output']), _weights(whole['output'])
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def _strip_metadata(path: str, dest) -> str:
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, str(dest))
    return str(dest)


def test_info_of_a_file_without_metadata(fp32, tmp_path, capsys):
    """``info`` of a file without timm-recal metadata said ``precision fp32`` for an INT8 QDQ or FP16 graph, and
    listed ``read_metadata``'s defaults (precision, input/output names) as the file's metadata."""
    q = quantize_int8(fp32, str(tmp_path / 'q.onnx'), cifar_samples(), calib_images=8, progress=False)['output']
    h = convert_fp16(fp32, str(tmp_path / 'h.onnx'))['output']
    for src, precision in ((q, 'int8'), (h, 'fp16'), (fp32, 'fp32')):
        bare = _strip_metadata(src, tmp_path / f'bare_{precision}.onnx')
        rc, out, _ = run_cli(capsys, 'info', bare, '--json')
        info = json.loads(out)
        assert rc == 0 and info['precision'] == precision and info['metadata'] == {}, (precision, info['metadata'])
        rc, out, _ = run_cli(capsys, 'info', bare)
        assert f'precision {precision},' in out and 'metadata: none' in out and 'input_name:' not in out
    rc, out, _ = run_cli(capsys, 'info', fp32, '--json')  # a file with metadata: shown as written
    assert json.loads(out)['metadata']['input_name'] == 'input'


def test_int8_refuses_old_opsets_before_calibrating(tmp_path):
    """Per-channel QDQ below opset 13, and any QDQ of an IR 3 file (opset 7/8), calibrated (minutes with
    --fp32-layers) and then failed the ONNX checker ("Unrecognized attribute: axis for operator DequantizeLinear");
    now refused before any image is read (a folder of non-images would fail calibration otherwise)."""
    bad_images = tmp_path / 'calib' / 'cat'
    bad_images.mkdir(parents=True)
    (bad_images / 'a.jpg').write_text('not an image')
    old = export_onnx('cnn3', str(tmp_path / 'op12.onnx'), exporter='legacy', opset=12)['output']
    with pytest.raises(DeployError, match='opset 12: per-channel INT8 weights need opset 13'):
        quantize_int8(old, str(tmp_path / 'q12.onnx'), str(tmp_path / 'calib'), progress=False)
    r = quantize_int8(old, str(tmp_path / 'q12.onnx'), cifar_samples(), per_channel=False, calib_images=8,
                      progress=False)
    assert os.path.exists(r['output'])
    ir3 = export_onnx('cnn3', str(tmp_path / 'op8.onnx'), exporter='legacy', opset=8)['output']
    with pytest.raises(DeployError, match='IR version 3'):
        quantize_int8(ir3, str(tmp_path / 'q8.onnx'), str(tmp_path / 'calib'), per_channel=False, progress=False)
    assert not os.path.exists(tmp_path / 'q8.onnx')
