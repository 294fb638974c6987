"""The ``-o/--output`` rule shared by every writing command, and JSON writing.

``-o`` names a file, or a folder (an existing folder, or a path ending in ``/``) into which the command writes
its default file name. An existing file is never overwritten unless ``force`` is set.
"""
import json
import math
import os
from typing import Any, Optional

from .errors import DeployError, OutputExistsError

__all__ = ['resolve_output', 'write_json', 'to_jsonable']


def resolve_output(output: str, force: bool = False, default_name: Optional[str] = None,
                   suffix: Optional[str] = None) -> str:
    """Return the file path to write for ``-o output``, refusing to overwrite unless ``force``.

    Called before any slow work so that a refused overwrite costs nothing. Parent folders are created.
    """
    if not output:
        raise DeployError('an output path is required (-o/--output)')
    path = os.fspath(output)
    if os.path.isdir(path) or path.endswith(('/', os.sep)):
        if not default_name:
            raise DeployError(f'{path} is a folder; give a file name with -o')
        path = os.path.join(path, default_name)
    if suffix and not path.lower().endswith(suffix):
        raise DeployError(f"output {path} should end with '{suffix}'")
    if os.path.isdir(path):
        raise DeployError(f'{path} is a folder, expected a file path')
    if os.path.exists(path) and not force:
        raise OutputExistsError(f'{path} exists; pass --force to overwrite it')
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return path


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types for numpy scalars/arrays, tuples and paths; NaN/Inf become strings (valid JSON)."""
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


def write_json(obj: Any, output: str, force: bool = False, default_name: str = 'result.json') -> str:
    """Write ``obj`` as indented JSON to ``output`` (file or folder, see ``resolve_output``); returns the path."""
    path = resolve_output(output, force, default_name)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(to_jsonable(obj), f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
    return path
