"""A write that fails (a full disk, a file-size limit, a folder that takes no files) is one line naming the path the
user gave, found before the slow work where it can be, and leaves nothing half-written (issue 21, items 10, 13,
14); and the project's one error hierarchy (no translation layer) without an import circle."""
import ast
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import timm
import timm_recal  # noqa: F401
from timm_recal.errors import RecalError
from timm_recal.outputs import (OutputError, OutputExistsError, OutputWriteError, atomic_folder, atomic_output,
                                write_text)

from deploy_helpers import REPO, run_cli

#: runs ``timm-recal ARGV...`` under a file-size limit, as a full disk would fail the writes (EFBIG, not SIGXFSZ)
_LIMITED = r'''
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from timm_recal.cli import main
for argv in sys.argv[2:]:
    print('rc', main(argv.split('|')), file=sys.stderr, flush=True)
'''


def _run_limited(cwd, limit, *commands):
    """``[(exit status, stderr lines)]`` of each command (``|``-separated argv), all in one interpreter."""
    proc = subprocess.run([sys.executable, '-c', _LIMITED, str(limit), *('|'.join(c) for c in commands)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert 'Traceback' not in proc.stderr, proc.stderr
    runs, lines = [], []
    for line in proc.stderr.splitlines():
        if line.startswith('rc '):
            runs.append((int(line[3:]), [x for x in lines if x.startswith('timm-recal')]))
            lines = []
        else:
            lines.append(line)
    assert len(runs) == len(commands), proc.stderr
    return runs


def _only_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob('*'))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('writes')
    torch.save(timm.create_model('cnn3').state_dict(), work / 'w.pth')
    return work


# --- items 10 and 14: a full disk is a write error naming the path, not a traceback or an exporter failure ---------
def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing(checkpoint):
    """``publish --dry-run`` (safetensors), ``export`` (dynamo, the default) and ``pipeline`` under a 64 kB file-size
    limit: each says which of the user's paths could not be written and why, exits 2, and leaves no file or
    temporary folder; the exporter is not blamed (no "try --exporter legacy")."""
    pytest.importorskip('onnxruntime')
    before = _only_files(checkpoint)
    runs = _run_limited(checkpoint, 64_000,
                        ['publish', 'cnn3', '--checkpoint', 'w.pth', '--repo-id', 'test-org/cnn3', '--dry-run',
                         '-o', 'pub'],
                        ['export', 'cnn3', '--checkpoint', 'w.pth', '-o', 'out/e.onnx'],
                        ['pipeline', 'cnn3', '--checkpoint', 'w.pth', '-o', 'pipe', '--stages', 'export,report',
                         '--exporter', 'legacy'])
    (rc_pub, pub), (rc_exp, exp), (rc_pipe, pipe) = runs
    assert rc_pub == 2 and pub == ['timm-recal publish: error: cannot write pub/model.safetensors: File too large']
    assert rc_exp == 2 and exp == ['timm-recal export: error: cannot write out/e.onnx: File too large']
    assert rc_pipe == 2 and pipe == ['timm-recal pipeline: error: cannot write pipe/cnn3.onnx: File too large']
    assert _only_files(checkpoint) == before  # nothing half-written, no temporary file or folder, no parent


# --- item 13: a folder that takes no files is refused before the export, naming the user's path -------------------
@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs Linux /proc')
@pytest.mark.parametrize('verb,argv,slow_step', [
    ('export', ['cnn3', '-o', '/proc/x.onnx'], 'timm_recal_deploy.export:open_source'),
    ('validate', ['cnn3', '--data', 'DATA', '-o', '/proc/m.json'], 'timm_recal_deploy.validate:_source'),
    ('triton', ['cnn3', '-o', '/proc/repo'], 'timm_recal_deploy.triton:export_onnx'),
])
def test_an_unwritable_folder_is_refused_before_the_work(verb, argv, slow_step, capsys, monkeypatch):
    """``/proc`` refuses new files even to root (whose permission bits say yes): the probe finds it up front."""
    from deploy_helpers import cifar_samples

    def never(*args, **kwargs):
        raise AssertionError('the output was checked after the slow step')
    import importlib
    module, name = slow_step.split(':')
    monkeypatch.setattr(importlib.import_module(module), name, never)
    rc, _, err = run_cli(capsys, verb, *[cifar_samples() if a == 'DATA' else a for a in argv])
    assert rc == 2 and f'cannot write {argv[-1]}: /proc does not take new files' in err, err
    assert '.tmp' not in err and len(err.strip().splitlines()) == 1


def test_write_errors_name_the_final_path_never_the_temporary_one(tmp_path):
    """A failed write inside ``atomic_output`` names the file; inside ``atomic_folder`` the folder's final path."""
    def full_disk(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), _[0] if _ else None)
    with pytest.raises(OutputError, match=r'^cannot write .*a\.onnx: No space left on device$') as e:
        with atomic_output(tmp_path / 'a.onnx') as tmp:
            full_disk(tmp)
    assert '.tmp' not in str(e.value)
    with pytest.raises(OutputError) as e:
        with atomic_folder(tmp_path / 'repo') as tmp:
            write_text('x', os.path.join(tmp, 'config.pbtxt'))
            full_disk(os.path.join(tmp, 'model.onnx'))
    assert str(e.value) == f"cannot write {tmp_path / 'repo' / 'model.onnx'}: No space left on device"
    assert os.listdir(tmp_path) == []


# --- structure: one error hierarchy, no import circle -------------------------------------------------------------
def test_one_error_hierarchy(tmp_path):
    """Every error a user can cause derives from ``timm_recal.errors.RecalError``; ``except DeployError`` still
    catches an output problem, with no translation layer (``timm_recal_deploy.outputs`` is gone)."""
    import importlib.util
    from timm_recal.publish import PublishError
    from timm_recal_deploy.errors import BatchNotSupported, DeployError, NoNativePrecision
    assert DeployError is RecalError
    for kind in (OutputError, OutputExistsError, OutputWriteError, PublishError, BatchNotSupported, NoNativePrecision):
        assert issubclass(kind, DeployError), kind
    assert importlib.util.find_spec('timm_recal_deploy.outputs') is None
    from timm_recal_deploy import export_onnx
    (tmp_path / 'm.onnx').write_bytes(b'')
    with pytest.raises(DeployError, match='exists; pass --force'):  # timm_recal.outputs' own error
        export_onnx('cnn3', str(tmp_path / 'm.onnx'))


def _imports(path: Path, package: str):
    """The modules of ``package`` that ``path`` imports, at any level (inside functions too)."""
    module = '.'.join(path.relative_to(Path(REPO)).with_suffix('').parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.')[:len(module.split('.')) - node.level + (path.name == '__init__.py')]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            found |= {name} | {f'{name}.{a.name}' for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {n for n in found if n.startswith(package + '.')}


def test_publish_and_training_import_no_circle():
    """``timm_recal.publish`` reads a training run itself (``read_run``); ``training.package`` only calls it."""
    root = Path(REPO) / 'timm_recal'
    publish, package = _imports(root / 'publish.py', 'timm_recal'), _imports(root / 'training' / 'package.py',
                                                                             'timm_recal')
    assert 'timm_recal.publish' in package and not any(n.startswith('timm_recal.training.package') for n in publish)
