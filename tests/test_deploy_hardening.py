"""Bad input to the deploy verbs gives a clear one-line error, a non-zero exit and no output (issue 11's deploy
items): opset range, label folders that are not the model's labels, an ONNX file paired with other weights,
options checked before any work, a corrupt image read by a DataLoader worker."""
import os
import shutil

import pytest
import torch

pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal.cli import main  # noqa: E402

from deploy_helpers import cifar_samples, randomize_weights_, run_cli, sample_batch  # noqa: E402

NAME = 'cnn3'




@pytest.fixture(scope='module')
def two_checkpoints(tmp_path_factory):
    """Two differently randomized cnn3 checkpoints and the ONNX file exported from the first."""
    d = tmp_path_factory.mktemp('hard')
    paths = []
    for seed in (0, 1):
        model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32), seed=seed)
        paths.append(d / f'w{seed}.pth')
        torch.save(model.state_dict(), paths[-1])
    onnx_path = d / 'a.onnx'
    assert main(['export', NAME, '--checkpoint', str(paths[0]), '-o', str(onnx_path), '--exporter', 'legacy']) == 0
    return paths, onnx_path


def test_opset_out_of_range_is_refused_up_front(tmp_path, capsys):
    rc, _, err = run_cli(capsys, 'export', NAME, '--opset', '99', '-o', tmp_path / 'a.onnx')
    assert rc == 2 and '--opset 99 is outside 18..' in err and not os.listdir(tmp_path)
    rc, _, err = run_cli(capsys, 'export', tmp_path / 'x.onnx', '-o', tmp_path / 'b.onnx')
    assert rc == 2 and 'is an ONNX file already' in err


def test_recorded_opset_is_the_files(two_checkpoints):
    from timm_recal_deploy.metadata import load_onnx, read_metadata
    _, onnx_path = two_checkpoints
    proto = load_onnx(str(onnx_path))
    assert read_metadata(proto)['opset'] == {o.domain: o.version for o in proto.opset_import}['']


def _renamed_classes(root, names):
    """A copy of the bundled CIFAR samples whose class folders are called ``names``."""
    src = cifar_samples()
    for cls, name in zip(sorted(os.listdir(src)), names):
        shutil.copytree(os.path.join(src, cls), os.path.join(root, name))
    return root


def test_folders_that_are_not_the_models_labels_need_folder_order(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    data = _renamed_classes(tmp_path / 'd', [f'class_{i}' for i in range(1, 11)])
    rc, _, err = run_cli(capsys, 'validate', onnx_path, '--data', data)
    assert rc == 2 and 'class_1' in err and 'airplane' in err and '--folder-order' in err
    rc, out, err = run_cli(capsys, 'validate', onnx_path, '--data', data, '--folder-order', '--json')
    assert rc == 0 and '"label_mode": "folder"' in out
    same = _renamed_classes(tmp_path / 'ok', ['airplane', 'automobile'])  # a subset of the labels: by name
    rc, out, _ = run_cli(capsys, 'validate', onnx_path, '--data', same, '--json')
    assert rc == 0 and '"label_mode": "labels"' in out


def test_onnx_file_of_other_weights_is_refused(two_checkpoints, capsys):
    (w0, w1), onnx_path = two_checkpoints
    rc, _, err = run_cli(capsys, 'parity', NAME, '--checkpoint', w1, '--onnx', onnx_path)
    assert rc == 2 and 'other weights' in err and 'weight hashes differ' in err
    rc, out, err = run_cli(capsys, 'parity', NAME, '--checkpoint', w0, '--onnx', onnx_path)
    assert rc == 0 and 'PASSED' in out, err
    rc, _, err = run_cli(capsys, 'bench', NAME, '--checkpoint', w1, '--onnx', onnx_path, '--runtimes', 'ort',
                      '--batch', '1', '--repeats', '1', '--warmup', '0', '--min-time', '0')
    assert rc == 2 and 'other weights' in err


def test_options_refused_before_work(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    rc, _, err = run_cli(capsys, 'quantize', onnx_path, '-o', tmp_path / 'q.onnx', '--calib-data', cifar_samples(),
                      '--fp32-layers', '100000')
    assert rc == 2 and '--fp32-layers 100000' in err and not (tmp_path / 'q.onnx').exists()
    rc, _, err = run_cli(capsys, 'validate', onnx_path, '--data', cifar_samples(), '--device', 'cuda')
    assert rc == 2 and '--runtimes' in err
    (tmp_path / 'file').write_text('x')
    rc, _, err = run_cli(capsys, 'parity', onnx_path, '--keep-dir', tmp_path / 'file')
    assert rc == 2 and 'is a file' in err
    rc, _, err = run_cli(capsys, 'pipeline', NAME, '-o', tmp_path / 'p', '--runtimes', 'bogus')
    assert rc == 2 and 'unknown runtime' in err and not (tmp_path / 'p').exists()


def test_corrupt_image_with_dataloader_workers(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    data = _renamed_classes(tmp_path / 'd', ['airplane'])
    (data / 'airplane' / 'broken.jpg').write_bytes(b'not a jpeg at all')
    # a real process, as users run it: DataLoader workers forked from a test worker leave torch's SIGCHLD
    # handler behind in that long-lived process
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-m', 'timm_recal.cli', 'validate', str(onnx_path), '--data', str(data),
                           '-j', '1'], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    rc, err = proc.returncode, proc.stderr
    assert 'Traceback' not in err, err
    assert rc == 2 and 'cannot read image' in err and 'broken.jpg' in err and len(err.strip().splitlines()) == 1


def test_sigterm_during_export_keeps_the_old_file_and_leaves_no_temporaries(tmp_path):
    """A real process killed with SIGTERM while the exporter runs: the previous file (``--force``) is intact,
    and neither a temporary file beside it nor the exporter's temporary folder is left behind."""
    import signal
    import subprocess
    import sys
    import time
    out, tmp = tmp_path / 'm.onnx', tmp_path / 'tmp'
    out.write_bytes(b'old model')
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, '-m', 'timm_recal.cli', 'export', 'resnet18', '--img-size', '64',
                             '-o', str(out), '--force'], env={**os.environ, 'TMPDIR': str(tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().startswith('exporting'), 'the exporter never started'  # its progress line
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)  # inside torch.onnx.export
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith('interrupted'), err
    if out.read_bytes() != b'old model':  # the signal landed after the new file was complete: that file, whole
        import onnx
        onnx.checker.check_model(onnx.load(str(out)))
    assert sorted(os.listdir(tmp_path)) == ['m.onnx', 'tmp'] and os.listdir(tmp) == []
