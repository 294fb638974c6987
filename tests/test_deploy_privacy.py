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

from deploy_helpers import (cifar_samples, leaks_in, local_paths_in, randomize_weights_, run_cli,  # noqa: E402
                            sample_batch)

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


# --- issue 21: no file of any command names a local folder; --json and -o agree --------------------------------
def _raw_dynamo_export(model, path):
    """A file as ``torch.onnx.export(dynamo=True)`` writes it outside this project: node stack traces included."""
    program = torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), dynamo=True, optimize=True,
                                dynamic_shapes=({0: torch.export.Dim('batch', min=1)},))
    program.save(str(path))
    assert b'pkg.torch.onnx.stack_trace' in path.read_bytes()  # what the triton copy must leave out


@pytest.fixture(scope='session')
def written_everywhere(tmp_path_factory):
    """A working folder holding what the commands write, made with relative arguments as a user types them: a
    ``pipeline`` folder (dynamo exporter; the fewest stages that write every kind of file: ONNX FP32 and INT8,
    stage JSON, report.md/json, throughput.png, a Triton repository), a ``publish --with-onnx --dry-run`` folder
    that takes that report into its card, and a ``triton`` repository of a file exported by torch directly."""
    work = tmp_path_factory.mktemp('leaks') / 'work'
    cwd = os.getcwd()
    _checkpoint(work / 'ckpt' / 'w.pth', 0)
    os.chdir(work)
    try:
        assert main(['pipeline', NAME, '--checkpoint', 'ckpt/w.pth', '-o', 'pipe', '--stages',
                     'export,quantize,bench,triton,report', '--precision', 'fp32,int8', '--runtimes', 'ort',
                     '--batch', '1', '--warmup', '0', '--repeats', '1', '--min-time', '0', '--calib-images', '8']) == 0
        assert main(['publish', NAME, '--checkpoint', 'ckpt/w.pth', '--repo-id', 'test-org/cnn3', '--dry-run',
                     '-o', 'pub', '--with-onnx', '--calib-images', '8', '--report', 'pipe']) == 0
        model = timm.create_model(NAME).eval()
        _raw_dynamo_export(model, work / 'raw.onnx')
        assert main(['triton', 'raw.onnx', '-o', 'repo']) == 0
    finally:
        os.chdir(cwd)
    return work


def test_no_written_file_names_a_local_folder(written_everywhere, monkeypatch):
    """Every file of a pipeline folder, a publish folder and a Triton repository, searched byte for byte (ONNX node
    metadata, doc strings and value_info included) for the working, home, temp, repository and Python folders."""
    monkeypatch.chdir(written_everywhere)
    kinds = {p.suffix for d in ('pipe', 'pub', 'repo') for p in (written_everywhere / d).rglob('*') if p.is_file()}
    assert {'.onnx', '.json', '.md', '.png', '.pbtxt', '.txt', '.safetensors'} <= kinds, kinds
    for folder in ('pipe', 'pub', 'repo'):
        assert not leaks_in(written_everywhere / folder), leaks_in(written_everywhere / folder)


def test_dynamo_exports_keep_the_module_hierarchy_not_the_stack_traces(written_everywhere):
    """The exporter's per-node debug metadata that names source files goes; the module path (Netron's view) stays."""
    import onnx
    for path in ('pipe/cnn3.onnx', 'pipe/cnn3_int8.onnx', 'pub/onnx/model.onnx', 'repo/raw/1/model.onnx'):
        model = onnx.load(str(written_everywhere / path))
        keys = {p.key for n in model.graph.node for p in n.metadata_props}
        assert 'pkg.torch.onnx.stack_trace' not in keys, path
    keys = {p.key for n in onnx.load(str(written_everywhere / 'pipe/cnn3.onnx')).graph.node for p in n.metadata_props}
    assert 'namespace' in keys


def test_pipeline_triton_stage_names_the_final_folder(written_everywhere):
    """The serve command of the triton stage (triton.json, report.json) names the final folder relative to the
    working folder, not the temporary folder it was built in; nothing of the run names that temporary folder."""
    pipe = written_everywhere / 'pipe'
    for name in ('report.json', 'triton.json'):
        serve = json.loads((pipe / name).read_text())
        serve = serve['triton']['serve'] if name == 'report.json' else serve['serve']
        assert serve == 'tritonserver --model-repository=' + os.path.join('pipe', 'triton'), (name, serve)
    assert '.tmp' not in (pipe / 'report.md').read_text() + (pipe / 'report.json').read_text()


def test_default_pipeline_report_names_no_local_dir(tmp_path, monkeypatch):
    """The embedded default is a ``local-dir:`` model inside the installed package: report.md names it by its
    folder's name, as report.json does, and no file of the run names a local folder."""
    from timm_recal_deploy.pipeline import default_model
    spec, _ = default_model()
    if not spec.startswith('local-dir:'):
        pytest.skip('no trained default model is bundled')
    monkeypatch.chdir(tmp_path)
    assert main(['pipeline', '-o', 'default', '--stages', 'export,report', '--exporter', 'legacy']) == 0
    for name in ('report.md', 'report.json'):
        text = (tmp_path / 'default' / name).read_text()
        assert 'local-dir:default_model' in text and spec.split(':', 1)[1] not in text, name
    assert not leaks_in(tmp_path / 'default'), leaks_in(tmp_path / 'default')


def test_json_on_stdout_and_the_output_file_agree(written_everywhere, capsys, monkeypatch):
    """``--json`` prints what the ``-o`` file records: paths as the user typed them (relative to the working
    folder), never made absolute; for export and triton, the paths the user gave."""
    monkeypatch.chdir(written_everywhere)
    from deploy_helpers import cifar_samples
    data = os.path.relpath(cifar_samples())
    rc, out, _ = run_cli(capsys, 'validate', 'pipe/cnn3.onnx', '--data', data, '--limit', '8', '-o', 'v.json',
                         '--json', '--force')
    assert rc == 0 and json.loads(out) == json.loads((written_everywhere / 'v.json').read_text())
    assert json.loads(out)['onnx'] == os.path.join('pipe', 'cnn3.onnx')
    rc, out, _ = run_cli(capsys, 'bench', 'pipe/cnn3.onnx', '--runtimes', 'ort', '--batch', '1', '--warmup', '0',
                         '--repeats', '1', '--min-time', '0', '-o', 'b.json', '--json', '--force')
    assert rc == 0 and json.loads(out) == json.loads((written_everywhere / 'b.json').read_text())
    rc, out, _ = run_cli(capsys, 'export', NAME, '--checkpoint', 'ckpt/w.pth', '-o', 'e.onnx', '--exporter',
                         'legacy', '--json', '--force')
    assert rc == 0 and json.loads(out)['output'] == 'e.onnx' and json.loads(out)['checkpoint'] == \
        os.path.join('ckpt', 'w.pth')
    rc, out, _ = run_cli(capsys, 'triton', 'e.onnx', '-o', 'r2', '--json', '--force')
    rec = json.loads(out)
    assert rc == 0 and rec['repository'] == 'r2' and rec['serve'] == 'tritonserver --model-repository=r2'
    assert rec['model_file'] == os.path.join('r2', NAME, '1', 'model.onnx')
