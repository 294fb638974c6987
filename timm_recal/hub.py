"""Hub-ready weight folders (``save_for_hf`` layout + model card) and offline Hub caches seeded from them.

A folder written by ``timm_recal.publish.build_hub_folder`` (the one code path for Hub folders, which writes the
weights with ``write_weights_folder``) is what ``timm-recal publish`` pushes to ``timm-recal/<arch>.<tag>`` and
what ``timm.create_model('local-dir:FOLDER')`` loads. ``seed_hub_cache`` copies such a folder into a
Hugging Face cache in the Hub's own layout, so ``create_model('<arch>.<tag>', pretrained=True)`` resolves offline
(``HF_HUB_OFFLINE=1``) exactly as it will once the weights are published.
"""
import hashlib
import os
import re
import string
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from torch import nn

from .outputs import write_error

__all__ = ['write_weights_folder', 'render_card', 'seed_hub_cache', 'seed_cache_from_weights',
           'hub_repo_id', 'PUBLISHABLE_SUFFIXES']

PathLike = Union[str, os.PathLike]


def hub_repo_id(arch: str, tag: str) -> str:
    from .models._common import HUB_ORG
    return f'{HUB_ORG}/{arch}.{tag}'


#: file names a Hub folder may hold: safetensors weights, JSON/Markdown, the plot, ONNX exports. Pickle formats
#: (``.bin``, ``.pth``, ``.pt``, ``.pkl``, ``.ckpt``) run code when loaded and are never published.
PUBLISHABLE_SUFFIXES = ('.safetensors', '.json', '.md', '.png', '.onnx')


def render_card(template: str, values: Mapping[str, Any]) -> str:
    """Fill a card template from ``model_cards/`` (``$name`` placeholders; a missing value is an error)."""
    text = resources.files('timm_recal.model_cards').joinpath(template).read_text()
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as e:
        raise ValueError(f"model card template {template!r} needs a value for {e.args[0]!r}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_weights_folder(model: nn.Module, folder: PathLike, model_config: Optional[Dict[str, Any]] = None) -> None:
    """Write ``model.safetensors`` + ``config.json`` into an existing ``folder`` (timm's ``save_for_hf``).

    safetensors creates its file with mode 0600; every file gets the usual ``0o666`` less the umask instead.
    """
    from safetensors import SafetensorError
    from timm.models import save_for_hf
    try:
        save_for_hf(model, os.fspath(folder), model_config=model_config, safe_serialization=True)
    except SafetensorError as e:  # a failed write (a full disk): the system's reason, as an OSError would give it
        code = re.search(r'os error (\d+)', str(e))
        error = OSError(int(code.group(1)), os.strerror(int(code.group(1)))) if code else e
        raise write_error(os.path.join(folder, 'model.safetensors'), error) from None
    mode = 0o666 & ~_umask()
    for name in ('model.safetensors', 'config.json'):
        os.chmod(os.path.join(folder, name), mode)


def seed_hub_cache(cache_dir: PathLike, repo_id: str, files: Union[PathLike, Mapping[str, Union[PathLike, bytes]]],
                   revision: Optional[str] = None) -> Path:
    """Store ``files`` in ``cache_dir`` as the ``main`` revision of ``repo_id``, in the Hub's cache layout
    (``models--ORG--NAME/snapshots/<rev>/...`` + ``refs/main``), which huggingface_hub reads offline.

    ``files`` is a folder (every file in it) or a mapping of repo file name -> local path or bytes. ``revision``
    (40 hex) defaults to a hash of the contents. Returns the snapshot folder.
    """
    if repo_id.count('/') != 1 or not all(repo_id.split('/')):
        raise ValueError(f"repo_id must be 'org/name', got {repo_id!r}")
    if isinstance(files, Mapping):
        contents = {name: bytes(src) if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
                    for name, src in files.items()}
    else:
        folder = Path(files)
        contents = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}
    if not contents:
        raise FileNotFoundError(f"no files to seed for {repo_id}")
    if revision is None:
        digest = hashlib.sha1()
        for name in sorted(contents):
            digest.update(name.encode() + b'\0' + contents[name])
        revision = digest.hexdigest()
    if len(revision) != 40 or any(c not in '0123456789abcdef' for c in revision):
        raise ValueError(f"revision must be a 40-hex commit hash, got {revision!r}")
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / 'snapshots' / revision
    for name, data in contents.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(revision)
    return snapshot


def seed_cache_from_weights(cache_dir: PathLike, weights_dir: PathLike) -> Dict[str, Path]:
    """Seed every ``<arch>.<tag>`` folder under ``weights_dir`` as ``timm-recal/<arch>.<tag>``."""
    seeded = {}
    for folder in sorted(Path(weights_dir).iterdir()):
        if folder.is_dir() and (folder / 'config.json').is_file():
            arch, _, tag = folder.name.partition('.')
            repo_id = hub_repo_id(arch, tag)
            seeded[repo_id] = seed_hub_cache(cache_dir, repo_id, folder)
    return seeded
