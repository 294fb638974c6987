"""Fault injection (issue 11): real ``timm-recal export``, ``quantize`` and ``pipeline`` processes killed with
SIGTERM or SIGINT at several points of their run, each over an existing good output with ``--force``. After
every kill the output path holds the old file (folder) or the complete new one, never a partial file, and no
temporary file, temporary folder or empty folder is left. Also: two ``export`` runs racing to one path
without ``--force``: one wins, the other fails with "exists".

Kill points are events watched from outside, not fixed delays (the machine may be loaded): the process is
starting (imports), the exporter has started (its temporary folder appears under ``TMPDIR``), the output's
temporary file or folder appears beside the final path, a pipeline stage starts (its progress line). A kill
that arrives after the process finished simply finds the new output: also a valid outcome, checked the same.
The default run signals each point once (SIGTERM and SIGINT alternating); ``-m slow`` sends both at each.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, List, Optional, Tuple

import pytest

pytest.importorskip('onnxruntime')

import onnx  # noqa: E402

MODEL = 'resnet20_cifar'
#: a point of the run: ``(name, trigger(seconds since start, stderr lines, watched folders) -> fire now?)``
Trigger = Callable[[float, List[str], Tuple[str, ...]], bool]


def _cli() -> List[str]:
    exe = shutil.which('timm-recal', path=os.path.dirname(sys.executable)) or shutil.which('timm-recal')
    return [exe] if exe else [sys.executable, '-m', 'timm_recal.cli']


def _calib() -> str:
    from timm_recal_deploy.images import bundled_samples_dir
    return bundled_samples_dir({'input_size': (3, 32, 32)})


def after(seconds: float) -> Trigger:
    return lambda t, lines, folders: t >= seconds


def temp_in(index: int, prefix: str = '.') -> Trigger:
    """A temporary entry (``prefix`` name, ``.tmp`` in it) has appeared in watched folder ``index``."""
    def fire(t, lines, folders):
        try:
            names = os.listdir(folders[index])
        except FileNotFoundError:
            return False
        return any(n.startswith(prefix) and ('.tmp' in n or prefix != '.') for n in names)
    return fire


def line(text: str) -> Trigger:
    return lambda t, lines, folders: any(text in s for s in lines)


def _run_and_signal(argv: List[str], sig: int, trigger: Trigger, folders: Tuple[str, ...], tmpdir: str,
                    timeout: float = 120) -> Tuple[Optional[int], bool, str]:
    """Run ``argv``; send ``sig`` when ``trigger`` fires. Returns ``(returncode, fired, stderr)``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, 'TMPDIR': tmpdir, 'HF_HUB_OFFLINE': '1'})
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, '')), daemon=True)
    reader.start()
    t0, fired = time.monotonic(), False
    while proc.poll() is None:
        if trigger(time.monotonic() - t0, lines, folders):
            proc.send_signal(sig)
            fired = True
            break
        assert time.monotonic() - t0 < timeout, 'the run neither finished nor reached the kill point'
        time.sleep(0.002)
    proc.wait(timeout=timeout)
    reader.join(timeout=10)
    return proc.returncode, fired, ''.join(lines)


def _ours(tmpdir) -> List[str]:
    """Our temporary folders left in ``TMPDIR`` (all named ``timm_recal_*``; libraries keep caches there too:
    torch's ``torchinductor_USER``, a ``.ses`` file, on purpose)."""
    return [n for n in os.listdir(tmpdir) if n.startswith('timm_recal')]


def _assert_whole_onnx(path: str, old: bytes) -> str:
    """``'old'`` or ``'new'``: the file is the old bytes or a complete ONNX model that passes the checker."""
    data = open(path, 'rb').read()
    if data == old:
        return 'old'
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {p.key for p in model.metadata_props} >= {'architecture', 'precision'}  # the whole file, metadata last
    return 'new'


def _points(triggers, both: bool):
    """``(name, trigger, signal)``: SIGTERM and SIGINT alternating over the points, or both at each."""
    sigs = (signal.SIGTERM, signal.SIGINT)
    if both:
        return [(name, trig, sig) for name, trig in triggers for sig in sigs]
    return [(name, trig, sigs[i % 2]) for i, (name, trig) in enumerate(triggers)]


@pytest.fixture(scope='module')
def good_files(tmp_path_factory):
    """An FP32 file and an INT8 file of ``MODEL`` (made in-process: the "existing good outputs"). Both differ
    from what the killed runs write (opset 17, 8 calibration images), so old and new are told apart."""
    from timm_recal_deploy.export import export_onnx
    from timm_recal_deploy.quantize import quantize_int8
    d = tmp_path_factory.mktemp('good')
    fp32 = export_onnx(MODEL, str(d / 'fp32.onnx'), exporter='legacy', opset=17)['output']
    int8 = quantize_int8(fp32, str(d / 'int8.onnx'), _calib(), calib_images=8)['output']
    return fp32, int8


def _export_kills(tmp_path, good_files, both: bool) -> None:
    fp32, _ = good_files
    old = open(fp32, 'rb').read()
    triggers = [('starting', after(0.3)), ('exporter running', line('exporting')),
                ('temp file beside the output', temp_in(0))]
    outcomes = []
    for i, (name, trigger, sig) in enumerate(_points(triggers, both)):
        case, tmpdir = tmp_path / f'export{i}', tmp_path / f'tmp{i}'
        case.mkdir()
        tmpdir.mkdir()
        out = case / 'm.onnx'
        shutil.copy(fp32, out)
        rc, fired, err = _run_and_signal(_cli() + ['export', MODEL, '--exporter', 'legacy', '-o', str(out), '--force'],
                                         sig, trigger, (str(case), str(tmpdir)), str(tmpdir))
        assert 'Traceback' not in err or not fired or name == 'starting', err
        state = _assert_whole_onnx(str(out), old)
        assert sorted(os.listdir(case)) == ['m.onnx'], (name, os.listdir(case))
        assert _ours(tmpdir) == [], (name, os.listdir(tmpdir))  # the exporter's temp folder is gone too
        if fired and rc != 0:
            assert rc in (130, -sig, 1) and (state == 'old' or name != 'starting'), (name, rc, err)
        else:
            assert rc == 0 and state == 'new', (name, rc, err)
        outcomes.append((name, signal.Signals(sig).name, fired, rc, state))
    assert outcomes[0][2] and outcomes[0][4] == 'old', outcomes  # the early kill did interrupt the run


def test_killed_export_leaves_old_or_new_file_never_partial(tmp_path, good_files):
    _export_kills(tmp_path, good_files, both=False)


def test_killed_export_into_a_new_folder_leaves_no_empty_folder(tmp_path):
    """Killed while writing into folders it created: they are removed again (only they)."""
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    out = tmp_path / 'new' / 'deeper' / 'm.onnx'
    rc, fired, err = _run_and_signal(_cli() + ['export', MODEL, '--exporter', 'legacy', '-o', str(out)],
                                     signal.SIGTERM, line('exporting'), (str(tmpdir),), str(tmpdir))
    assert fired and rc == 130, err
    assert sorted(os.listdir(tmp_path)) == ['tmp'] and _ours(tmpdir) == []


def test_killed_quantize_leaves_old_or_new_file_never_partial(tmp_path, good_files):
    fp32, int8 = good_files
    old = open(int8, 'rb').read()
    triggers = [('starting', after(0.3)), ('calibrating', after(3.0)), ('temp file beside the output', temp_in(0))]
    for i, (name, trigger, sig) in enumerate(_points(triggers, both=False)):
        case = tmp_path / f'q{i}'
        case.mkdir()
        out = case / 'm_int8.onnx'
        shutil.copy(int8, out)
        rc, fired, err = _run_and_signal(
            _cli() + ['quantize', fp32, '--precision', 'int8', '--calib-data', _calib(), '--calib-images', '16',
                      '-o', str(out), '--force'], sig, trigger, (str(case),), str(tmp_path))
        state = _assert_whole_onnx(str(out), old)
        assert sorted(os.listdir(case)) == ['m_int8.onnx'], (name, rc, err, os.listdir(case))
        assert _ours(tmp_path) == [], (name, rc, err, os.listdir(tmp_path))
        if not fired:
            assert rc == 0 and state == 'new', (name, rc, err)
        elif name == 'starting' or state == 'old':
            assert rc != 0 and state == 'old', (name, rc, err)


def _folder_state(folder: str, old: dict) -> str:
    """``'old'`` (same files, same bytes) or ``'new'`` (a complete run: its report and every file whole)."""
    now = {n: open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))}
    if now == old:
        return 'old'
    assert 'report.json' in now and 'report.md' in now, sorted(now)
    import json
    record = json.loads(now['report.json'])
    assert record['stages'] and all(s['status'] in ('ok', 'passed') for s in record['stages']), record['stages']
    for name in now:
        if name.endswith('.onnx'):
            onnx.checker.check_model(onnx.load(os.path.join(folder, name)), full_check=True)
    assert not any(n.startswith('.') for n in now), sorted(now)
    return 'new'


PIPELINE_ARGS = ['--stages', 'export,quantize,report', '--precision', 'fp32,int8', '--exporter', 'legacy',
                 '--calib-data']


def test_killed_pipeline_leaves_old_or_new_folder(tmp_path):
    from timm_recal_deploy import pipeline as pl
    out = tmp_path / 'parent' / 'run'
    pl.pipeline(MODEL, str(out), stages='export,quantize,report', precisions=('fp32', 'int8'), exporter='legacy',
                calib_data=_calib())
    (out / 'stale_compare.json').write_text('{}')  # a file of an older run: --force must not keep it
    old = {n: open(os.path.join(out, n), 'rb').read() for n in sorted(os.listdir(out))}
    triggers = [('work folder made', temp_in(0)), ('quantize stage', line('quantize target int8')),
                ('report stage', line('] report'))]
    states = []
    for name, trigger, sig in _points(triggers, both=False):
        rc, fired, err = _run_and_signal(_cli() + ['pipeline', MODEL, '-o', str(out), '--force'] + PIPELINE_ARGS
                                         + [_calib()], sig, trigger, (str(out.parent),), str(tmp_path))
        state = _folder_state(str(out), old)
        assert os.listdir(out.parent) == ['run'], (name, os.listdir(out.parent))  # no work folder left beside
        if not fired:
            assert rc == 0 and state == 'new', (name, rc, err)
        elif state == 'old':  # stopped before publishing: an interrupted run, cleaned up
            assert rc == 130 and 'interrupted' in err, (name, rc, err)
        # else the signal came after the new folder was in place (exit 130, or killed by the default handler
        # once the command had returned): the complete new folder, checked above
        if state == 'new':
            assert 'stale_compare.json' not in os.listdir(out)
            old = {n: open(os.path.join(out, n), 'rb').read() for n in sorted(os.listdir(out))}
        states.append((name, fired, rc, state))
    assert states[0][1] and states[0][3] == 'old', states  # the first kill interrupted a run in progress


def test_two_concurrent_exports_one_wins_one_fails_with_exists(tmp_path):
    out = tmp_path / 'm.onnx'
    argv = _cli() + ['export', MODEL, '--exporter', 'legacy', '-o', str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, 'HF_HUB_OFFLINE': '1'}) for _ in range(2)]
    results = sorted((p.wait(timeout=180), p.stderr.read()) for p in procs)
    assert results[0][0] == 0 and results[1][0] == 2, results
    assert 'exists' in results[1][1] and '--force' in results[1][1] and 'Traceback' not in results[1][1]
    assert os.listdir(tmp_path) == ['m.onnx']
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


@pytest.mark.slow
def test_killed_export_both_signals_at_every_point(tmp_path, good_files):
    _export_kills(tmp_path, good_files, both=True)


@pytest.mark.parametrize('sig', [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_quantize_signalled_while_calibrating_keeps_the_old_file(sig, tmp_path, good_files):
    """Held at a known point (``timm_recal.pause_points``): calibration has started, the new file is not yet
    renamed into place. The signal ends it with exit 130, the old file intact, no temporary file or folder."""
    from pause_helpers import Held
    fp32, int8 = good_files
    old = open(int8, 'rb').read()
    case, tmpdir = tmp_path / 'case', tmp_path / 'tmp'
    case.mkdir()
    tmpdir.mkdir()
    out = case / 'm_int8.onnx'
    shutil.copy(int8, out)
    held = Held(_cli() + ['quantize', fp32, '--precision', 'int8', '--calib-data', _calib(), '--calib-images', '16',
                          '-o', str(out), '--force'], 'quantize.calibrating', str(tmp_path / 'held'),
                env={'TMPDIR': str(tmpdir)})
    held.wait_held()
    assert _ours(tmpdir), 'calibrating inside its temporary folder'
    rc, _, err = held.signal(sig)
    assert rc == 130 and err.strip().endswith('interrupted') and 'Traceback' not in err, err
    assert open(out, 'rb').read() == old
    assert sorted(os.listdir(case)) == ['m_int8.onnx'] and _ours(tmpdir) == []
