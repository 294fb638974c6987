"""Published files name no local folders (issue 11, item 17), and a file handed over with its checkpoint still
finds its PyTorch reference: as recorded (relative to the working folder), beside the file, or given with
``--checkpoint``; a same-named checkpoint of other weights is refused by the weights hash."""
import json
import os
import shutil

import pytest
import torch

pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal.cli import main  # noqa: E402

from deploy_helpers import cifar_samples, local_paths_in, randomize_weights_, run_cli, sample_batch  # noqa: E402

NAME = 'cnn3'




def _checkpoint(path, seed):
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A file exported from a checkpoint inside the working folder (``work/ckpt/w.pth``) and one from a
    checkpoint outside it, with ``quantize`` and ``parity -o`` outputs; the working folder is ``work``."""
    root = tmp_path_factory.mktemp('privacy')
    work, outside = root / 'work', root / 'elsewhere'
    inner, outer = _checkpoint(work / 'ckpt' / 'w.pth', 0), _checkpoint(outside / 'w_out.pth', 1)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(['export', NAME, '--checkpoint', 'ckpt/w.pth', '-o', 'inner.onnx', '--exporter', 'legacy']) == 0
        assert main(['export', NAME, '--checkpoint', str(outer), '-o', str(outside / 'outer.onnx'),
                     '--exporter', 'legacy']) == 0
        assert main(['quantize', str(outside / 'outer.onnx'), '--precision', 'int8', '--calib-images', '16',
                     '--calib-data', cifar_samples(), '-o', str(outside / 'outer_int8.onnx')]) == 0
        assert main(['parity', str(outside / 'outer.onnx'), '--checkpoint', str(outer),
                     '-o', str(outside / 'parity.json')]) == 0
    finally:
        os.chdir(cwd)
    return work, outside, inner, outer


def test_published_files_name_no_local_folders(exported):
    from timm_recal_deploy.metadata import read_metadata
    work, outside, _, _ = exported
    assert read_metadata(str(work / 'inner.onnx'))['checkpoint'] == os.path.join('ckpt', 'w.pth')
    meta = read_metadata(str(outside / 'outer.onnx'))
    assert meta['checkpoint'] == 'w_out.pth' and len(meta['weights_sha256']) == 64  # name + content hash
    q = read_metadata(str(outside / 'outer_int8.onnx'))['quantization']
    assert q['calib_data'] == os.path.basename(cifar_samples()) and q['calib_images'] == 16  # folder name + image count
    saved = json.loads((outside / 'parity.json').read_text())
    assert saved['onnx'] == 'outer.onnx' and not os.path.isabs(saved['data'])
    assert not local_paths_in(str(outside)) and not local_paths_in(str(work))


def test_info_says_where_the_file_came_from(exported, capsys):
    _, outside, _, _ = exported
    rc, out, _ = run_cli(capsys, 'info', outside / 'outer.onnx')
    made = next(line for line in out.splitlines() if 'made from' in line)
    assert rc == 0 and NAME in made and 'checkpoint w_out.pth' in made and 'sha256' in made and 'legacy' in made
    assert 'timm_recal' in out and 'torch' in out


def test_parity_finds_the_recorded_checkpoint(exported, capsys, monkeypatch):
    work, outside, _, _ = exported
    monkeypatch.chdir(work)  # relative to the working folder it was exported in
    rc, out, err = run_cli(capsys, 'parity', 'inner.onnx')
    assert rc == 0 and 'PASSED' in out, err
    handed = outside / 'handed'
    handed.mkdir()
    shutil.copy(work / 'inner.onnx', handed / 'inner.onnx')
    monkeypatch.chdir(handed)  # handed over without the ckpt/ folder: refused, saying what to pass
    rc, _, err = run_cli(capsys, 'parity', 'inner.onnx')
    assert rc == 2 and 'ckpt/w.pth' in err and 'not there' in err and '--checkpoint' in err
    rc, out, err = run_cli(capsys, 'parity', 'inner.onnx', '--checkpoint', work / 'ckpt' / 'w.pth')
    assert rc == 0 and 'PASSED' in out, err
    rc, out, err = run_cli(capsys, 'parity', NAME, '--checkpoint', work / 'ckpt' / 'w.pth', '--onnx', 'inner.onnx')
    assert rc == 0 and 'PASSED' in out, err
    shutil.copy(work / 'ckpt' / 'w.pth', handed / 'w.pth')  # file and checkpoint side by side
    monkeypatch.chdir(outside)
    rc, out, err = run_cli(capsys, 'parity', handed / 'inner.onnx')
    assert rc == 0 and 'PASSED' in out, err


def test_a_same_named_checkpoint_of_other_weights_is_refused(exported, capsys, monkeypatch, tmp_path):
    work, _, _, outer = exported
    shutil.copy(work / 'inner.onnx', tmp_path / 'inner.onnx')
    shutil.copy(outer, tmp_path / 'w.pth')  # the recorded name, other weights: no silent wrong reference
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, 'parity', 'inner.onnx')
    assert rc == 2 and 'weight hashes differ' in err


def test_committed_benchmark_records_name_no_local_folders():
    from deploy_helpers import REPO
    folder = os.path.join(REPO, 'benchmarks')
    assert not local_paths_in(folder), local_paths_in(folder)
