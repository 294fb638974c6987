"""FP32 parity of every gate type on every family (randomized weights, real images), and proof that the gates
catch what they must: wrong weights, NaN, tolerances per precision, reports."""
import json
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.parity import TOLERANCES, compare_logits, format_report, parity  # noqa: E402

from deploy_helpers import SHARED_DATA, ci_img_size, ci_models, randomize_weights_, sample_batch  # noqa: E402


def _randomized(name: str, size: int, seed: int = 0):
    return randomize_weights_(timm.create_model(name), sample_batch(name, size), seed=seed)


@pytest.mark.parametrize('name', ci_models())
def test_fp32_parity_every_gate_and_family(name):
    """One model per (gate, family) registered now, legacy exporter (fast); the dynamo path is covered in
    test_deploy_export.py and, for every model, by the slow full-registry test."""
    size = ci_img_size(name)
    model = _randomized(name, size)
    r = parity(name, model=model, img_size=size, exporter='legacy', threads=1)
    assert r['passed'], format_report(r)
    assert r['max_abs_err'] <= 1e-4 and r['max_rel_err'] <= 1e-3 and r['top1_agreement'] == 1.0
    assert r['n_images'] == (50 if size == 32 else 12) and r['nonfinite'] == {'pytorch': 0, 'onnx': 0}
    assert r['logit_scale'] > 0.5  # randomized: logits are not ~0, so the tolerances bite


def test_default_path_model_spec_dynamo(tmp_path):
    """parity(MODEL) with defaults: dynamo export to a temporary file, bundled images, FP32 gates."""
    name = 'abplus_shufflenetv2_x0_5_cifar'
    model = _randomized(name, 32)
    r = parity(name, model=model, keep_dir=str(tmp_path))
    assert r['passed'], format_report(r)
    assert r['exported'] and os.path.isfile(r['onnx']) and r['precision'] == 'fp32'
    assert r['tolerances'] == TOLERANCES['fp32'] and r['bundled_data'] and r['label_mode'] == 'labels'


def test_parity_catches_wrong_weights(tmp_path):
    """The ONNX file of differently randomized weights must fail, with a readable report."""
    name = 'se_resnet20_cifar'
    a, b = _randomized(name, 32, seed=0), _randomized(name, 32, seed=1)
    other = export_onnx(name, str(tmp_path / 'b.onnx'), model=b, exporter='legacy')['output']
    r = parity(name, onnx_path=other, model=a, output=str(tmp_path / 'report.json'))
    assert not r['passed'] and any('max abs error' in f for f in r['failures'])
    text = format_report(r)
    assert 'FAILED' in text and 'FAIL: max abs error' in text and 'largest error on' in text
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['passed'] is False and saved['failures'] == r['failures']
    with pytest.raises(DeployError, match='--force'):
        parity(name, onnx_path=other, model=a, output=str(tmp_path / 'report.json'))


def test_parity_catches_nan(tmp_path):
    name = 'cnn3'
    model = _randomized(name, 32)
    path = export_onnx(name, str(tmp_path / 'm.onnx'), model=model, exporter='legacy')['output']
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float('nan')  # after export: NaN in PyTorch only
    r = parity(name, onnx_path=path, model=model)
    assert not r['passed'] and r['nonfinite']['pytorch'] > 0
    assert any('non-finite' in f for f in r['failures'])


def test_compare_logits_metrics():
    ref = np.array([[1.0, 2.0, 3.0, 0.0, -1.0, 0.5], [4.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    out = ref.copy()
    out[0, 2] = 3.5  # top-1 unchanged, error 0.5
    out[1, 1] = 5.0  # top-1 changes, error 5
    m = compare_logits(ref, out)
    assert m['max_abs_err'] == pytest.approx(5.0) and m['mean_abs_err'] == pytest.approx(5.5 / 12)
    assert m['max_rel_err'] == pytest.approx(5.0 / 4.0) and m['mean_rel_err'] == pytest.approx((0.5 / 3 + 5 / 4) / 2)
    assert m['top1_agreement'] == 0.5 and m['worst_index'] == 1
    out[0, 0] = np.nan
    assert compare_logits(ref, out)['nonfinite'] == {'pytorch': 0, 'onnx': 1}


def test_onnx_with_random_weights_cannot_be_checked(tmp_path):
    path = export_onnx('cnn3', str(tmp_path / 'r.onnx'), exporter='legacy')['output']
    with pytest.raises(DeployError, match='random'):
        parity(path)


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, 'imagenet-1k-samples')), reason='no shared data')
def test_parity_on_imagenet_folder_uses_true_class_indices():
    """--data on the 1000-synset folder: labels are ImageNet indices, images go through timm preprocessing."""
    name = 'se_resnet18'
    model = _randomized(name, 64)
    r = parity(name, model=model, img_size=64, exporter='legacy', limit=24,
               data=os.path.join(SHARED_DATA, 'imagenet-1k-samples'))
    assert r['passed'], format_report(r)
    assert r['n_images'] == 24 and r['label_mode'] == 'labels' and not r['bundled_data']


def test_threads_apply_to_the_pytorch_side_and_are_restored(monkeypatch):
    """``--threads`` is the PyTorch reference's thread count too (it ran with all of torch's threads: 13x slower
    than one thread on a loaded machine), for the stage only."""
    seen = []
    from timm_recal_deploy import eager_runtime
    real_forward = eager_runtime.EagerRunner._forward
    monkeypatch.setattr(eager_runtime.EagerRunner, '_forward',
                        lambda self, x: seen.append(torch.get_num_threads()) or real_forward(self, x))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = parity('cnn3', model=_randomized('cnn3', 32), img_size=32, exporter='legacy', threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert r['passed'] and seen and set(seen) == {1} and r['reference']['threads'] == 1


def test_int8_options_of_a_run_that_quantizes_nothing_are_refused(tmp_path, monkeypatch):
    """``--fp32-layers``/``--calib-method``... with an FP32 or FP16 check, or with a file that is already INT8,
    were ignored and the run printed PASSED as if the recipe had been checked; now one line before any export.
    An INT8 check of an FP32 file still takes them."""
    from timm_recal_deploy import parity as parity_mod
    from timm_recal_deploy.quantize import quantize_int8
    name = 'cnn3'
    model = _randomized(name, 32)
    path = export_onnx(name, str(tmp_path / 'm.onnx'), model=model, exporter='legacy')['output']
    int8 = quantize_int8(path, str(tmp_path / 'm_int8.onnx'), calib_images=8).output  # on the bundled samples
    cases = [
        (dict(precision=None, fp32_layers=2, calib_method='entropy'),
         '--calib-method, --fp32-layers shape INT8 calibration, which this run does not do: parity calibrates only '
         'for --precision int8 of an FP32 file or MODEL, not fp32'),
        (dict(precision='fp16', moving_average=False), '--no-moving-average shapes INT8 calibration'),
        (dict(onnx_path=int8, symmetric=True), f'--symmetric shapes INT8 calibration, which this run does not do: '
                                               f'{int8} is already INT8'),
    ]
    monkeypatch.setattr(parity_mod, 'export_source', lambda *a, **k: pytest.fail('exported before the check'))
    for kw, message in cases:
        with pytest.raises(DeployError) as e:
            parity(name, model=model, **kw)
        assert message in str(e.value)
    with pytest.raises(DeployError, match='--calib-images shapes INT8 calibration'):
        parity(int8, model=model, calib_images=64)
    r = parity(name, onnx_path=path, model=model, precision='int8', calib_images=8, calib_method='percentile',
               limit=8)
    assert r.calibration['calibrate_method'] == 'percentile' and r.calibration['calib_images'] == 8

