"""The one place that turns what a user names (a timm name, ``hf-hub:``, ``local-dir:``, a checkpoint, an ONNX
file with its metadata) into what a stage runs: a PyTorch model and/or an ONNX file, plus its data config.

Every stage resolves its MODEL_OR_ONNX argument here (``open_source``), so an ONNX file always brings the
preprocessing recorded in it, a model spec the one timm resolves for it, and a pairing of a model with an ONNX
file made from another model is refused the same way everywhere (``check_pairing``).
"""
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import nn

from .errors import DeployError
from .metadata import read_metadata
from .model_io import class_labels_for, data_config_of, is_onnx_path, load_model
from .options import ModelOptions
from .runtimes import package_runtime, package_source_hook

__all__ = ['DATA_KEYS', 'NAMING_KEYS', 'Source', 'open_source', 'module_info', 'onnx_data_config',
           'reference_model', 'check_pairing', 'check_img_size', 'is_onnx_path', 'weights_digest',
           'HASHED_WEIGHTS']

#: weight sources whose hash means something (freshly initialized weights differ on every build)
HASHED_WEIGHTS = ('checkpoint', 'pretrained')

#: the data config every stage passes to the image pipeline (timm's eval transform plus the label mapping)
DATA_KEYS = ('input_size', 'mean', 'std', 'interpolation', 'crop_pct', 'crop_mode', 'num_classes', 'class_labels')
#: where a model came from, as results report it
NAMING_KEYS = ('model_spec', 'architecture', 'tag', 'weights', 'checkpoint')


@dataclass
class Source:
    """A resolved MODEL_OR_ONNX: ``kind`` 'model' (``model`` set), 'onnx' (``onnx_path``/``meta`` set) or 'package'
    (a runtime's compiled file: ``meta`` set); for a file, ``model`` too when a PyTorch reference was asked for.
    ``info`` holds ``DATA_KEYS`` and ``NAMING_KEYS``."""
    spec: str
    kind: str
    info: Dict[str, Any] = field(default_factory=dict)
    model: Optional[nn.Module] = None
    onnx_path: Optional[str] = None
    meta: Optional[Dict[str, Any]] = None

    @property
    def data_config(self) -> Dict[str, Any]:
        return {k: self.info.get(k) for k in DATA_KEYS}

    @property
    def naming(self) -> Dict[str, Any]:
        return {k: self.info.get(k) for k in NAMING_KEYS}

    @property
    def name(self) -> str:
        return self.info.get('architecture') or os.path.splitext(os.path.basename(self.spec))[0]


def module_info(model: nn.Module, spec: Optional[str], img_size: Optional[int]) -> Dict[str, Any]:
    """Data config and naming of a caller-built module (its weights are its own: ``weights == 'module'``)."""
    info = data_config_of(model, img_size)
    pcfg = dict(getattr(model, 'pretrained_cfg', None) or {})
    arch = (pcfg.get('architecture') or (spec or type(model).__name__)).split('.')[0]
    num_classes = int(getattr(model, 'num_classes', 0) or 0)
    info.update(architecture=arch, tag=pcfg.get('tag') or '', model_spec=spec or arch, weights='module',
                checkpoint=None, num_classes=num_classes, class_labels=class_labels_for(num_classes, pcfg))
    return info


def check_img_size(meta: Dict[str, Any], img_size: Optional[int], onnx_path: str) -> None:
    """An ONNX graph has the spatial size it was exported for; refuse another ``--img-size``."""
    size = meta.get('input_size') or meta.get('graph_input_shape')
    if img_size is not None and size and tuple(size[-2:]) != (img_size, img_size) and None not in size[-2:]:
        raise DeployError(f'{onnx_path} was exported for {size[-2]}x{size[-1]} inputs, not --img-size {img_size}; '
                          're-export with --img-size to change it')


def onnx_data_config(meta: Dict[str, Any], onnx_path: str) -> Dict[str, Any]:
    """The preprocessing recorded in an ONNX file; files without it are refused (no silent guessing)."""
    missing = [k for k in ('input_size', 'mean', 'std') if meta.get(k) is None]
    if missing:
        raise DeployError(f"{onnx_path} has no preprocessing metadata ({', '.join(missing)}); "
                          'export it with `timm-recal export` so the image pipeline matches the model')
    cfg = {k: meta.get(k) for k in DATA_KEYS}
    cfg['input_size'] = tuple(cfg['input_size'])
    cfg['interpolation'] = cfg.get('interpolation') or 'bilinear'
    cfg['crop_pct'] = 0.875 if cfg.get('crop_pct') is None else cfg['crop_pct']
    return cfg


def _recorded_checkpoint(recorded: Optional[str], onnx_path: str) -> Optional[str]:
    """Where the checkpoint recorded at export is now: as recorded (relative to the working folder), else
    beside the ONNX file (a file and its checkpoint handed over together); None if neither exists."""
    if not recorded:
        return None
    folder = os.path.dirname(os.path.abspath(onnx_path))
    for candidate in (recorded, os.path.join(folder, recorded), os.path.join(folder, os.path.basename(recorded))):
        if os.path.exists(candidate):
            return candidate
    return None


def _local_dir_spec(spec: str, meta: Dict[str, Any], checkpoint: Optional[str]) -> str:
    """A recorded ``local-dir:FOLDER`` that no longer resolves names its architecture instead (the weights then
    come from ``checkpoint``)."""
    if spec.startswith('local-dir:') and checkpoint is not None and not os.path.isdir(spec[len('local-dir:'):]):
        return meta.get('architecture') or spec
    return spec


def reference_model(meta: Dict[str, Any], onnx_path: str, opts: ModelOptions):
    """``(model, info)``: the PyTorch model an ONNX file was exported from (its spec, with ``--checkpoint`` or
    the one recorded at export). The recorded checkpoint is looked up relative to the working folder, then
    beside the file; its weights must have the hash recorded at export."""
    spec = meta.get('model_spec') or meta.get('architecture')
    if not spec:
        raise DeployError(f'{onnx_path} does not name its timm architecture (no metadata); '
                          'give the MODEL instead of the ONNX file, with --onnx')
    checkpoint, weights = opts.checkpoint, meta.get('weights')
    if checkpoint is None and weights == 'checkpoint':
        recorded = meta.get('checkpoint')
        checkpoint = _recorded_checkpoint(recorded, onnx_path)
        if checkpoint is None:
            raise DeployError(f'{onnx_path} was exported from checkpoint {recorded}, which is not there (looked in '
                              'the working folder and beside the file); pass --checkpoint')
    if checkpoint is None and weights in ('random', 'module'):
        own = 'compiles its own package' if package_runtime(onnx_path) else 'exports its own ONNX file'
        raise DeployError(f"{onnx_path} was exported with {'random' if weights == 'random' else 'in-memory'} "
                          'weights, so the PyTorch reference cannot be rebuilt; pass --checkpoint, or run parity '
                          f'on the MODEL so that it {own}')
    size = (meta.get('input_size') or [None])[-1]
    model, info = load_model(_local_dir_spec(spec, meta, checkpoint), checkpoint,
                             num_classes=meta.get('num_classes') if checkpoint is None else None,
                             use_ema=opts.use_ema, device=opts.device, img_size=size)
    recorded_hash = meta.get('weights_sha256')
    if recorded_hash and info.get('weights') in HASHED_WEIGHTS and weights_digest(model) != recorded_hash:
        raise DeployError(f"{onnx_path} was exported from other weights than {info.get('weights')} "
                          f"{checkpoint or spec}: the weight hashes differ; pass the checkpoint it was made from "
                          'with --checkpoint')
    return model, info


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values): which weights a file was made from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}:{t.dtype}:{tuple(t.shape)};'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_pairing(info: Dict[str, Any], meta: Dict[str, Any], onnx_path: str,
                  model: Optional[nn.Module] = None) -> None:
    """Refuse an ONNX file that was not made from the model ``info`` describes (architecture, classes, size)
    and, when both come from a checkpoint or a pretrained tag, from its weights (the hash recorded at export)."""
    pairs = (('architecture', info.get('architecture'), meta.get('architecture')),
             ('num_classes', info.get('num_classes'), meta.get('num_classes')),
             ('input_size', list(info.get('input_size') or []) or None, meta.get('input_size')))
    for key, ours, theirs in pairs:
        if ours is not None and theirs is not None and ours != theirs:
            hint = '; pass the matching --img-size' if key == 'input_size' else ''
            raise DeployError(f'{onnx_path} was not made from this model: its {key} is {theirs}, the model\'s '
                              f'{ours}{hint}')
    recorded = meta.get('weights_sha256')
    if model is not None and recorded and info.get('weights') in HASHED_WEIGHTS and weights_digest(model) != recorded:
        raise DeployError(f"{onnx_path} was exported from other weights than {info.get('model_spec')} "
                          f"({info.get('weights')} {info.get('checkpoint') or ''}): the weight hashes differ".replace(' )', ')'))


def _with_reference(src: Source, opts: ModelOptions, module: Optional[nn.Module], need_model: bool) -> Source:
    """A file's source with its PyTorch side: ``module`` as given, or (``need_model``) the model its metadata
    records, rebuilt and hash-checked (``reference_model``); the same for an ONNX file and a compiled package."""
    meta, spec = src.meta, src.spec
    if module is not None:
        src.model = module.eval()
        src.info['weights'] = 'module'
    elif need_model:
        src.model, ref_info = reference_model(meta, spec, opts)
        if meta.get('num_classes') is not None and ref_info.get('num_classes') not in (None, meta['num_classes']):
            raise DeployError(f"the PyTorch model has {ref_info['num_classes']} classes but {spec} "
                              f"{meta['num_classes']}; wrong --checkpoint?")
        src.info.update({k: ref_info.get(k) for k in ('weights', 'checkpoint')})
    return src


def _onnx_source(spec: str, opts: ModelOptions, module: Optional[nn.Module], need_model: bool) -> Source:
    meta = read_metadata(spec)
    check_img_size(meta, opts.img_size, spec)
    info = {**onnx_data_config(meta, spec), **{k: meta.get(k) for k in NAMING_KEYS}}
    return _with_reference(Source(spec, 'onnx', info, onnx_path=spec, meta=meta), opts, module, need_model)


def open_source(spec: str, opts: Optional[ModelOptions] = None, module: Optional[nn.Module] = None,
                need_model: bool = False) -> Source:
    """Resolve MODEL_OR_ONNX ``spec``: an ``.onnx`` file or a runtime's compiled package (``kind == 'package'``;
    the runtime table's ``package_source``), each with its PyTorch reference when ``need_model`` (the model its
    metadata records: a package was made from a model as an ONNX file was), or a model spec built with ``opts``
    (or ``module``, an already built model that ``spec`` only names)."""
    opts = opts or ModelOptions()
    word = package_runtime(spec)
    if word is not None:
        src = package_source_hook(word)(spec, opts.device)
        check_img_size(src.meta, opts.img_size, spec)
        return _with_reference(src, opts, module, need_model)
    if is_onnx_path(spec):
        return _onnx_source(spec, opts, module, need_model)
    if module is not None:
        if opts.checkpoint is not None:
            raise DeployError('pass either a built model or --checkpoint, not both')
        return Source(spec, 'model', module_info(module, spec, opts.img_size), model=module.eval())
    model, info = load_model(spec, opts.checkpoint, opts.num_classes, opts.use_ema, opts.device, opts.img_size)
    return Source(spec, 'model', info, model=model)
