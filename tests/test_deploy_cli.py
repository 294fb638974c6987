"""The deploy commands' contract: subcommands, -o/--force, checkpoint formats, and clear errors for bad input
(message, non-zero exit, never a traceback)."""
import json
import os
import subprocess
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal.cli import build_parser  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.model_io import load_model, read_checkpoint  # noqa: E402

from deploy_helpers import randomize_weights_, run_cli, saved_and_exported  # noqa: E402

CIFAR_MODEL = 'shufflenetv2_x0_5_cifar'



@pytest.fixture(scope='module')
def trained_like(tmp_path_factory):
    """A randomized CIFAR model saved as a plain state dict, and its FP32 ONNX export (legacy exporter)."""
    return saved_and_exported(CIFAR_MODEL, tmp_path_factory.mktemp('cli'))


def test_all_six_subcommands_registered():
    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    for name in ('export', 'parity', 'validate', 'bench', 'quantize', 'pipeline'):
        assert name in sub.choices, name
    for name in ('export', 'quantize'):  # writing commands: -o and --force
        opts = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {'-o', '--output', '--force'} <= opts


def test_export_parity_validate_quantize_flow(trained_like, tmp_path, capsys):
    model, ckpt, onnx_path = trained_like
    # parity on the ONNX file rebuilds the PyTorch side from the checkpoint recorded in the metadata
    rc, out, err = run_cli(capsys, 'parity', str(onnx_path), '-o', str(tmp_path / 'parity.json'))
    assert rc == 0, out + err
    assert 'PASSED' in out and (tmp_path / 'parity.json').is_file()
    rc, out, err = run_cli(capsys, 'validate', str(onnx_path), '--data', _bundled_cifar(), '-o', str(tmp_path))
    assert rc == 0, err
    import json
    onnx_metrics = json.loads((tmp_path / 'metrics.json').read_text())
    rc, out, err = run_cli(capsys, 'validate', CIFAR_MODEL, '--checkpoint', str(ckpt), '--data', _bundled_cifar(),
                        '--json')
    assert rc == 0, err
    torch_metrics = json.loads(out)
    assert onnx_metrics['n_images'] == torch_metrics['n_images'] == 50
    assert onnx_metrics['top1'] == torch_metrics['top1'] and onnx_metrics['top5'] == torch_metrics['top5']
    rc, out, err = run_cli(capsys, 'quantize', str(onnx_path), '-o', str(tmp_path / 'h.onnx'), '--precision', 'fp16')
    assert rc == 0, err
    # its checkpoint is in another folder (files record no absolute paths): handed over with --checkpoint
    rc, out, err = run_cli(capsys, 'parity', str(tmp_path / 'h.onnx'), '--checkpoint', str(trained_like[1]))
    assert rc == 0 and 'parity fp16: PASSED' in out, out + err


def test_quantize_int8_options_reach_the_file(trained_like, tmp_path, capsys):
    from timm_recal_deploy.metadata import read_metadata
    _, _, onnx_path = trained_like
    out_path = tmp_path / 'q.onnx'
    rc, out, err = run_cli(capsys, 'quantize', str(onnx_path), '-o', str(out_path), '--data', _bundled_cifar(),
                        '--calib-images', '16', '--calib-method', 'percentile', '--fp32-layers', '2', '--json')
    assert rc == 0, err
    q = read_metadata(str(out_path))['quantization']
    assert json.loads(out)['fp32_layers'] == q['fp32_layers'], \
        'stdout must be the JSON alone (ORT prints histogram progress that must go to stderr)'
    assert q['calibrate_method'] == 'percentile' and q['calib_images'] == 16 and len(q['fp32_layers']) == 2
    assert q['moving_average'] is False  # averaging applies to minmax only
    rc, out, err = run_cli(capsys, 'quantize', str(onnx_path), '-o', str(tmp_path / 'bad.onnx'), '--data',
                        _bundled_cifar(), '--fp32-layers', '-3')
    assert rc != 0 and 'fp32_layers must be >= 0' in err and 'Traceback' not in err


def _bundled_cifar() -> str:
    from timm_recal_deploy.images import bundled_samples_dir
    return bundled_samples_dir({'input_size': (3, 32, 32)})


# --- bad input: message, non-zero exit, no traceback --------------------------------------------------------
def test_unknown_model_suggests_close_names(tmp_path, capsys):
    rc, out, err = run_cli(capsys, 'export', 'se_shufflenet_x0_5_cifar', '-o', str(tmp_path / 'a.onnx'))
    assert rc != 0 and 'unknown model' in err and 'se_shufflenetv2_x0_5_cifar' in err
    assert not (tmp_path / 'a.onnx').exists()


def test_missing_and_corrupt_checkpoint(tmp_path, capsys):
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '--checkpoint', str(tmp_path / 'nope.pth'),
                      '-o', str(tmp_path / 'a.onnx'))
    assert rc != 0 and 'checkpoint not found' in err
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint at all')
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '--checkpoint', str(bad), '-o', str(tmp_path / 'a.onnx'))
    assert rc != 0 and 'cannot read checkpoint' in err
    bad_st = tmp_path / 'bad.safetensors'
    bad_st.write_bytes(b'\x00' * 64)
    rc, _, err = run_cli(capsys, 'validate', CIFAR_MODEL, '--checkpoint', str(bad_st), '--data', _bundled_cifar())
    assert rc != 0 and 'cannot read checkpoint' in err


def test_checkpoint_of_another_architecture(trained_like, tmp_path, capsys):
    _, ckpt, _ = trained_like
    rc, _, err = run_cli(capsys, 'export', 'se_shufflenetv2_x0_5_cifar', '--checkpoint', str(ckpt),
                      '-o', str(tmp_path / 'a.onnx'))
    assert rc != 0 and 'does not fit se_shufflenetv2_x0_5_cifar' in err and 'keys missing' in err
    assert 'attn' in err  # names the differing keys


def test_corrupt_and_missing_onnx(tmp_path, capsys):
    rc, _, err = run_cli(capsys, 'parity', str(tmp_path / 'missing.onnx'))
    assert rc != 0 and 'not found' in err
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'\x08\x07garbage' * 10)
    for cmd in (['parity', str(bad)], ['validate', str(bad), '--data', _bundled_cifar()],
                ['quantize', str(bad), '-o', str(tmp_path / 'q.onnx'), '--data', _bundled_cifar()]):
        rc, _, err = run_cli(capsys, *cmd)
        assert rc != 0 and str(bad) in err, (cmd, err)


def test_wrong_input_size(trained_like, tmp_path, capsys):
    _, _, onnx_path = trained_like
    rc, _, err = run_cli(capsys, 'validate', str(onnx_path), '--data', _bundled_cifar(), '--img-size', '64')
    assert rc != 0 and 'exported for 32x32' in err
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '--img-size', '0', '-o', str(tmp_path / 'a.onnx'))
    assert rc != 0 and '--img-size' in err


def test_empty_data_folder(trained_like, tmp_path, capsys):
    _, _, onnx_path = trained_like
    (tmp_path / 'empty' / 'cat').mkdir(parents=True)
    rc, _, err = run_cli(capsys, 'validate', str(onnx_path), '--data', str(tmp_path / 'empty'))
    assert rc != 0 and 'no images found' in err
    rc, _, err = run_cli(capsys, 'parity', str(onnx_path), '--data', str(tmp_path / 'nothing_here'))
    assert rc != 0 and 'not found' in err


def test_existing_output_needs_force(trained_like, tmp_path, capsys):
    _, ckpt, onnx_path = trained_like
    target = tmp_path / 'out.onnx'
    target.write_bytes(b'keep me')
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '-o', str(target), '--exporter', 'legacy')
    assert rc != 0 and '--force' in err and target.read_bytes() == b'keep me'
    rc, _, err = run_cli(capsys, 'quantize', str(onnx_path), '-o', str(target), '--precision', 'fp16')
    assert rc != 0 and '--force' in err and target.read_bytes() == b'keep me'
    metrics = tmp_path / 'm.json'
    metrics.write_text('{}')
    rc, _, err = run_cli(capsys, 'validate', str(onnx_path), '--data', _bundled_cifar(), '-o', str(metrics))
    assert rc != 0 and '--force' in err and metrics.read_text() == '{}'
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '-o', str(target), '--exporter', 'legacy', '--force',
                      '--checkpoint', str(ckpt))
    assert rc == 0 and target.read_bytes()[:2] != b'ke'


def test_missing_onnx_package_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, 'onnx', None)  # import onnx -> ModuleNotFoundError
    rc, _, err = run_cli(capsys, 'export', CIFAR_MODEL, '-o', str(tmp_path / 'a.onnx'), '--exporter', 'legacy')
    assert rc != 0 and "timm-recal[deploy]" in err


def test_console_script_error_has_no_traceback(tmp_path):
    """The installed entry point, end to end: bad input gives one message and exit status 2."""
    proc = subprocess.run([sys.executable, '-m', 'timm_recal.cli', 'validate', 'resnet_18', '--data', _bundled_cifar()],
                          capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr and 'resnet18' in proc.stderr


# --- checkpoint formats and num_classes -------------------------------------------------------------------
@pytest.fixture(scope='module')
def seven_class(tmp_path_factory):
    d = tmp_path_factory.mktemp('ckpt')
    model = timm.create_model(CIFAR_MODEL, num_classes=7)
    randomize_weights_(model)
    sd = model.state_dict()
    torch.save(sd, d / 'plain.pth')
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / 'plain.safetensors'))
    other = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({'epoch': 3, 'arch': CIFAR_MODEL, 'state_dict': {f'module.{k}': v for k, v in sd.items()},
                'state_dict_ema': other, 'args': __import__('argparse').Namespace(lr=0.1)}, d / 'train.pth.tar')
    timm.models.save_for_hf(model, str(d / 'hf'))
    return model, d


@pytest.mark.parametrize('fmt', ['plain.pth', 'plain.safetensors', 'train.pth.tar', 'hf'])
def test_checkpoint_formats_and_num_classes(seven_class, fmt):
    model, d = seven_class
    loaded, info = load_model(CIFAR_MODEL, checkpoint=str(d / fmt))
    assert loaded.num_classes == info['num_classes'] == 7  # from the classifier, not the default 10
    assert info['weights'] == 'checkpoint' and not loaded.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


def test_local_dir_spec_and_ema(seven_class):
    model, d = seven_class
    loaded, info = load_model(f'local-dir:{d / "hf"}')
    assert info['architecture'] == CIFAR_MODEL and loaded.num_classes == 7
    ema, _ = load_model(CIFAR_MODEL, checkpoint=str(d / 'train.pth.tar'), use_ema=True)
    w = 'head.fc.weight'
    torch.testing.assert_close(ema.state_dict()[w], model.state_dict()[w] + 1)
    with pytest.raises(DeployError, match='without EMA weights'):
        read_checkpoint(str(d / 'plain.pth'), use_ema=True)
    with pytest.raises(DeployError, match='7'):  # explicit --num-classes that contradicts the classifier
        load_model(CIFAR_MODEL, checkpoint=str(d / 'plain.pth'), num_classes=10)


def test_tagged_name_without_weights_offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(DeployError, match='--checkpoint'):
        load_model('resnet18.a1_in1k')
    with pytest.raises(DeployError, match='unknown pretrained tag'):
        load_model('resnet18.no_such_tag')


def test_random_weights_are_the_same_in_every_load_and_leave_the_callers_generator_alone():
    """A model without weights gets timm's init, seeded: the same spec gives the same weights in every process
    (random-weight exports repeat; compiled packages hit their cache), and the global generator is untouched."""
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, info = load_model('cnn3')
    second, _ = load_model('cnn3')
    assert info['weights'] == 'random'
    assert torch.equal(torch.rand(3), expected_next)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_closed_stdout_ends_a_verb_quietly(tmp_path):
    """``timm-recal report details X | head`` ended with 'timm-recal report: error: [Errno 32] Broken pipe' on
    stderr: a reader that stops reading ends the command quietly, with the status a shell shows for SIGPIPE."""
    record = {'kind': 'timm-recal-bench', 'models': {'target': {'name': 'm', 'input_size': [3, 8, 8]}},
              'settings': {'batches': [1], 'warmup': 1, 'repeats': 1, 'min_time_s': 0.1, 'device': 'cpu'},
              'results': [{'role': 'target', 'runtime': 'ort', 'precision': 'fp32', 'batch': 1, 'images_per_s': 1.0,
                           'latency_ms': {'p50': 1.0, 'p90': 1.0, 'p99': 1.0}, 'iterations': 1}], 'ratios': []}
    path = tmp_path / 'b.json'
    path.write_text(json.dumps(record))
    code = 'import sys; from timm_recal.cli import main; sys.exit(main(sys.argv[1:]))'
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes a byte
    try:
        proc = subprocess.run([sys.executable, '-c', code, 'report', 'details', str(path)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert proc.stderr == '' and proc.returncode == 141, proc.stderr
