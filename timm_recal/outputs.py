"""Where a command's files go, and how they get there: whole or not at all.

Every file a ``timm-recal`` command writes (ONNX, JSON, Markdown, plots, weights, folders of them) goes through
this module, so that one set of rules holds everywhere:

* ``-o`` names a file, or a folder (an existing folder, or a path ending in ``/``) that receives the command's
  default file name (``resolve_output``). The check runs before any slow work, so a refused overwrite costs
  nothing, and it checks the folder is writable, so a read-only folder fails first, as what it is.
* A file is written to a uniquely named temporary file beside its final path and renamed into place only when
  complete (``atomic_output``): the path holds the old file or the whole new one, never a partial file, also
  when the process is interrupted or killed with SIGTERM (``terminate_as_interrupt``). A SIGTERM also sets a
  flag that every publishing step checks (``terminated``), so a KeyboardInterrupt that Python dropped (raised
  inside a weakref callback or ``__del__``) still stops the file from being renamed into place.
* Published files record no absolute local paths (home, temp, checkpoint or data folders): ``public_path`` and
  ``public_paths`` turn them into paths relative to the working folder, or bare names outside it.
* Without ``force`` the final step is an exclusive create (``os.link``): of two runs racing to one path, the
  second fails with "exists". With ``force`` it is ``os.replace``.
* Folders are built beside their final path and renamed into place the same way (``atomic_folder``); with
  ``force`` the old folder is swapped out, then removed.
* Parent folders are created only when a file is about to appear in them, and removed again (when still empty)
  if the write fails (``created_parents``). What existed before is never removed.
* New files get the usual permissions (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.

It imports nothing beyond the standard library (and ``timm_recal.errors``), so ``import timm_recal`` stays light.
"""
import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

from .errors import RecalError

__all__ = [
    'OutputError', 'OutputExistsError', 'OutputWriteError', 'resolve_output', 'atomic_output', 'atomic_folder',
    'created_parents', 'write_bytes', 'write_text', 'write_json', 'to_jsonable', 'terminate_as_interrupt', 'temp_name',
    'call_atomically', 'check_writable_folder', 'write_error', 'terminated', 'check_not_terminated', 'public_path',
    'public_paths', 'public_text', 'json_text', 'temporary_folder',
]

PathLike = Union[str, os.PathLike]


class OutputError(RecalError):
    """An output path that cannot be used (a folder where a file is expected, not writable, wrong suffix)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output path exists and ``--force`` was not given."""


class OutputWriteError(OutputError, OSError):
    """A write that failed (a full disk, a file-size limit): names the final path, never the temporary file; still
    an ``OSError`` for code that catches those."""


def temp_name(path: PathLike) -> str:
    """A unique hidden name beside ``path`` that keeps its suffix (tools choose the format by suffix)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    stem, suffix = os.path.splitext(name)
    return os.path.join(folder, f'.{stem}.{secrets.token_hex(4)}.tmp{suffix}')


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable_folder(folder: PathLike, target: Optional[PathLike] = None) -> None:
    """Refuse, before any work, a folder (or its nearest existing ancestor) that cannot take new files.

    Permission bits are not enough (root ignores them; ``/proc`` and read-only mounts refuse anyway): a probe file
    is created there and removed. The message names ``target`` (the path the user gave), else ``folder``.
    """
    folder = os.fspath(folder) or '.'
    named = os.fspath(target) if target is not None else folder
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise OutputError(f'{existing} is a file, so {folder} cannot be a folder')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f'cannot write {named}: permission denied')
    probe = os.path.join(existing, f'.timm_recal_probe.{secrets.token_hex(4)}')
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise OutputError(f'cannot write {named}: {existing} does not take new files ({e.strerror})') from None
    finally:  # also when interrupted right after the create
        with contextlib.suppress(OSError):
            os.unlink(probe)


def write_error(path: PathLike, error: BaseException) -> OutputWriteError:
    """The one-line ``OutputWriteError`` of a failed write: it names ``path`` (the final path, never the temporary
    file beside it) and the system's reason (``File too large``, ``No space left on device``)."""
    reason = getattr(error, 'strerror', None) or str(error).splitlines()[0][:200] or type(error).__name__
    return OutputWriteError(f'cannot write {os.fspath(path)}: {reason}')


def resolve_output(output: Optional[PathLike], force: bool = False, default_name: Optional[str] = None,
                   suffix: Optional[str] = None, what: str = '-o/--output') -> str:
    """The file path to write for ``-o output``; refuses to overwrite unless ``force``.

    Creates nothing: parents appear when the file is written (``atomic_output``).
    """
    if output is None or os.fspath(output) == '':
        raise OutputError(f'an output path is required ({what})')
    path = os.fspath(output)
    if os.path.isdir(path) or path.endswith(('/', os.sep)):
        if not default_name:
            raise OutputError(f'{path} is a folder; give a file name with {what}')
        path = os.path.join(path, default_name)
    if suffix and not path.lower().endswith(suffix.lower()):
        raise OutputError(f"{what} {path} should end with '{suffix}'")
    if os.path.isdir(path):
        raise OutputError(f'{path} is a folder, expected a file path ({what})')
    if os.path.lexists(path) and not force:
        raise OutputExistsError(f'{path} exists; pass --force to overwrite it')
    check_writable_folder(os.path.dirname(os.path.abspath(path)), target=path)
    return path


@contextlib.contextmanager
def created_parents(path: PathLike) -> Iterator[List[str]]:
    """Create the missing parent folders of ``path``; remove those this call created if the block fails.

    Only folders that are still empty are removed, innermost first: never anything that existed before.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    missing = []
    probe = folder
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    made: List[str] = []  # innermost first, like ``missing``
    try:  # the folders are made inside the try: an interrupt between two mkdirs still removes the first
        for d in reversed(missing):
            made.insert(0, d)  # noted before it exists, so no moment leaves it unnoted
            try:
                os.mkdir(d)
            except FileExistsError:
                made.remove(d)  # made by someone else meanwhile: not ours to remove
        yield made
    except BaseException:
        for d in made:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise


def _remove(path: str) -> None:
    """Remove a file or folder if it is there; a path under a file (``NotADirectoryError``) is not there either,
    and a cleanup must never replace the error that caused it."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def _publish_file(tmp: str, path: str, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and exclusive: fails if path appeared since resolve_output
    except FileExistsError:
        raise OutputExistsError(f'{path} exists (written by another run meanwhile?); pass --force to overwrite it') from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # filesystems without hard links: O_EXCL reservation, then replace the reserved name
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise OutputExistsError(f'{path} exists; pass --force to overwrite it') from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(path: PathLike, force: bool = False, extra_suffixes: tuple = ()) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it into place when the block completes.

    The temporary file exists (empty, usual permissions) when yielded, so a writer that opens by name
    (``onnx.save``, ``torch.save``, ``savefig``) keeps those permissions. ``extra_suffixes`` names side files
    a writer puts beside its file (``('.data',)`` for ONNX external data): they are moved along with it.
    On any failure, KeyboardInterrupt included, the temporary files are removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputError(f'{path} is a folder, expected a file path')
    with created_parents(path):
        tmp = temp_name(path)
        try:  # created inside the try: a signal right after the create still removes it
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            yield tmp
            check_not_terminated()
            for ext in extra_suffixes:
                if os.path.exists(tmp + ext):
                    _publish_file(tmp + ext, path + ext, force)
            _publish_file(tmp, path, force)
        except BaseException as e:
            for p in (tmp, *(tmp + ext for ext in extra_suffixes)):
                _remove(p)
            if isinstance(e, OSError) and not isinstance(e, OutputError):
                raise write_error(path, e) from None
            if isinstance(e, OutputError) and tmp in str(e):
                raise type(e)(str(e).replace(tmp, path)) from None
            raise


_RENAME_EXCHANGE = 2
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """Linux ``renameat2``; False where the C library or filesystem lacks it (the caller falls back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), dst)


def _written_path(error: OSError, tmp: str, path: str) -> str:
    """The file a failed write inside the folder being built was writing (as it will be named under ``path``),
    else ``path`` itself. ``shutil.copyfile`` sets ``filename`` to the file it reads and ``filename2`` to the one
    it writes: a source that is only read is never the path that could not be written."""
    root = os.path.abspath(tmp)
    for name in (getattr(error, 'filename2', None), getattr(error, 'filename', None)):
        if isinstance(name, (str, os.PathLike)):
            name = os.path.abspath(os.fspath(name))
            if name == root or name.startswith(root + os.sep):
                return os.path.join(path, os.path.relpath(name, root))
    return path


@contextlib.contextmanager
def atomic_folder(path: PathLike, force: bool = False) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` when the block completes.

    Without ``force`` an existing ``path`` is refused, checked again exclusively at the rename. With ``force``
    the old folder is swapped out in one step (``renameat2(RENAME_EXCHANGE)`` where available) and then
    removed, so nothing of a previous run survives beside the new contents.
    """
    path = os.fspath(path).rstrip('/') or '/'
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f'{path} is a file, expected a folder')
    if os.path.exists(path) and not force:
        raise OutputExistsError(f'{path} exists; pass --force to replace it')
    check_writable_folder(os.path.dirname(os.path.abspath(path)))  # the user's folder named, not our temp name
    with created_parents(path):
        tmp = temp_name(path)
        try:
            os.mkdir(tmp)
            yield tmp
            check_not_terminated()
            if force and os.path.exists(path):
                if not _renameat2(tmp, path, _RENAME_EXCHANGE):
                    old = temp_name(path)
                    os.rename(path, old)
                    os.rename(tmp, path)
                    tmp = old
                _remove(tmp)  # the old contents
                return
            try:
                done = _renameat2(tmp, path, _RENAME_NOREPLACE)
            except (FileExistsError, OSError) as e:
                if getattr(e, 'errno', None) not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise OutputExistsError(f'{path} exists (written by another run meanwhile?); '
                                        'pass --force to replace it') from None
            if not done:
                if os.path.exists(path):
                    raise OutputExistsError(f'{path} exists; pass --force to replace it')
                os.rename(tmp, path)
        except BaseException as e:
            _remove(tmp)
            if isinstance(e, OSError) and not isinstance(e, OutputError):
                e = write_error(_written_path(e, tmp, path), e)
            if isinstance(e, OutputError):  # name the final folder, never the temporary one beside it
                message = str(e)
                for hidden in (os.path.abspath(tmp), tmp):
                    message = message.replace(hidden, path)
                raise type(e)(message) from None
            raise


@contextlib.contextmanager
def temporary_folder(prefix: str, dir: Optional[PathLike] = None) -> Iterator[str]:
    """A private scratch folder (under ``TMPDIR`` unless ``dir``), removed when the block ends, however it ends.

    Unlike ``tempfile.TemporaryDirectory`` the folder is made inside the cleanup's scope, so a Ctrl-C or SIGTERM
    that lands right after it appears cannot leave it behind.
    """
    path = os.path.join(os.fspath(dir) if dir is not None else tempfile.gettempdir(),
                        f'{prefix}{secrets.token_hex(6)}')
    try:
        os.mkdir(path, 0o700)
        yield path
    finally:
        _remove(path)


def write_bytes(data: bytes, path: PathLike, force: bool = False) -> str:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path, force) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return os.fspath(path)


def write_text(text: str, path: PathLike, force: bool = False) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(text.encode('utf-8'), path, force)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types for numpy scalars/arrays, dataclass results, tuples and paths; NaN/Inf become strings."""
    if hasattr(obj, 'to_dict') and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, 'tolist') and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(obj: Any, path: PathLike, force: bool = False) -> str:
    """Write ``obj`` as indented JSON (see ``to_jsonable``; absolute paths made public, ``public_paths``) to
    ``path`` atomically; returns the path."""
    return write_text(json_text(obj) + '\n', path, force)


#: the signal that ended the current ``terminate_as_interrupt`` block, if one did
_terminated: Optional[int] = None


def terminated() -> Optional[int]:
    """The signal number of a SIGTERM received inside ``terminate_as_interrupt``, else None."""
    return _terminated


def check_not_terminated() -> None:
    """Raise KeyboardInterrupt if the process was told to stop: nothing is published after a SIGTERM, even when
    the handler's own KeyboardInterrupt landed where Python ignores exceptions (weakref callbacks, ``__del__``)."""
    if _terminated is not None:
        raise KeyboardInterrupt(f'terminated by signal {_terminated}')


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block, so every ``finally``/cleanup above runs on a kill.

    The handler also sets the ``terminated`` flag, which the publishing steps check. Only in the main thread
    (signal handlers can be set nowhere else); restores the previous handler.
    """
    global _terminated
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    if previous is not _raise_interrupt:
        _terminated = None
    previous_hook = sys.unraisablehook

    def quiet_hook(unraisable) -> None:
        # our interrupt landed where Python cannot raise it (a weakref callback, ``__del__``): the flag is set
        # and the next publishing step or loop check stops the command, so say nothing here
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _terminated is not None):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_hook
    outermost = previous is not _raise_interrupt
    try:
        yield
        check_not_terminated()  # the block finished although told to stop (the interrupt was dropped)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook
        if outermost:
            _terminated = None  # the flag never outlives the block: a long-lived process (a test worker) goes on


def _raise_interrupt(signum, frame) -> None:
    global _terminated
    _terminated = signum
    raise KeyboardInterrupt(f'terminated by signal {signum}')


def call_atomically(path: PathLike, writer: Callable[[str], Any], force: bool = False) -> str:
    """Run ``writer(tmp_path)`` and rename its file into place; for libraries that save by file name."""
    with atomic_output(path, force) as tmp:
        writer(tmp)
    return os.fspath(path)



_PRIVATE_PREFIXES = ('local-dir:',)


def public_path(path: PathLike) -> str:
    """How a published file names a local path: relative to the working folder when inside it, else only its
    last component (a file or folder name). Home, temp and other absolute folders never appear."""
    text = os.fspath(path)
    if not text:
        return text
    full = os.path.abspath(os.path.expanduser(text))
    cwd = os.getcwd()
    if full == cwd:
        return '.'
    if full.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, cwd)
    return os.path.basename(full.rstrip(os.sep)) or full


def _is_local_path(text: str) -> bool:
    """An absolute path of this machine: its top folder exists (``/tmp``, ``/home``), so that ONNX node names
    such as ``/stem/conv/Conv`` are left alone."""
    if text.startswith('~'):
        return True
    if not os.path.isabs(text) or '\n' in text:
        return False
    top = os.path.splitdrive(text)[1].lstrip('/\\').replace('\\', '/').split('/')[0]
    return bool(top) and os.path.isdir(os.path.join(os.path.splitdrive(text)[0] + os.sep, top))


#: an absolute path inside a longer text (a message, a command line): starts a word or follows '=' or ':', ends at
#: whitespace, quotes, brackets or separators; ``//`` (URLs) and node names of folders that do not exist are left
_EMBEDDED_PATH = re.compile(r'(?<![\w.~/-])(~?/(?!/)[^\s\'"`,;:()\[\]{}<>|]+)')


def public_text(text: str) -> str:
    """``text`` with every absolute local path in it made public (``public_path``): messages and command lines
    (``tritonserver --model-repository=/abs/repo``) name no local folders either."""
    def replace(m: 're.Match') -> str:
        path = m.group(1)
        tail = len(path) - len(path.rstrip('.'))  # a sentence's full stop is not part of the path
        path = path[:len(path) - tail]
        return public_path(path) + '.' * tail if _is_local_path(path) else m.group(0)
    return _EMBEDDED_PATH.sub(replace, text)


def public_paths(obj: Any) -> Any:
    """``obj`` (plain JSON types) with every absolute-path string made public (``public_path``), including the
    folder of a ``local-dir:FOLDER`` model spec and paths inside longer texts (``public_text``); other strings
    unchanged."""
    if isinstance(obj, dict):
        return {k: public_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [public_paths(v) for v in obj]
    if isinstance(obj, str):
        for prefix in _PRIVATE_PREFIXES:
            if obj.startswith(prefix) and _is_local_path(obj[len(prefix):]):
                return prefix + public_path(obj[len(prefix):])
        if _is_local_path(obj):
            return public_path(obj)
        return public_text(obj)
    return obj


def json_text(obj: Any) -> str:
    """``obj`` as the indented JSON every command writes and prints (``--json``): ``to_jsonable``, with its paths
    made public (``public_paths``), so a printed record and the ``-o`` file of the same run agree."""
    return json.dumps(public_paths(to_jsonable(obj)), indent=2)
