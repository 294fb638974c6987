"""A runtime is one row (issue 20): the pipeline's stages and bench read the runtime table and the Triton backend
table and name no runtime; a new row with a builder is built by the engine stage and served by the triton stage
without a change to the pipeline."""
import ast
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip('onnxruntime')

from timm_recal_deploy import pipeline as pl, runtimes, triton_backends  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.runtimes import RUNTIMES, RuntimeSpec, default_runtimes  # noqa: E402

DEPLOY = Path(pl.__file__).parent
#: words a stage would branch on: our runtime words and the TensorRT builder's name
RUNTIME_WORDS = frozenset(RUNTIMES) | {'tensorrt'}
#: and in the Triton stage, Triton's backend names
BACKEND_WORDS = frozenset(triton_backends.TRITON_BACKENDS)


def _code_strings(path: Path):
    """``(line, text)`` of every string constant of a module that is not a docstring (f-string parts included)."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize('module', ['pipeline.py', 'bench.py', 'recommend.py', 'parity.py', 'validate.py',
                                    'triton.py'])
def test_stages_name_no_runtime(module):
    """The stages read rows; a string in their code that is a runtime word (``'ort'``, ``'openvino'``...) is a
    branch on one runtime, which belongs in ``runtimes.RUNTIMES`` (docstrings and comments may name them); in
    ``triton.py`` a Triton backend's name is one too (``triton_backends.TRITON_BACKENDS``)."""
    words = RUNTIME_WORDS | (BACKEND_WORDS if module == 'triton.py' else frozenset())
    named = [(line, text) for line, text in _code_strings(DEPLOY / module)
             if set(re.findall(r'\w+', text)) & words]
    assert named == [], f'{module} names runtimes in code: {named}'


def test_the_word_check_sees_a_runtime_in_code(tmp_path):
    """The check above can fail: a stage that branches on a word is caught, its docstring is not."""
    src = tmp_path / 'stage.py'
    src.write_text('def f(w):\n    """Runs ort."""\n    return w == "openvino" or f"{w}_trt"\n')
    found = [text for _, text in _code_strings(src) if set(re.findall(r'\w+', text)) & RUNTIME_WORDS]
    assert found == ['openvino']


def test_default_sets_come_from_the_rows(monkeypatch):
    """bench's default per device, and the pipeline's (rows whose ``pipeline_on`` names the device and whose
    package imports) are the table's: a new row joins them by its fields alone."""
    assert default_runtimes('cpu') == ['eager', 'eager_cl', 'ort']
    assert default_runtimes('cuda:1') == ['eager', 'eager_cl', 'ort_cuda', 'ort_trt']
    monkeypatch.setitem(RUNTIMES, 'fakert', RuntimeSpec('fakert', 'Fake', 'onnx', 'ort_runtime:open_ort', 'json',
                                                        'deploy', pipeline_on=('cpu',)))
    monkeypatch.setitem(RUNTIMES, 'absent', RuntimeSpec('absent', 'Absent', 'onnx', 'ort_runtime:open_ort',
                                                        'no_such_package_here', 'deploy', pipeline_on=('cpu',)))
    words = pl.pipeline_runtimes(pl.PipelineOptions(device='cpu'))
    assert words[:3] == ['eager', 'eager_cl', 'ort'] and words[-1] == 'fakert' and 'absent' not in words
    assert 'fakert' not in pl.pipeline_runtimes(pl.PipelineOptions(device='cuda'))
    assert 'fakert' not in default_runtimes('cpu')
    assert pl.parity_jobs(pl.PipelineOptions(stages=['export', 'parity'], precisions=['fp32'])) == [
        (runtimes.DEFAULT_ONNX_RUNTIME, 'fp32')]


def _copy_build(calls):
    def build(onnx_path, precision, *, max_batch_size, log):
        """A builder of a runtime that is not in the table: its file is a copy of the ONNX file."""
        calls.append((onnx_path, precision, max_batch_size))
        out = onnx_path[:-len('.onnx')] + '.fake.onnx'
        shutil.copyfile(onnx_path, out)
        return out, {'output': out, 'precision': precision}
    return build


def test_a_new_row_with_a_builder_is_built_and_served(tmp_path, monkeypatch):
    """A runtime row with a ``builder`` and a Triton backend row that serves its built file, registered in the
    tables only: the engine stage calls the builder for each ONNX file (next to TensorRT, skipped here with its
    reason) and the triton stage serves the FP32 file it built."""
    from timm_recal_deploy import tensorrt_build
    monkeypatch.setattr(tensorrt_build, 'import_tensorrt', lambda: (None, "ImportError: No module named 'tensorrt'"))
    monkeypatch.setattr(tensorrt_build, 'cuda_device', lambda index=0: None)
    calls = []
    monkeypatch.setattr(runtimes, 'fake_copy_build', _copy_build(calls), raising=False)
    monkeypatch.setitem(RUNTIMES, 'fakert', RuntimeSpec('fakert', 'Fake runtime', 'onnx', 'ort_runtime:open_ort',
                                                        'onnxruntime', 'deploy', builder='runtimes:fake_copy_build'))
    monkeypatch.setitem(triton_backends.TRITON_BACKENDS, 'fakeserve', triton_backends.TritonBackend(
        'fakeserve', 'fakert', 'model.onnx', 'KIND_CPU', 'onnx', 'built'))
    out = tmp_path / 'p'
    log = []
    r = pl.pipeline('cnn3', str(out), stages=['export', 'quantize', 'engine', 'triton'], precisions=['fp32', 'fp16'],
                    exporter='legacy', backend='fakeserve', max_batch_size=4, log=log.append)
    assert [(Path(p).name, q, b) for p, q, b in calls] == [('cnn3.onnx', 'fp32', 4), ('cnn3_fp16.onnx', 'fp16', 4)]
    engine = {(e['runtime'], e['precision']): e for e in r.engine}
    assert {k: e['status'] for k, e in engine.items()} == {
        ('trt', 'fp32'): 'skipped', ('trt', 'fp16'): 'skipped', ('fakert', 'fp32'): 'built',
        ('fakert', 'fp16'): 'built'}
    assert 'TensorRT is not installed' in engine[('trt', 'fp32')]['reason']
    # TensorRT (the first builder row) keeps engine_{p}.json; a later row names itself, as parity does
    assert json.loads((out / 'engine_fakert_fp16.json').read_text())['precision'] == 'fp16'
    assert not (out / 'engine_fp32.json').exists()  # skipped: no record
    assert r.passed and r.triton['status'] == 'written' and r.triton['runtime'] == 'fakert'
    assert (out / 'triton' / 'cnn3' / '1' / 'model.onnx').is_file() and (out / 'cnn3.fake.onnx').is_file()
    assert all(f'[{i}/{len(r.stages)}]' in '\n'.join(log) for i in range(1, len(r.stages) + 1))
    assert len(r.stages) == 1 + 1 + 2 * 2 + 1  # export, quantize fp16, 2 builder rows x 2 files, triton


def test_backend_words_are_the_table(tmp_path, capsys):
    """``--backend pytorch`` is accepted by the pipeline (it was refused before the table), and a bad word is
    one line that lists the table's words, before any stage runs."""
    from timm_recal.cli import main
    pl._check_options(pl.PipelineOptions(backend='pytorch', stages=['export', 'triton']))
    with pytest.raises(DeployError, match='--backend must be one of onnxruntime, tensorrt, openvino, pytorch, '
                                          "got 'tensorrtx'"):
        pl.pipeline('cnn3', str(tmp_path / 'p'), stages=['export', 'triton'], backend='tensorrtx')
    assert not (tmp_path / 'p').exists()
    rc = main(['pipeline', 'cnn3', '-o', str(tmp_path / 'q'), '--backend', 'tensorrtx'])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and "invalid choice: 'tensorrtx'" in err[-1]
    assert all(w in err[-1] for w in triton_backends.TRITON_BACKENDS) and not (tmp_path / 'q').exists()


def test_standalone_triton_makes_a_backends_file_from_its_row(tmp_path, monkeypatch):
    """``timm-recal triton`` makes the served file by the row alone (``triton.triton_artifact``): ``requires``
    before any export, the ONNX export, ``build`` with the engine options; ``export`` for a row serving the model;
    a file of another kind is handed on untouched (``write_triton_repository`` refuses it with the right command)."""
    from timm_recal_deploy.export import ExportOptions
    from timm_recal_deploy.triton import triton_artifact
    calls = []

    def build(onnx_path, out, **options):
        calls.append(('build', Path(onnx_path).name, Path(out).name, options))
        shutil.copyfile(onnx_path, out)
        return {'output': out}
    monkeypatch.setattr(triton_backends, 'fake_requires', lambda: calls.append(('requires',)), raising=False)
    monkeypatch.setattr(triton_backends, 'fake_build', build, raising=False)
    monkeypatch.setattr(triton_backends, 'fake_export', lambda spec, out, options, log: calls.append(
        ('export', spec, Path(out).name, options.exporter)) or out, raising=False)
    monkeypatch.setitem(triton_backends.TRITON_BACKENDS, 'fakebuilt', triton_backends.TritonBackend(
        'fakebuilt', 'ort', 'model.fake', 'KIND_CPU', 'onnx', 'built', requires='triton_backends:fake_requires',
        build='triton_backends:fake_build'))
    monkeypatch.setitem(triton_backends.TRITON_BACKENDS, 'fakemodel', triton_backends.TritonBackend(
        'fakemodel', 'aoti', 'model.pt2', 'KIND_CPU', 'pt2', 'model', package='aoti_package:triton_package',
        export='triton_backends:fake_export'))
    work = tmp_path / 'work'
    work.mkdir()
    logged = []
    made = triton_artifact('cnn3', 'fakebuilt', str(work), export_options=ExportOptions(exporter='legacy'),
                           engine_options={'batch': '1,4,8'}, log=logged.append)
    assert made == str(work / 'model.fake') and Path(made).is_file()
    assert calls == [('requires',), ('build', 'model.onnx', 'model.fake', {'batch': '1,4,8'})]
    assert logged[0] == 'exporting cnn3 ...'  # after requires: a missing tool costs no export
    calls.clear()
    assert triton_artifact('cnn3', 'fakemodel', str(work), export_options=ExportOptions(exporter='legacy'),
                           log=logged.append) == str(work / 'model.pt2')
    assert calls == [('export', 'cnn3', 'model.pt2', 'legacy')]
    calls.clear()
    other = tmp_path / 'm.pt2'
    assert triton_artifact(str(other), 'fakebuilt', str(work)) == str(other) and calls == []
    # TensorRT's row: a package given to it is not built (and TensorRT, absent here, is never asked for)
    assert triton_artifact(str(other), 'tensorrt', str(work)) == str(other)


def _trt_entries():
    built = {'runtime': 'trt', 'precision': 'fp32', 'status': 'built', 'file': 'out/m.plan',
             'result': {'tensorrt_version': '10.13.3', 'gpu': {'name': 'NVIDIA H100'}, 'output': 'out/m.plan',
                        'profile': {'input': 'input', 'min': [1, 3, 32, 32], 'opt': [16, 3, 32, 32],
                                    'max': [64, 3, 32, 32]}}}
    skipped = {'runtime': 'trt', 'precision': 'int8', 'status': 'skipped', 'reason': 'TensorRT is not installed'}
    return [built, skipped]


def test_engines_table_reads_the_rows_not_tensorrt_keys(monkeypatch):
    """The report's engines table read TensorRT's keys by name (``tensorrt_version``, ``gpu``, ``profile``) for
    every runtime with a builder; now each row's ``build_columns`` hook fills its columns (TensorRT's table is
    unchanged) and a row without one shows its built file, not empty TensorRT columns."""
    from timm_recal_deploy.report import _engines_section
    assert '\n'.join(_engines_section({'engine': _trt_entries()})) == '\n'.join([
        '## TensorRT engines', '',
        '| Precision | Engine | TensorRT | GPU | Batch min/opt/max | Plan |',
        '|---|---|---|---|---|---|',
        '| fp32 | built | 10.13.3 | NVIDIA H100 | 1/16/64 | `m.plan` |',
        '| int8 | skipped: TensorRT is not installed | - | - | - | - |', ''])
    monkeypatch.setattr(runtimes, 'fake_columns', lambda rec: {'Fake version': rec.get('version')}, raising=False)
    monkeypatch.setitem(RUNTIMES, 'fakert', RuntimeSpec('fakert', 'Fake runtime', 'onnx', 'ort_runtime:open_ort',
                                                        'onnxruntime', 'deploy', builder='runtimes:fake_copy_build',
                                                        build_columns='runtimes:fake_columns'))
    monkeypatch.setitem(RUNTIMES, 'plainrt', RuntimeSpec('plainrt', 'Plain runtime', 'onnx', 'ort_runtime:open_ort',
                                                         'onnxruntime', 'deploy', builder='runtimes:fake_copy_build'))
    engines = _trt_entries()[:1] + [
        {'runtime': 'fakert', 'precision': 'fp32', 'status': 'built', 'file': 'out/m.fake', 'result': {'version': '2'}},
        {'runtime': 'plainrt', 'precision': 'fp32', 'status': 'built', 'file': 'out/m.plain', 'result': {}}]
    title, _, table, _ = _engines_section({'engine': engines})
    lines = table.splitlines()
    assert title == '## TensorRT and Fake runtime and Plain runtime engines'
    assert lines[0] == ('| Runtime | Precision | Engine | TensorRT | GPU | Batch min/opt/max | Plan | Fake version '
                        '| File |')
    assert lines[2:] == ['| TensorRT | fp32 | built | 10.13.3 | NVIDIA H100 | 1/16/64 | `m.plan` | - | - |',
                          '| Fake runtime | fp32 | built | - | - | - | - | 2 | - |',
                          '| Plain runtime | fp32 | built | - | - | - | - | - | `m.plain` |']
    report_strings = [text for _, text in _code_strings(DEPLOY / 'report.py') if 'tensorrt' in text.lower()]
    assert report_strings == [], f'report.py names TensorRT in code: {report_strings}'
