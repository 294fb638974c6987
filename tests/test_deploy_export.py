"""ONNX export: the default dynamo path on plugin and stock timm models, metadata in the file, one file with a
dynamic batch axis, the legacy exporter and onnxslim, and the full registry under ``slow``."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError, OutputExistsError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.images import CIFAR10_CLASSES  # noqa: E402
from timm_recal_deploy.metadata import read_metadata  # noqa: E402
from timm_recal_deploy.parity import parity  # noqa: E402
from timm_recal_deploy.ort_runtime import create_session  # noqa: E402

from deploy_helpers import ci_img_size, randomize_weights_, sample_batch  # noqa: E402


def _randomized(name: str, size: int):
    return randomize_weights_(timm.create_model(name), sample_batch(name, size))


def _ort_vs_torch(path, model, size, batches=(1, 3)):
    session = create_session(str(path), ['CPUExecutionProvider'], threads=1)
    for b in batches:  # the batch axis is dynamic: other sizes than the traced one run
        x = torch.randn(b, 3, size, size)
        with torch.no_grad():
            ref = model(x).numpy()
        out = session.run(None, {'input': x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize('name,size', [('se_shufflenetv2_x0_5_cifar', 32), ('mobilenetv3_small_050', 64)])
def test_dynamo_export_is_one_checked_file_with_metadata(name, size, tmp_path):
    """Default exporter: opset 18, weights inside the file, dynamic batch, preprocessing metadata; a plugin model
    and a stock timm one (SE + hard-swish) both match PyTorch."""
    model = _randomized(name, size)
    r = export_onnx(name, str(tmp_path), model=model, img_size=size)  # -o a folder: <name>.onnx inside
    path = r['output']
    assert os.path.basename(path) == f'{name}.onnx' and r['exporter'] == 'dynamo'
    assert sorted(os.listdir(tmp_path)) == [f'{name}.onnx']  # one file, no external data
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[''] == 18
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    meta = read_metadata(path)
    cfg = model.pretrained_cfg
    assert meta['architecture'] == name and meta['input_size'] == [3, size, size]
    assert meta['mean'] == pytest.approx(list(cfg['mean'])) and meta['std'] == pytest.approx(list(cfg['std']))
    assert meta['interpolation'] == cfg['interpolation'] and meta['crop_pct'] == pytest.approx(cfg['crop_pct'])
    assert meta['exporter'] == 'dynamo' and meta['opset'] == 18 and meta['precision'] == 'fp32'
    assert {'torch', 'timm', 'onnx', 'onnxscript'} <= set(meta['versions'])
    assert len(meta['class_labels']) == model.num_classes
    if size == 32:
        assert meta['class_labels'] == list(CIFAR10_CLASSES)
    else:
        assert meta['class_labels'][0] == 'n01440764'  # ImageNet-1k synsets
    _ort_vs_torch(path, model, size)
    p = parity(name, onnx_path=path, model=model, img_size=size)
    assert p['passed'], p['failures']


def test_legacy_exporter_with_slim(tmp_path):
    name, size = 'ab_resnet20_cifar', 32
    model = _randomized(name, size)
    plain = export_onnx(name, str(tmp_path / 'plain.onnx'), model=model, exporter='legacy')
    slim = export_onnx(name, str(tmp_path / 'slim.onnx'), model=model, exporter='legacy', slim=True)
    assert slim['nodes'] <= plain['nodes'] and read_metadata(slim['output'])['slim'] is True
    assert read_metadata(plain['output'])['exporter'] == 'legacy'
    for r in (plain, slim):
        _ort_vs_torch(r['output'], model, size)


def test_export_from_spec_records_checkpoint(tmp_path):
    name = 'slowsq_cnn3'
    size = ci_img_size(name)
    model = _randomized(name, size)
    ckpt = tmp_path / 'w.pth'
    torch.save(model.state_dict(), ckpt)
    r = export_onnx(name, str(tmp_path / 'm.onnx'), checkpoint=str(ckpt), exporter='legacy')
    meta = read_metadata(r['output'])
    # a published file names no local folders: a checkpoint outside the working folder is its file name + hash
    assert meta['weights'] == 'checkpoint' and meta['checkpoint'] == 'w.pth' and len(meta['weights_sha256']) == 64
    _ort_vs_torch(r['output'], model, size, batches=(2,))


def test_export_refuses_overwrite_and_bad_arguments(tmp_path):
    target = tmp_path / 'm.onnx'
    target.write_bytes(b'x')
    with pytest.raises(OutputExistsError, match='--force'):
        export_onnx('cnn3', str(target), exporter='legacy')
    with pytest.raises(DeployError, match='opset >= 18'):
        export_onnx('cnn3', str(tmp_path / 'a.onnx'), opset=17)
    with pytest.raises(DeployError, match='exporter'):
        export_onnx('cnn3', str(tmp_path / 'a.onnx'), exporter='torchscript')
    with pytest.raises(DeployError, match='.onnx'):
        export_onnx('cnn3', str(tmp_path / 'a.txt'), exporter='legacy')
    r = export_onnx('cnn3', str(target), exporter='legacy', force=True)
    assert read_metadata(r['output'])['weights'] == 'random'


@pytest.mark.slow
@pytest.mark.parametrize('name', __import__('timm_recal.registry', fromlist=['x']).recal_models())
def test_full_registry_dynamo_export_fp32_parity(name, tmp_path):
    """Every registered model: default exporter, randomized weights, FP32 parity gates on real images."""
    size = ci_img_size(name)
    model = _randomized(name, size)
    r = parity(name, model=model, img_size=size, keep_dir=str(tmp_path))
    assert r['passed'], f"{name}: {r['failures']}"
    assert r['max_abs_err'] <= 1e-4 and r['max_rel_err'] <= 1e-3 and r['top1_agreement'] == 1.0


def test_onnx_export_refuses_aoti_only_options(tmp_path, capsys):
    """``--max-batch``, ``--static-batches`` and ``--compile-timeout`` shape an AOTInductor package; an ONNX export
    ignored them and exited 0 (while ``--format aoti`` refused the ONNX-only options)."""
    from deploy_helpers import run_cli
    out = tmp_path / 'x.onnx'
    rc, _, err = run_cli(capsys, 'export', 'cnn3', '-o', out, '--max-batch', '8', '--static-batches', '4',
                         '--compile-timeout', '5')
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert '--max-batch, --static-batches, --compile-timeout shape an AOTInductor package (--format aoti)' in err
    rc, _, err = run_cli(capsys, 'export', 'cnn3', '-o', out, '--static-batches', 'none')
    assert rc == 2 and '--static-batches shapes an AOTInductor package' in err
    assert not out.exists()
