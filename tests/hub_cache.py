"""Test helper: a Hugging Face Hub cache seeded on disk, read offline, so pretrained loading runs without a network.

``seed_hub_cache`` (from ``timm_recal.hub``) writes files in the Hub's own cache layout, which
``huggingface_hub`` reads in offline mode.

``offline_hub`` points ``huggingface_hub`` at such a cache, offline, for this process (it patches the constants it
read at import) and for subprocesses (environment). No Hub server is faked: an uncached file fails as it would
offline.
"""
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Union  # noqa: F401

from timm_recal.hub import seed_hub_cache  # the one implementation of the cache layout

__all__ = ['seed_hub_cache', 'save_state_dict', 'offline_hub_env', 'offline_hub']

FileSource = Union[str, os.PathLike, bytes]


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
