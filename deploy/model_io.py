"""Turn a MODEL spec and an optional ``--checkpoint`` into an eval-mode timm model and its data config.

MODEL is a timm name with an optional pretrained tag (``resnet50``, ``resnet50.a1_in1k``,
``se_shufflenetv2_cifar``), ``hf-hub:ORG/REPO`` or ``local-dir:FOLDER`` (a ``save_for_hf`` folder).
``--checkpoint`` accepts a plain state dict (``.pth``/``.pt``/``.bin``/``.safetensors``), a timm ``train.py``
checkpoint (``state_dict``, or ``state_dict_ema`` with ``use_ema``) or a ``save_for_hf`` folder. The number of
classes is read from the checkpoint's classifier unless given explicitly.

Every failure is a ``DeployError`` that says what to do: an unknown name lists close names, a checkpoint of
another architecture lists the keys and shapes that differ.
"""
import difflib
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import torch
from timm.models import clean_state_dict
from torch import nn

from .errors import DeployError
from .images import CIFAR10_CLASSES

__all__ = ['parse_model_spec', 'suggest_models', 'read_checkpoint', 'classifier_num_classes', 'load_model',
           'data_config_of', 'class_labels_for', 'is_onnx_path']

_SOURCES = ('hf-hub', 'local-dir')
_STATE_DICT_KEYS = ('state_dict', 'model', 'module')
_HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin', 'open_clip_model.safetensors')


def is_onnx_path(spec: str) -> bool:
    """True for a MODEL_OR_ONNX argument that names an ONNX file (by suffix)."""
    return str(spec).lower().endswith('.onnx')


def _import_timm():
    import timm
    import timm_recal  # noqa: F401  (registers the plugin's models)
    return timm


def suggest_models(name: str, n: int = 5) -> List[str]:
    """Close timm model names for a misspelt ``name`` (plugin models included)."""
    timm = _import_timm()
    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.6)
    if not close:  # substring fallback: 'shufflenet' -> every shufflenet
        close = [m for m in names if name.lower() in m][:n]
    return close


def parse_model_spec(spec: str) -> Dict[str, Any]:
    """Split a MODEL spec into ``source`` (None, 'hf-hub', 'local-dir'), ``architecture``/``tag`` (timm names)
    and ``location`` (Hub repo or folder); checks that a timm name and tag exist."""
    if not spec or not isinstance(spec, str):
        raise DeployError('a MODEL name is required (timm name, hf-hub:ORG/REPO or local-dir:FOLDER)')
    timm = _import_timm()
    source, sep, rest = spec.partition(':')
    if sep and source.lower().replace('_', '-') in _SOURCES:
        source = source.lower().replace('_', '-')
        if not rest:
            raise DeployError(f"{spec!r}: nothing after '{source}:'")
        if source == 'local-dir':
            cfg = _read_hf_config(rest)
            arch = cfg.get('architecture')
            if not arch:
                raise DeployError(f"{rest}/config.json has no 'architecture' key; not a timm save_for_hf folder")
            name, tag = arch.split('.', 1) if '.' in arch else (arch, '')
            _check_name(timm, name, spec)
            return dict(spec=spec, source=source, architecture=name, tag=tag, location=rest)
        return dict(spec=spec, source=source, architecture=None, tag='', location=rest)
    if sep or '/' in spec or '\\' in spec:
        if os.path.exists(spec):
            hint = (' (an ONNX file must end in .onnx)' if os.path.isfile(spec)
                    else f"; for a save_for_hf folder use 'local-dir:{spec}'")
        else:
            hint = f"; use 'hf-hub:{spec}' for a Hugging Face Hub repo or 'local-dir:PATH' for a folder"
        raise DeployError(f'{spec!r} is not a timm model name{hint}')
    name, _, tag = spec.partition('.')
    _check_name(timm, name, spec)
    if tag:
        from timm.models import get_pretrained_cfg
        try:
            get_pretrained_cfg(spec, allow_unregistered=True)
        except RuntimeError:
            tags = [t.partition('.')[2] for t in timm.list_pretrained(f'{name}.*')]
            known = f"known tags: {', '.join(tags)}" if tags else f'{name} has no pretrained tags'
            raise DeployError(f'unknown pretrained tag {tag!r} for {name}; {known}') from None
    return dict(spec=spec, source=None, architecture=name, tag=tag, location=None)


def _check_name(timm, name: str, spec: str) -> None:
    if not timm.is_model(name):
        close = suggest_models(name)
        hint = f"; did you mean {', '.join(close)}?" if close else "; list models with `timm-recal models` or timm.list_models()"
        raise DeployError(f'unknown model {spec!r}{hint}')


def _read_hf_config(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, 'config.json')
    if not os.path.isdir(folder):
        raise DeployError(f'folder not found: {folder}')
    if not os.path.isfile(path):
        raise DeployError(f'{folder} has no config.json; not a timm save_for_hf folder')
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise DeployError(f'{path} is not valid JSON: {e}') from None


def _load_file(path: str) -> Any:
    if os.path.getsize(path) == 0:
        raise DeployError(f'checkpoint {path} is empty')
    try:
        if path.lower().endswith('.safetensors'):
            from safetensors.torch import load_file
            return load_file(path, device='cpu')
        import argparse
        with torch.serialization.safe_globals([argparse.Namespace]):  # train.py stores its args
            return torch.load(path, map_location='cpu', weights_only=True)
    except ModuleNotFoundError:
        raise
    except Exception as e:
        if 'weights only load failed' in str(e).lower():  # never suggest weights_only=False for a file
            raise DeployError(f'cannot read checkpoint {path}: it holds Python objects besides tensors, which are '
                              'not loaded (running them is unsafe for files from elsewhere); save model.state_dict() '
                              'or a .safetensors file') from None
        if not _looks_like_torch_save(path):
            raise DeployError(f'cannot read checkpoint {path}: it is not a PyTorch checkpoint (torch.save writes a zip '
                              'archive) nor a .safetensors file') from None
        raise DeployError(f'cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}') from None


def _looks_like_torch_save(path: str) -> bool:
    """A ``torch.save`` file: a zip archive, or a legacy pickle (protocol 2+ starts with byte 0x80)."""
    import zipfile
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x80'


def read_checkpoint(path: str, use_ema: bool = False) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Load the weights of any supported checkpoint format.

    Not ``timm.models.load_state_dict``: it falls back to the plain weights when EMA ones are missing (and takes
    EMA weights unasked), while ``--use-ema`` must refuse a file without them; prefixes go through timm's
    ``clean_state_dict``.

    Returns ``(state_dict, info)``; ``info`` has ``format``, ``path`` and, when the file says so,
    ``architecture`` (train.py ``arch`` / config.json), ``hf_config`` (a save_for_hf folder's config.json).
    """
    if not path:
        raise DeployError('empty --checkpoint path')
    info: Dict[str, Any] = {'path': os.path.abspath(path)}
    if os.path.isdir(path):
        cfg = _read_hf_config(path)
        weights = next((os.path.join(path, f) for f in _HF_WEIGHT_FILES if os.path.isfile(os.path.join(path, f))), None)
        if weights is None:
            raise DeployError(f"{path} has no weights file ({' or '.join(_HF_WEIGHT_FILES[:2])})")
        info.update(format='save_for_hf', architecture=cfg.get('architecture'), hf_config=cfg, weights_file=weights)
        obj = _load_file(weights)
    elif not os.path.isfile(path):
        raise DeployError(f'checkpoint not found: {path}')
    else:
        obj = _load_file(path)
        info['format'] = 'state_dict'
    if not isinstance(obj, dict):
        raise DeployError(f'{path} holds a {type(obj).__name__}, not a state dict or a timm checkpoint')
    if any(k in obj for k in ('state_dict', 'state_dict_ema', 'model_ema')):
        info['format'] = 'train_checkpoint'
        info['architecture'] = obj.get('arch') or info.get('architecture')
        info['epoch'] = obj.get('epoch')
        if use_ema:
            key = 'state_dict_ema' if obj.get('state_dict_ema') is not None else 'model_ema'
            if obj.get(key) is None:
                raise DeployError(f'--use-ema: {path} has no EMA weights (state_dict_ema)')
        else:
            key = 'state_dict'
            if obj.get(key) is None:
                raise DeployError(f'{path} has no state_dict; it holds EMA weights only, pass --use-ema')
        info['key'] = key
        obj = obj[key]
    elif use_ema:
        raise DeployError(f'--use-ema: {path} is a plain state dict without EMA weights')
    else:
        for key in _STATE_DICT_KEYS:  # other trainers' wrappers
            if isinstance(obj.get(key), dict):
                info['key'] = key
                obj = obj[key]
                break
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise DeployError(f'{path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; not a state dict')
    state_dict = clean_state_dict(obj)  # timm's: DDP / torch.compile prefixes
    if not state_dict:
        raise DeployError(f'{path} holds no weights')
    return state_dict, info


def _classifier_names(pretrained_cfg: Dict[str, Any]) -> List[str]:
    clf = pretrained_cfg.get('classifier') or []
    return [clf] if isinstance(clf, str) else list(clf)


def classifier_num_classes(state_dict: Dict[str, torch.Tensor], classifier: List[str]) -> Optional[int]:
    """Rows of the classifier weight in ``state_dict`` (None if the classifier is absent, e.g. a headless model)."""
    for name in classifier:
        w = state_dict.get(f'{name}.weight')
        if w is not None and w.ndim >= 1:
            return int(w.shape[0])
    return None


def _describe_mismatch(model: nn.Module, state_dict: Dict[str, torch.Tensor], arch: str,
                       ckpt_arch: Optional[str], path: str) -> Optional[str]:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}'
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return None

    def few(items: List[str]) -> str:
        return ', '.join(items[:4]) + (f', ... ({len(items) - 4} more)' if len(items) > 4 else '')

    parts = []
    if missing:
        parts.append(f'{len(missing)} keys missing from the checkpoint ({few(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected keys ({few(unexpected)})')
    if shapes:
        parts.append(f'{len(shapes)} shape mismatches ({few(shapes)})')
    saved = f"; the checkpoint was saved from '{ckpt_arch}'" if ckpt_arch and ckpt_arch.split('.')[0] != arch else ''
    return f'checkpoint {path} does not fit {arch}: ' + '; '.join(parts) + saved


def class_labels_for(num_classes: int, pretrained_cfg: Dict[str, Any],
                     hf_config: Optional[Dict[str, Any]] = None) -> Optional[List[str]]:
    """Label strings for the classifier outputs: from the checkpoint/pretrained cfg, else ImageNet-1k synsets
    for 1000 classes, CIFAR-10 names for a 10-class 32x32 model; None when unknown."""
    for src in (hf_config or {}, (hf_config or {}).get('pretrained_cfg') or {}, pretrained_cfg):
        names = src.get('label_names')
        if names and len(names) == num_classes:
            return list(names)
    if num_classes == 1000:
        from timm.data import ImageNetInfo
        return list(ImageNetInfo().label_names())
    if num_classes == 10 and tuple(pretrained_cfg.get('input_size', ()))[-1:] == (32,):
        return list(CIFAR10_CLASSES)
    return None


def data_config_of(model: nn.Module, img_size: Optional[int] = None) -> Dict[str, Any]:
    """timm's eval data config of ``model`` (``resolve_data_config``), with the input size overridden."""
    from timm.data import resolve_data_config
    cfg = resolve_data_config({}, model=model)
    if img_size is not None:
        cfg['input_size'] = (cfg['input_size'][0], int(img_size), int(img_size))
    cfg['input_size'] = tuple(int(v) for v in cfg['input_size'])
    cfg['mean'] = tuple(float(v) for v in cfg['mean'])
    cfg['std'] = tuple(float(v) for v in cfg['std'])
    return cfg


def _check_img_size(img_size: Optional[int]) -> None:
    if img_size is not None and (not isinstance(img_size, int) or img_size < 8 or img_size > 4096):
        raise DeployError(f'--img-size must be an integer between 8 and 4096, got {img_size!r}')


def _create_kwargs(hf_config: Dict[str, Any]) -> Dict[str, Any]:
    """``timm.create_model`` arguments that a save_for_hf folder's config.json records."""
    kwargs: Dict[str, Any] = dict(hf_config.get('model_args') or {})
    if hf_config.get('pretrained_cfg'):
        kwargs['pretrained_cfg_overlay'] = {k: v for k, v in hf_config['pretrained_cfg'].items()
                                            if k not in ('hf_hub_id', 'url', 'file', 'source')}
    return kwargs


def _name_and_pretrained(spec: str, parsed: Dict[str, Any], has_weights: bool,
                         pretrained: Optional[bool]) -> Tuple[str, bool]:
    """The name to create and whether timm should load pretrained weights."""
    if parsed['source'] == 'hf-hub':
        return spec, (not has_weights) if pretrained is None else pretrained
    name = parsed['architecture'] + (f".{parsed['tag']}" if parsed['tag'] else '')
    return name, bool(pretrained) if pretrained is not None else (not has_weights and bool(parsed['tag']))


def _registered_cfg(name: str, parsed: Dict[str, Any]):
    from timm.models import get_pretrained_cfg
    return get_pretrained_cfg(name, allow_unregistered=True) if parsed['source'] != 'hf-hub' else None


def _size_kwargs(name: str, parsed: Dict[str, Any], state_dict, hf_config: Dict[str, Any],
                 num_classes: Optional[int], img_size: Optional[int]) -> Dict[str, Any]:
    """``num_classes`` (from the checkpoint's classifier unless given) and ``img_size`` (fixed-size models)."""
    kwargs: Dict[str, Any] = {}
    if state_dict is not None and num_classes is None:
        cfg = _registered_cfg(name, parsed)
        clf = _classifier_names(cfg.to_dict() if cfg is not None else {}) or ['head.fc', 'fc', 'classifier', 'head']
        num_classes = classifier_num_classes(state_dict, clf)
        if num_classes is None and hf_config.get('num_classes') is not None:
            num_classes = int(hf_config['num_classes'])
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    if img_size is not None:
        cfg = _registered_cfg(name, parsed)
        if cfg is not None and cfg.fixed_input_size:
            kwargs['img_size'] = img_size  # ViT-style models build their position embedding for it
    return kwargs


#: the seed of timm's random init when a model has no checkpoint or pretrained weights
RANDOM_WEIGHTS_SEED = 0


def _create(timm, spec: str, name: str, use_pretrained: bool, kwargs: Dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=use_pretrained, exportable=True, **kwargs)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if use_pretrained:  # download failures, offline Hub, missing files: any exception type
            hint = ('download the repository (offline: HF_HUB_OFFLINE=1?) and pass local-dir:FOLDER'
                    if spec.startswith('hf-hub:') else 'give the weights with --checkpoint')
            raise DeployError(f'cannot get the pretrained weights of {spec}: {first}; {hint}') from None
        if isinstance(e, (RuntimeError, ValueError, TypeError, OSError)):
            raise DeployError(f'cannot create {spec}: {first}') from None
        raise


def load_model(
        spec: str,
        checkpoint: Optional[str] = None,
        num_classes: Optional[int] = None,
        use_ema: bool = False,
        device: str = 'cpu',
        img_size: Optional[int] = None,
        pretrained: Optional[bool] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """Build ``spec`` in eval mode on ``device`` with the checkpoint's weights.

    Weights: ``checkpoint`` if given; else the spec's own (``hf-hub:``/``local-dir:`` or a tagged name); else
    timm's random init (``info['weights'] == 'random'``). ``pretrained`` forces/forbids timm pretrained weights.

    Returns ``(model, info)``: ``info`` is the data config (``input_size``, ``mean``, ``std``, ``interpolation``,
    ``crop_pct``, ``crop_mode``) plus ``architecture``, ``tag``, ``model_spec``, ``source``, ``weights``,
    ``checkpoint``, ``num_classes`` and ``class_labels``.
    """
    timm = _import_timm()
    _check_img_size(img_size)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise DeployError(f'--num-classes must be a non-negative integer, got {num_classes!r}')
    parsed = parse_model_spec(spec)
    if parsed['source'] == 'local-dir' and checkpoint is None:
        checkpoint = parsed['location']  # a save_for_hf folder is its own checkpoint
    state_dict, ckpt_info = read_checkpoint(checkpoint, use_ema=use_ema) if checkpoint is not None else (None, {})
    hf_config = ckpt_info.get('hf_config') or {}
    name, use_pretrained = _name_and_pretrained(spec, parsed, state_dict is not None, pretrained)
    kwargs = {**_create_kwargs(hf_config), **_size_kwargs(name, parsed, state_dict, hf_config, num_classes, img_size)}
    if state_dict is None and not use_pretrained:
        # timm's random init, seeded (the caller's generator untouched): the same spec gives the same weights in
        # every process, so random-weight exports repeat byte for byte and compiled packages hit their cache
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = _create(timm, spec, name, use_pretrained, kwargs)
    else:
        model = _create(timm, spec, name, use_pretrained, kwargs)
    arch = model.pretrained_cfg.get('architecture') or parsed['architecture'] or name
    if state_dict is not None:
        problem = _describe_mismatch(model, state_dict, arch, ckpt_info.get('architecture'), checkpoint)
        if problem:
            raise DeployError(problem)
        model.load_state_dict(state_dict, strict=True)
    try:
        model = model.to(device).eval()
    except (RuntimeError, AssertionError) as e:
        raise DeployError(f'cannot move the model to device {device!r}: {str(e).splitlines()[0]}') from None
    info = data_config_of(model, img_size)
    pcfg = dict(model.pretrained_cfg)
    n_out = int(getattr(model, 'num_classes', 0) or 0)
    info.update(
        architecture=arch.split('.')[0],
        tag=parsed['tag'] or ((pcfg.get('tag') or '') if parsed['source'] == 'hf-hub' else ''),
        model_spec=spec, source=parsed['source'] or 'timm',
        weights='checkpoint' if state_dict is not None else ('pretrained' if use_pretrained else 'random'),
        checkpoint=ckpt_info.get('path'), checkpoint_format=ckpt_info.get('format'), num_classes=n_out,
        class_labels=class_labels_for(n_out, pcfg, hf_config),
    )
    return model, info
