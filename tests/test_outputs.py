"""The shared output rules (``timm_recal.outputs``): whole files or none, exclusive creates, no stray folders."""
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from timm_recal import outputs
from timm_recal.outputs import (
    OutputError, OutputExistsError, OutputWriteError, atomic_folder, atomic_output, public_path, public_paths, resolve_output,
    write_json, write_text,
)


def test_resolve_output_folder_gets_default_name_and_creates_nothing(tmp_path):
    out = tmp_path / 'new' / 'deeper/'
    path = resolve_output(str(out) + '/', default_name='x.json')
    assert path.endswith('x.json')
    assert not (tmp_path / 'new').exists()


def test_resolve_output_refuses_existing_without_force(tmp_path):
    (tmp_path / 'a.json').write_text('{}')
    with pytest.raises(OutputExistsError, match='--force'):
        resolve_output(tmp_path / 'a.json')
    assert resolve_output(tmp_path / 'a.json', force=True).endswith('a.json')


def test_resolve_output_refuses_read_only_folder_up_front(tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root ignores folder permissions')
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(OutputError, match='permission denied'):
        resolve_output(ro / 'x.onnx')


def test_resolve_output_under_a_file_is_refused(tmp_path):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(OutputError, match='is a file'):
        resolve_output(tmp_path / 'f' / 'x.json')


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_output(path, force=True) as tmp:
            with open(tmp, 'w') as f:
                f.write('half')
            raise RuntimeError('boom')
    assert path.read_text() == 'old'
    assert sorted(os.listdir(tmp_path)) == ['a.txt']


def test_failed_write_removes_the_parents_it_created_only(tmp_path):
    (tmp_path / 'kept').mkdir()
    target = tmp_path / 'kept' / 'new1' / 'new2' / 'a.txt'
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / 'kept') == []
    assert (tmp_path / 'kept').is_dir()


def test_a_path_under_a_file_is_the_one_line_write_error(tmp_path):
    """The cleanup of the temporary name under a file raised NotADirectoryError over the write error."""
    (tmp_path / 'afile').write_text('hi')
    with pytest.raises(OutputWriteError, match=r'cannot write .*afile/a\.txt: Not a directory$'):
        with atomic_output(tmp_path / 'afile' / 'a.txt'):
            pytest.fail('the temporary file cannot exist under a file')
    assert (tmp_path / 'afile').read_text() == 'hi'


def test_exclusive_create_loses_to_a_file_that_appeared_meanwhile(tmp_path):
    path = tmp_path / 'a.txt'
    with pytest.raises(OutputExistsError):
        with atomic_output(path) as tmp:
            path.write_text('the other run')
            with open(tmp, 'w') as f:
                f.write('mine')
    assert path.read_text() == 'the other run'
    assert sorted(os.listdir(tmp_path)) == ['a.txt']


def test_new_files_follow_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json({'a': 1}, tmp_path / 'a.json')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'a.json').st_mode) == 0o644


def test_write_json_handles_numpy_nan_and_results(tmp_path):
    np = pytest.importorskip('numpy')

    class Result:
        def to_dict(self):
            return {'x': np.float32(1.5), 'bad': float('nan'), 'arr': np.arange(2)}

    write_json(Result(), tmp_path / 'r.json')
    assert (tmp_path / 'r.json').read_text().split() == ['{', '"x":', '1.5,', '"bad":', '"nan",', '"arr":', '[',
                                                         '0,', '1', ']', '}']


def test_atomic_folder_force_replaces_whole_contents(tmp_path):
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'stale_compare.json').write_text('old')
    with atomic_folder(out, force=True) as tmp:
        write_text('new', os.path.join(tmp, 'report.md'))
    assert sorted(os.listdir(out)) == ['report.md']
    assert sorted(os.listdir(tmp_path)) == ['run']


def test_atomic_folder_without_force_refuses_and_failure_leaves_nothing(tmp_path):
    out = tmp_path / 'run'
    with pytest.raises(ValueError):
        with atomic_folder(out) as tmp:
            write_text('x', os.path.join(tmp, 'a'))
            raise ValueError
    assert os.listdir(tmp_path) == []
    out.mkdir()
    with pytest.raises(OutputExistsError):
        with atomic_folder(out):
            pass


_SLOW_WRITER = textwrap.dedent('''
    import sys, time
    from timm_recal.outputs import atomic_output, terminate_as_interrupt
    path, force = sys.argv[1], sys.argv[2] == '1'
    with terminate_as_interrupt():
        with atomic_output(path, force=force) as tmp:
            with open(tmp, 'w') as f:
                f.write('new-partial')
                f.flush()
                print('writing', flush=True)
                time.sleep(30)
                f.write('-complete')
''')


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_killed_writer_leaves_the_old_file_and_no_temp(tmp_path, sig):
    path = tmp_path / 'model.onnx'
    path.write_text('old-complete')
    proc = subprocess.Popen([sys.executable, '-c', _SLOW_WRITER, str(path), '1'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'writing'
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert proc.returncode != 0
    assert path.read_text() == 'old-complete'
    assert sorted(os.listdir(tmp_path)) == ['model.onnx']


def test_two_racing_writers_one_wins_one_fails_with_exists(tmp_path):
    path = tmp_path / 'x.json'
    racer = textwrap.dedent('''
        import os, sys, time
        from timm_recal.outputs import atomic_output, resolve_output
        path, tag = sys.argv[1], sys.argv[2]
        resolve_output(path)  # both pass the up-front check...
        open(path + '.ready-' + tag, 'w').close()
        while not all(os.path.exists(path + '.ready-' + t) for t in ('fast', 'slow')):
            time.sleep(0.01)
        with atomic_output(path) as tmp:  # ...and only the rename decides
            open(tmp, 'w').write(tag)
            while tag == 'slow' and not os.path.exists(path):  # publish second, however loaded the machine
                time.sleep(0.01)
    ''')
    procs = [subprocess.Popen([sys.executable, '-c', racer, str(path), tag], stderr=subprocess.PIPE, text=True)
             for tag in ('fast', 'slow')]
    results = [(p.wait(timeout=30), p.stderr.read()) for p in procs]
    assert results[0][0] == 0
    assert results[1][0] != 0 and 'exists' in results[1][1]
    assert path.read_text() == 'fast'
    assert sorted(os.listdir(tmp_path)) == ['x.json', 'x.json.ready-fast', 'x.json.ready-slow']


def test_after_sigterm_nothing_is_published(tmp_path, monkeypatch):
    """A SIGTERM whose KeyboardInterrupt Python dropped (raised in a weakref callback or ``__del__``) still
    stops the rename: the flag the handler sets is checked before publishing a file or a folder."""
    path = tmp_path / 'model.onnx'
    path.write_text('old-complete')
    monkeypatch.setattr(outputs, '_terminated', signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(path, force=True) as tmp:
            with open(tmp, 'w') as f:
                f.write('new-complete')
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(tmp_path / 'run') as tmp:
            (tmp_path / tmp / 'a.json').write_text('{}')
    assert path.read_text() == 'old-complete' and sorted(os.listdir(tmp_path)) == ['model.onnx']
    monkeypatch.setattr(outputs, '_terminated', None)
    write_text('new-complete', path, force=True)
    assert path.read_text() == 'new-complete'


_DROPPED_INTERRUPT = textwrap.dedent('''
    import gc, os, signal, sys, time
    from timm_recal.outputs import atomic_output, terminate_as_interrupt

    class SendsTermOnDelete:
        def __del__(self):  # the handler's KeyboardInterrupt raised here is printed and ignored by Python
            os.kill(os.getpid(), signal.SIGTERM)

    path = sys.argv[1]
    with terminate_as_interrupt():
        with atomic_output(path, force=True) as tmp:
            open(tmp, 'w').write('new-complete')
            SendsTermOnDelete()
            gc.collect()
            print('survived the signal', flush=True)
''')


def test_sigterm_lost_in_del_still_stops_the_publish(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_text('old-complete')
    proc = subprocess.run([sys.executable, '-c', _DROPPED_INTERRUPT, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert 'survived the signal' in proc.stdout  # the interrupt really was dropped where Python ignores it
    assert proc.returncode != 0 and 'KeyboardInterrupt' in proc.stderr
    assert path.read_text() == 'old-complete' and sorted(os.listdir(tmp_path)) == ['model.onnx']


def test_public_path_names_no_local_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'runs').mkdir()
    assert public_path(tmp_path / 'runs' / 'w.pth') == os.path.join('runs', 'w.pth')
    assert public_path('runs/w.pth') == os.path.join('runs', 'w.pth')
    assert public_path(tmp_path) == '.'
    assert public_path(os.path.join(os.path.expanduser('~'), 'data', 'cifar10', 'train') + '/') == 'train'
    assert public_path(os.path.join(os.path.dirname(str(tmp_path)), 'other', 'ck.pth')) == 'ck.pth'
    assert public_path('../elsewhere/ck.pth') == 'ck.pth'
    elsewhere = os.path.join(os.path.dirname(str(tmp_path)), 'x', 'test')
    plain = {'output': str(tmp_path / 'runs' / 'm.onnx'), 'spec': 'local-dir:' + os.path.expanduser('~/models/se'),
             'notes': ['a message, not a path'], 'n': 3, 'data': elsewhere, 'labels': ['cat', 'dog'],
             'fp32_layers': ['/stem/conv/Conv', '/head/fc/Gemm']}  # ONNX node names are not paths
    assert public_paths(plain) == {'output': os.path.join('runs', 'm.onnx'), 'spec': 'local-dir:se',
                                   'notes': ['a message, not a path'], 'n': 3, 'data': 'test',
                                   'labels': ['cat', 'dog'], 'fp32_layers': ['/stem/conv/Conv', '/head/fc/Gemm']}
    write_json(plain, 'runs/r.json')
    assert '/tmp' not in (tmp_path / 'runs' / 'r.json').read_text()


def test_atomic_folder_write_error_names_the_file_written_not_the_one_read(tmp_path):
    """``shutil.copyfile`` sets ``filename`` to the file it reads and ``filename2`` to the one it writes: a copy into
    the folder past a size limit said 'cannot write SOURCE' (only read). It names the file under the final folder;
    an error that names no file inside the folder names the folder the user gave, never a temporary one."""
    import errno
    source = tmp_path / 'source.onnx'
    source.write_bytes(b'x')
    final = str(tmp_path / 'repo')
    with pytest.raises(OutputWriteError) as e:
        with outputs.atomic_folder(final) as tmp:
            raise OSError(errno.EFBIG, 'File too large', str(source), None, os.path.join(tmp, 'm', '1', 'model.onnx'))
    assert str(e.value) == f"cannot write {os.path.join(final, 'm', '1', 'model.onnx')}: File too large"
    with pytest.raises(OutputWriteError) as e:
        with outputs.atomic_folder(final):
            raise OSError(errno.ENOSPC, 'No space left on device', str(source))
    assert str(e.value) == f'cannot write {final}: No space left on device'
    assert sorted(os.listdir(tmp_path)) == ['source.onnx']
