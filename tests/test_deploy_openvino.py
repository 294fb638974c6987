"""OpenVINO runtime: FP32 parity with PyTorch, BF16 and INT8 (our QDQ file and NNCF IR) on a tiny net, the
per-batch compile cache, ``describe()``, the INT8 pick, and a clear error without the package.

The ``slow`` test checks the agreement contract (>= 99% top-1 with FP32) on all 10,000 CIFAR-10 test images
for the trained weights in ``weights/``.
"""
import builtins
import os
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
ov = pytest.importorskip('openvino')
pytest.importorskip('nncf')

import timm  # noqa: E402
import torch  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.images import bundled_samples_dir, make_loader  # noqa: E402
from timm_recal_deploy.metadata import read_metadata  # noqa: E402
from timm_recal_deploy.openvino_runtime import (  # noqa: E402
    EagerAutocastRunner, NoNativePrecision, bf16_support, open_openvino, pick_int8, quantize_nncf, top1_agreement)
from timm_recal_deploy.quantize import quantize_int8  # noqa: E402

from deploy_helpers import REPO, randomize_weights_, sample_batch  # noqa: E402

NAME = 'se_shufflenetv2_x0_5_cifar'
CIFAR_SAMPLES = bundled_samples_dir({'input_size': (3, 32, 32)})
NATIVE_BF16 = bf16_support()['native']


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A randomized tiny gated net, its FP32 export, our QDQ INT8 file and an NNCF IR."""
    tmp = tmp_path_factory.mktemp('ov')
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32))
    fp32 = export_onnx(NAME, str(tmp / 'fp32.onnx'), model=model, exporter='legacy')['output']
    qdq = quantize_int8(fp32, str(tmp / 'qdq.onnx'), None, calib_images=32, progress=False)['output']
    nncf_ir = quantize_nncf(fp32, None, str(tmp / 'nncf.xml'), num_images=32)
    images = np.concatenate([x.numpy() for x, _ in make_loader(CIFAR_SAMPLES, read_metadata(fp32), 50)])
    with torch.no_grad():
        ref = model(torch.from_numpy(images)).numpy()
    return {'model': model, 'fp32': fp32, 'qdq': qdq, 'nncf': nncf_ir, 'images': images, 'ref': ref, 'tmp': tmp}


def _rel(out, ref):
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def test_fp32_parity_with_pytorch(files):
    runner = open_openvino(files['fp32'], precision='fp32', threads=1)
    out = runner(files['images'])
    assert out.dtype == np.float32 and out.shape == files['ref'].shape
    assert _rel(out, files['ref']) < 1e-4
    assert runner.describe()['inference_precision'] == 'f32'  # not the bf16 default of AMX CPUs


@pytest.mark.skipif(not NATIVE_BF16, reason='no native BF16 on this CPU')
def test_bf16_runs_and_agrees_loosely(files):
    runner = open_openvino(files['fp32'], precision='bf16', threads=1)
    out = runner(files['images'])
    assert runner.describe()['inference_precision'] == 'bf16'
    rel = _rel(out, files['ref'])
    assert 1e-6 < rel < 0.1  # really reduced precision, still close
    assert top1_agreement(out, files['ref']) >= 0.9


def test_bf16_refused_without_native_support(files, monkeypatch):
    import timm_recal_deploy.openvino_runtime as ovr
    monkeypatch.setattr(ovr, '_cpu_flags', lambda: {'avx512f'})
    with pytest.raises(NoNativePrecision, match='no native BF16'):
        open_openvino(files['fp32'], precision='bf16')
    runner = open_openvino(files['fp32'], precision='bf16', allow_emulation=True)
    assert any('no native BF16' in n for n in runner.describe()['notes'])


@pytest.mark.parametrize('kind', ['qdq', 'nncf'])
def test_int8_loads_and_runs(files, kind):
    path = files[kind] if kind == 'qdq' else files[kind]['output']
    runner = open_openvino(path, precision='int8', threads=1)
    out = runner(files['images'])
    rel = _rel(out, files['ref'])
    assert 1e-5 < rel < 0.5, rel  # quantized (not FP32), yet the same function
    assert top1_agreement(out, files['ref']) >= 0.8
    info = runner.describe()
    assert info['precision'] == 'int8'
    assert info['quantization']['method'] == ('nncf.quantize' if kind == 'nncf' else 'onnxruntime.quantize_static')


def test_nncf_ir_carries_metadata_and_is_whole(files):
    from timm_recal.outputs import public_path
    res = files['nncf']
    assert os.path.isfile(res['output']) and os.path.isfile(res['weights']) and res['fake_quantize_nodes'] > 0
    runner = open_openvino(res['output'], precision='int8')
    assert runner.meta['input_size'] == [3, 32, 32] and runner.meta['precision'] == 'int8'
    assert runner.meta['quantization']['calib_data'] == public_path(CIFAR_SAMPLES)  # no local path (issue 21)
    leftovers = [f for f in os.listdir(files['tmp']) if f.startswith('.')]
    assert not leftovers
    with pytest.raises(FileExistsError, match='exists'):  # timm_recal.outputs.OutputExistsError
        quantize_nncf(files['fp32'], None, res['output'], num_images=4)


def test_nncf_failure_leaves_no_files(files, monkeypatch):
    import nncf
    out = files['tmp'] / 'broken.xml'

    def boom(*a, **k):
        raise RuntimeError('calibration exploded')
    monkeypatch.setattr(nncf, 'quantize', boom)
    with pytest.raises(DeployError, match='calibration exploded'):
        quantize_nncf(files['fp32'], None, str(out), num_images=4)
    assert not out.exists() and not (files['tmp'] / 'broken.bin').exists()


def test_precision_must_fit_the_file(files):
    with pytest.raises(DeployError, match='not quantized'):
        open_openvino(files['fp32'], precision='int8')
    with pytest.raises(DeployError, match="precision='int8'"):
        open_openvino(files['qdq'], precision='fp32')
    with pytest.raises(DeployError, match='precision must be one of'):
        open_openvino(files['fp32'], precision='fp16')
    with pytest.raises(DeployError, match='unknown OpenVINO option'):
        open_openvino(files['fp32'], colour='blue')
    with pytest.raises(DeployError, match='not found'):
        open_openvino(str(files['tmp'] / 'missing.onnx'))


def test_compile_cache_per_batch_and_describe(files):
    runner = open_openvino(files['fp32'], threads=1)
    images = files['images']
    first = runner(images[:4])
    call = runner.prepare(16)
    call()
    again = runner(images[:4])
    np.testing.assert_array_equal(first, again)  # the prepared batch did not disturb the cached request
    info = runner.describe()
    assert info['compiled_batches'] == [1, 4, 16]  # batch 1 compiled at open
    assert info['shape'] == 'fixed' and info['threads'] == 1 and info['openvino'] == ov.get_version()
    assert info['device'] == 'CPU' and info['precision'] == 'fp32' and 'bf16' in info
    import json
    json.dumps(info)
    runner(images[:4])
    assert runner.describe()['compiled_batches'] == [1, 4, 16]  # reused, not recompiled
    dyn = open_openvino(files['fp32'], threads=1, dynamic=True)
    assert _rel(dyn(images[:3]), files['ref'][:3]) < 1e-4 and dyn(images[:5]).shape[0] == 5
    assert dyn.describe()['shape'] == 'dynamic'
    with pytest.raises(DeployError, match='does not fit'):
        runner(np.zeros((1, 3, 64, 64), np.float32))


def test_pick_measures_agreement_on_images_the_calibration_did_not_see(files, monkeypatch):
    """NNCF calibrates on the QDQ file's own calibration images; agreement is measured on other images of that
    folder (at most ``PICK_IMAGES``), never on the calibration ones while others exist."""
    from timm_recal_deploy import openvino_int8
    from timm_recal_deploy.images import scan_images, spread_indices
    n = len(scan_images(CIFAR_SAMPLES)[0])
    calib = spread_indices(n, 32, seed=0)  # quantize_int8's sample of 32 (seed 0)
    kw, images, where = openvino_int8.agreement_images(files['qdq'], files['fp32'], None, 32)
    assert kw['indices'] == calib and os.path.samefile(kw['calib_images'], CIFAR_SAMPLES)
    rest = [i for i in range(n) if i not in calib]
    expect = np.concatenate([x.numpy() for x, _ in make_loader(CIFAR_SAMPLES, read_metadata(files['fp32']), 64,
                                                               indices=rest)])
    np.testing.assert_array_equal(images, expect)
    assert f'{len(rest)} images of ' in where and 'disjoint from the 32 calibration images' in where
    assert not os.path.isabs(where.split(' of ', 1)[1].split(' disjoint')[0]), where  # no local folder recorded
    monkeypatch.chdir(files['tmp'])  # the recorded (relative or last-component) folder does not resolve here
    _, again, _ = openvino_int8.agreement_images(files['qdq'], files['fp32'], None, 32)
    np.testing.assert_array_equal(again, expect)  # found by name: the folder given, here the bundled samples
    monkeypatch.setattr(openvino_int8, 'PICK_IMAGES', 5)
    _, few, where = openvino_int8.agreement_images(files['qdq'], files['fp32'], None, 32)
    assert len(few) == 5 and where.startswith('5 images of ')
    assert all(any(np.array_equal(img, e) for e in expect) for img in few)


def test_pick_int8_keeps_the_fastest_that_passes(files):
    cands = {'qdq': files['qdq'], 'nncf': files['nncf']['output']}
    # random weights on 50 images sit below the 99% contract; the threshold here tests the selection itself
    res = pick_int8(files['fp32'], cands, files['images'], threads=1, min_agreement=0.5, min_time_s=0.05, rounds=1)
    assert set(res['candidates']) == {'qdq', 'nncf'}
    passed = [k for k, v in res['candidates'].items() if v['passed']]
    assert res['picked'] in passed and len(passed) == 2
    assert all(res['candidates'][res['picked']]['images_per_s'] >= res['candidates'][k]['images_per_s'] for k in passed)
    none = pick_int8(files['fp32'], cands, files['images'], threads=1, min_agreement=1.01, rounds=1)
    assert none['picked'] is None and 'no INT8 variant' in none['reason']


def test_eager_autocast_bf16(files):
    runner = EagerAutocastRunner(files['model'], [3, 32, 32])
    out = runner(files['images'][:8])
    assert out.dtype == np.float32 and 0 < _rel(out, files['ref'][:8]) < 0.1
    runner.prepare(2)()
    assert runner.describe()['precision'] == 'bf16'


def test_missing_openvino_is_a_clear_error(monkeypatch):
    import timm_recal_deploy.openvino_runtime as ovr
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == 'openvino' or name.startswith('openvino.'):
            raise ImportError('No module named openvino')
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_openvino)
    monkeypatch.delitem(sys.modules, 'openvino', raising=False)
    with pytest.raises(DeployError, match=r"'openvino' package: pip install 'timm-recal\[openvino\]'"):
        ovr.open_openvino('model.onnx')


# --- the agreement contract on real data (slow) ---------------------------------------------------------------
TRAINED = ['shufflenetv2_x0_5_cifar', 'se_shufflenetv2_x0_5_cifar', 'ab_shufflenetv2_x0_5_cifar',
           'sle_shufflenetv2_x0_5_cifar']


@pytest.mark.slow
@pytest.mark.parametrize('arch', TRAINED)
def test_bf16_int8_agreement_on_cifar10_test(arch, shared_data, tmp_path):
    """BF16 and the INT8 file the deploy stage keeps agree with FP32 on >= 99% of the CIFAR-10 test images.

    Both INT8 candidates are measured (our QDQ recipe with 48 float nodes, NNCF's default PTQ); the contract
    is that the one ``pick_int8`` keeps passes, i.e. at least one does, and ``pick_int8`` never keeps one
    that does not.
    """
    weights = os.path.join(REPO, 'weights', f'{arch}.cifar10')
    if not os.path.isdir(weights):
        pytest.skip(f'{weights} not found')
    test_dir, train_dir = str(shared_data / 'cifar10' / 'test'), str(shared_data / 'cifar10' / 'train')
    fp32 = export_onnx(f'local-dir:{weights}', str(tmp_path / 'fp32.onnx'))['output']
    qdq = quantize_int8(fp32, str(tmp_path / 'qdq.onnx'), train_dir, calib_images=512, progress=False,
                        fp32_layers=48)['output']
    ir = quantize_nncf(fp32, train_dir, str(tmp_path / 'nncf.xml'), num_images=300)['output']
    images = np.concatenate([x.numpy() for x, _ in make_loader(test_dir, read_metadata(fp32), 500)])
    assert len(images) == 10_000

    def logits(runner):
        return np.concatenate([runner(images[i:i + 500]) for i in range(0, len(images), 500)])
    ref = logits(open_openvino(fp32, precision='fp32'))
    int8 = {'qdq': top1_agreement(logits(open_openvino(qdq, precision='int8')), ref),
            'nncf': top1_agreement(logits(open_openvino(ir, precision='int8')), ref)}
    bf16 = top1_agreement(logits(open_openvino(fp32, precision='bf16')), ref) if NATIVE_BF16 else None
    print(arch, {'bf16': bf16, 'int8': int8})
    assert bf16 is None or bf16 >= 0.99, bf16
    assert max(int8.values()) >= 0.99, int8
    picked = pick_int8(fp32, {'qdq': qdq, 'nncf': ir}, images, rounds=1, min_time_s=0.2)
    assert picked['picked'] is not None and picked['candidates'][picked['picked']]['agreement'] >= 0.99, picked


_SIGNAL_AFTER_OPENVINO = '''
import gc, os, signal, sys
from timm_recal_deploy.openvino_runtime import open_openvino
runners = [open_openvino(sys.argv[1], precision=p) for p in ('fp32', 'fp32', 'bf16')]
for i, runner in enumerate(runners):
    runner.prepare(1 + i)()
del runner
while runners:  # freed in the order made, not the reverse
    del runners[0]
    gc.collect()
signal.signal(signal.SIGUSR1, lambda *a: print('handler ran', flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print('survived', flush=True)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='sigaltstack bookkeeping is checked on Linux')
def test_a_signal_after_openvino_models_are_freed_runs_its_handler(files):
    """OpenVINO leaves the compiling thread on a freed alternate signal stack when models are freed in the order
    they were made; a Python signal handler (Ctrl-C, SIGTERM, DataLoader's SIGCHLD) then segfaulted. In a
    separate process, since the failure is a crash."""
    import subprocess
    proc = subprocess.run([sys.executable, '-c', _SIGNAL_AFTER_OPENVINO, files['fp32']], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ['handler', 'ran', 'survived']
