"""Test helper: a Hugging Face Hub cache seeded on disk, read offline, so pretrained loading runs without a network.

``seed_hub_cache`` writes files in the Hub's own cache layout (what ``huggingface_hub`` reads in offline mode)::

    <cache_dir>/models--<org>--<name>/refs/main            -> "<rev>"
    <cache_dir>/models--<org>--<name>/snapshots/<rev>/<file>

``offline_hub`` points ``huggingface_hub`` at such a cache, offline, for this process (it patches the constants it
read at import) and for subprocesses (environment). No Hub server is faked: an uncached file fails as it would
offline.
"""
import hashlib
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

__all__ = ['seed_hub_cache', 'save_state_dict', 'offline_hub_env', 'offline_hub']

FileSource = Union[str, os.PathLike, bytes]


def _repo_folder(repo_id: str, repo_type: str = 'model') -> str:
    if repo_id.count('/') != 1 or not all(repo_id.split('/')):
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    return f"{repo_type}s--{repo_id.replace('/', '--')}"


def seed_hub_cache(
        cache_dir: Union[str, os.PathLike],
        repo_id: str,
        files: Mapping[str, FileSource],
        revision: Optional[str] = None,
        repo_type: str = 'model',
) -> Path:
    """Put ``files`` (repo file name -> local path or bytes) into the cache as ``repo_id``'s ``main`` revision.

    ``revision`` is the commit hash the snapshot is stored under (40 hex); by default one is derived from the
    contents. Returns the snapshot folder.
    """
    if not files:
        raise ValueError("seed_hub_cache: give at least one file")
    contents: Dict[str, bytes] = {}
    for name, src in files.items():
        contents[name] = bytes(src) if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
    if revision is None:
        digest = hashlib.sha1()
        for name in sorted(contents):
            digest.update(name.encode() + b'\0' + contents[name])
        revision = digest.hexdigest()
    if len(revision) != 40 or any(c not in '0123456789abcdef' for c in revision):
        raise ValueError(f"revision must be a 40-hex commit hash, got {revision!r}")

    repo = Path(cache_dir) / _repo_folder(repo_id, repo_type)
    snapshot = repo / 'snapshots' / revision
    for name, data in contents.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(revision)
    return snapshot


def save_state_dict(state_dict: Mapping, path: Union[str, os.PathLike]) -> Path:
    """Write a state dict as safetensors (contiguous, unshared copies, as the Hub's ``model.safetensors``)."""
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, str(path))
    return Path(path)


def offline_hub_env(cache_dir: Union[str, os.PathLike], base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for a subprocess that reads the Hub only from ``cache_dir``, offline."""
    env = dict(os.environ if base is None else base)
    env.pop('HF_TOKEN', None)
    env.update(HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache_dir), HF_HUB_DISABLE_TELEMETRY='1',
               HF_TOKEN_PATH=str(Path(cache_dir) / 'no-token'))
    return env


def offline_hub(monkeypatch, cache_dir: Union[str, os.PathLike]) -> None:
    """Read the Hub only from ``cache_dir``, offline, in this process and its subprocesses (pytest ``monkeypatch``).

    ``huggingface_hub`` reads HF_HUB_OFFLINE / HF_HUB_CACHE into ``huggingface_hub.constants`` at import and
    looks them up there at call time, so those attributes are patched (and restored by ``monkeypatch``).
    """
    import huggingface_hub.constants as hf_constants
    env = offline_hub_env(cache_dir)
    monkeypatch.delenv('HF_TOKEN', raising=False)
    for key in ('HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HF_HUB_DISABLE_TELEMETRY', 'HF_TOKEN_PATH'):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(cache_dir))
    monkeypatch.setattr(hf_constants, 'HF_TOKEN_PATH', env['HF_TOKEN_PATH'])
    monkeypatch.setattr(hf_constants, 'HF_HUB_DISABLE_TELEMETRY', True)
