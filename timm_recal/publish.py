"""``timm-recal publish``: one model's weights, card and deploy numbers as a Hugging Face Hub repo.

One code path writes a Hub folder (``build_hub_folder``): ``model.safetensors`` and timm's ``config.json`` (so that
``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` works after ``import timm_recal``), ``README.md`` (a
``ModelCard``, see ``timm_recal.model_card``), ``metrics.json``, and optionally ``throughput.png`` of a
``timm-recal pipeline`` report and the FP32/INT8 ONNX exports. ``--dry-run -o DIR`` (and ``package-weights``, its
older name) writes that folder and uploads nothing; otherwise it goes to the Hub in one commit
(``HfApi.create_repo`` + ``upload_folder``). A repo that this call created is deleted again if the upload fails, so
no repo claims to be complete when it is not. The token comes from ``HF_TOKEN`` or ``hf auth login`` and is only
handed to ``huggingface_hub``.

SOURCE is a model with a pretrained tag (``se_shufflenetv2_x0_5_cifar.cifar10``), ``hf-hub:ORG/NAME``, a
``save_for_hf`` folder (``weights/<arch>.<tag>``, also as ``local-dir:FOLDER``), a ``timm-recal train`` run folder,
or a model name with ``--checkpoint`` (state dict, timm ``train.py`` checkpoint or ``save_for_hf`` folder).

Only the standard library (and ``timm_recal.errors``) is imported here: the ``timm-recal`` command builds its
parser from this module, and torch, timm and ``huggingface_hub`` (the ``[hub]`` extra) load when the command runs.
"""
import argparse
import contextlib
import csv
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .errors import RecalError
from .training.config import model_architecture

__all__ = ['PublishError', 'Source', 'check_repo_id', 'check_tag', 'load_source', 'read_run', 'read_report',
           'build_hub_folder', 'check_publishable', 'HubTarget', 'check_hub_target', 'upload_hub_folder', 'publish',
           'add_parser', 'add_package_weights_parser']

_TAG = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
_REPO_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$')
_PICKLE_SUFFIXES = ('.bin', '.pt', '.pth', '.pkl', '.pickle', '.ckpt', '.tar', '.npy', '.npz')
_ABS_PATH = re.compile(r'(?:^|[\s"\'(`=,\[])((?:/(?:home|root|tmp|Users|work|mnt|var|private|scratch|data)/'
                       r'|~/|[A-Za-z]:\\\\?)[^\s"\'`)\],]*)')


class PublishError(RecalError):
    """Bad input or a failed upload; ``timm_recal.cli.main`` prints the one-line message and exits non-zero."""


@dataclass
class Source:
    """A model ready to publish and what is known about its weights."""
    model: Any
    arch: str
    tag: str = ''
    metrics: Optional[Dict[str, Any]] = None
    training: Optional[Dict[str, Any]] = None
    weights: str = ''
    base_model: Optional[str] = None
    notes: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- inputs
def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` with the Hub's characters, or a ``PublishError`` saying what is wrong."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or '--' in repo_id or '..' in repo_id \
            or repo_id.endswith(('.', '-')) or repo_id.split('/')[1].endswith('.git'):
        raise PublishError(f"malformed --repo-id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.'; "
                           "no '--' or '..'; at most 96 characters each)")
    return repo_id


def check_tag(tag: str) -> str:
    """A pretrained tag usable in ``ARCH.TAG`` (timm's name) and in the repo name ``ORG/ARCH.TAG``; refused as
    ``--tag`` (it was refused as a malformed ``--repo-id`` the user never gave, or, empty, silently dropped)."""
    if not isinstance(tag, str) or not _TAG.match(tag) or '..' in tag or tag.endswith(('.', '-')):
        raise PublishError(f"malformed --tag {tag!r}: expected letters, digits, '_', '-' and '.' (e.g. cifar10, "
                           "a1_in1k), starting with a letter or digit, at most 64 characters")
    return tag


def _timm():
    import timm
    import timm_recal  # noqa: F401  (registers the architectures)
    return timm


def _check_model_name(name: str, spec: str) -> None:
    import difflib
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else '; see `timm-recal models`'
        raise PublishError(f'unknown model {spec!r}{hint}')


def _read_state_dict(path: str) -> Tuple[Dict[str, Any], Optional[str]]:
    """Weights of a checkpoint file or ``save_for_hf`` folder (never unpickling code) and the architecture the
    file names, if any."""
    import argparse as _argparse
    import torch
    from timm.models import clean_state_dict
    arch = None
    if os.path.isdir(path):
        cfg_path = os.path.join(path, 'config.json')
        if not os.path.isfile(cfg_path):
            raise PublishError(f'--checkpoint {path} is a folder without config.json; not a save_for_hf folder')
        arch = _read_json(cfg_path).get('architecture')
        files = [os.path.join(path, n) for n in ('model.safetensors', 'pytorch_model.bin')]
        path = next((f for f in files if os.path.isfile(f)), None)
        if path is None:
            raise PublishError(f'{os.path.dirname(files[0])} has no model.safetensors')
    elif not os.path.isfile(path):
        raise PublishError(f'checkpoint not found: {path}')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            obj = load_file(path, device='cpu')
        else:
            with torch.serialization.safe_globals([_argparse.Namespace]):  # train.py stores its args
                obj = torch.load(path, map_location='cpu', weights_only=True)
    except ModuleNotFoundError:
        raise
    except Exception as e:
        raise PublishError(f'cannot read checkpoint {path}: {_why_unreadable(path, e)}') from None
    if not isinstance(obj, dict):
        raise PublishError(f'{path} holds a {type(obj).__name__}, not a state dict')
    arch = obj.get('arch') if isinstance(obj.get('arch'), str) else arch
    for key in ('state_dict', 'model'):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state_dict = clean_state_dict(obj)
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise PublishError(f'{path} holds no state dict of tensors')
    return state_dict, arch


def _why_unreadable(path: str, error: BaseException) -> str:
    """Why a weights file failed to load, in words: ``torch.load`` on a text file says ``KeyError: 105`` (a pickle
    opcode), which tells the user nothing."""
    import zipfile
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if path.endswith('.safetensors'):
        return f'not a safetensors file, or a damaged one ({first})'
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as e:
        return e.strerror or type(e).__name__
    if head.startswith(b'PK'):
        if not zipfile.is_zipfile(path):
            return 'truncated or damaged: the file ends before its zip index'
    elif not head.startswith(b'\x80'):  # torch.save writes a zip file, or a pickle (protocol 2+) in legacy format
        return 'not a PyTorch checkpoint (a file written by torch.save) or a .safetensors file'
    return f'{type(error).__name__}: {first}'


def _build_with_weights(arch: str, state_dict: Dict[str, Any], path: str, file_arch: Optional[str], **kwargs):
    """``arch`` with ``state_dict`` loaded strictly; a checkpoint of another architecture is refused by name."""
    timm = _timm()
    # the checkpoint records the model as it was named: ARCH.TAG, local-dir:FOLDER, hf-hub:ORG/ARCH.TAG
    other = model_architecture(file_arch) if file_arch else None
    if other and other != arch:
        raise PublishError(f'checkpoint {path} was saved from {file_arch!r}, not {arch!r}')
    cfg = timm.models.get_pretrained_cfg(arch)
    clf = (cfg.classifier if cfg is not None else None) or 'fc'
    clf = [clf] if isinstance(clf, str) else list(clf)
    weight = next((state_dict[f'{c}.weight'] for c in clf if f'{c}.weight' in state_dict), None)
    if weight is not None and 'num_classes' not in kwargs:
        kwargs['num_classes'] = int(weight.shape[0])
    model = timm.create_model(arch, **kwargs)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        def few(keys):
            return ', '.join(keys[:3]) + (f' (+{len(keys) - 3})' if len(keys) > 3 else '')
        parts = [f'{len(missing)} missing ({few(missing)})' if missing else '',
                 f'{len(unexpected)} unexpected ({few(unexpected)})' if unexpected else '',
                 f'{len(shapes)} of another shape ({few(shapes)})' if shapes else '']
        raise PublishError(f"checkpoint {path} does not fit {arch}: keys {'; '.join(p for p in parts if p)}")
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise PublishError(f'cannot read {path}: {e}') from None
    if not isinstance(data, dict):
        raise PublishError(f'{path} is not a JSON object')
    return data


def _folder_source(folder: str) -> Source:
    timm = _timm()
    cfg = _read_json(os.path.join(folder, 'config.json')) if os.path.isfile(os.path.join(folder, 'config.json')) \
        else None
    if cfg is None:
        raise PublishError(f'{folder} has no config.json; not a save_for_hf folder or a training run')
    arch = str(cfg.get('architecture') or '').split('.')[0]
    if not arch:
        raise PublishError(f"{folder}/config.json has no 'architecture'")
    _check_model_name(arch, arch)
    if not os.path.isfile(os.path.join(folder, 'model.safetensors')):
        raise PublishError(f'{folder} has no model.safetensors (pickle weights are not published)')
    state_dict, _ = _read_state_dict(folder)
    try:
        model = timm.create_model(f'local-dir:{folder}', pretrained=False)
    except Exception as e:
        raise PublishError(f'cannot build {arch} from {folder}/config.json: {str(e).splitlines()[0]}') from None
    own = model.state_dict()
    if set(own) != set(state_dict) or any(tuple(own[k].shape) != tuple(state_dict[k].shape) for k in own):
        model = _build_with_weights(arch, state_dict, folder, arch, **(cfg.get('model_args') or {}))
    else:
        model.load_state_dict(state_dict, strict=True)
    tag = (cfg.get('pretrained_cfg') or {}).get('tag') or ''
    name = os.path.basename(os.path.normpath(folder))
    if not tag and name.startswith(arch + '.'):
        tag = name[len(arch) + 1:]
    metrics = _read_json(os.path.join(folder, 'metrics.json')) if os.path.isfile(
        os.path.join(folder, 'metrics.json')) else None
    if metrics:
        _check_metric_values(metrics, os.path.join(folder, 'metrics.json'))
    training = (metrics or {}).pop('training', None) if metrics else None
    weights = (metrics or {}).get('weights') or (
        'the checkpoint of the final epoch (no selection on the test set)'
        if 'final epoch' in str((metrics or {}).get('source')) else f'weights folder `{name}`')
    return Source(model.eval(), arch, tag, metrics, training, weights)


def _last_row(summary_csv: Path) -> Dict[str, str]:
    if not summary_csv.is_file():
        raise FileNotFoundError(f"{summary_csv} not found: is {summary_csv.parent} a `timm-recal train` run?")
    with open(summary_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{summary_csv} has no epochs")
    return rows[-1]


def read_run(run_dir: str) -> Source:
    """The final-epoch model of a finished ``timm-recal train`` run with its test metrics and recipe.

    The final epoch is used, not the best: choosing by test accuracy would overstate it.
    """
    import torch
    run = Path(run_dir)
    ckpt_path = run / 'last.pth.tar'
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path} not found: is {run_dir} a finished `timm-recal train` run?")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # train.py stores its args
            ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise PublishError(f'cannot read {ckpt_path}: {_why_unreadable(str(ckpt_path), e)}') from None
    args = ckpt.get('args')
    spec = ckpt.get('arch') or getattr(args, 'model', None)
    if not spec or not isinstance(ckpt.get('state_dict'), dict):
        raise PublishError(f'{ckpt_path} names no architecture or holds no state_dict')
    # a run of `model: ARCH.TAG` (or local-dir:, hf-hub:) records that name: publish its architecture
    arch = model_architecture(spec)
    if not arch or not _timm().is_model(arch):
        raise PublishError(f'{ckpt_path}: the run trained model {spec!r}, whose architecture cannot be told here; '
                           f'give it: timm-recal publish ARCH --checkpoint {ckpt_path}')
    row = _last_row(run / 'summary.csv')
    epochs_done = int(row['epoch']) + 1
    total = _run_epochs(args, run)
    if total is not None and epochs_done < total:
        raise ValueError(f"{run_dir}: only {epochs_done} of {total} epochs are done; finish (--resume auto) first")
    model = _build_with_weights(arch, ckpt['state_dict'], str(ckpt_path), arch)
    training = recipe_dict(args, input_size=_input_size(model)) if args is not None else None
    if training is not None:
        training['epochs'] = epochs_done
    metrics = {'top1': float(row['eval_top1']), 'top5': float(row['eval_top5']), 'epochs': epochs_done,
               'source': 'timm-recal train (final epoch)'}
    return Source(model, arch, 'cifar10', metrics, training, 'the checkpoint of the final epoch (no selection on '
                  'the test set)')


def _run_epochs(args: Any, run: Path) -> Optional[int]:
    """The epochs the run trains in all: what its lr schedule runs (``_schedule``, from the checkpoint's own
    ``args``, so a resumed run with more epochs counts those), else the ``epochs`` its ``results.json`` records."""
    schedule = _schedule(args) if args is not None else None
    if schedule is not None:
        return schedule[0]
    results = run / 'results.json'
    recorded = _read_json(str(results)).get('epochs') if results.is_file() else None
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else None


def _input_size(model: Any) -> Optional[int]:
    """The image side the model takes by default (what training resolves when ``img_size`` is unset)."""
    size = (getattr(model, 'pretrained_cfg', None) or {}).get('input_size')
    return int(size[-1]) if size else None


def load_source(source: str, checkpoint: Optional[str] = None, tag: Optional[str] = None) -> Source:
    """The model ``source`` names (see the module docstring), with its weights, metrics and training recipe."""
    if not source:
        raise PublishError('a SOURCE is required (model with a pretrained tag, weights folder, run folder)')
    local = source[len('local-dir:'):] if source.startswith('local-dir:') else None
    if checkpoint is None and local is None and os.path.isdir(source):
        if os.path.isfile(os.path.join(source, 'last.pth.tar')):
            src = read_run(source)
        else:
            src = _folder_source(source)
    elif checkpoint is None and local is not None:
        if not os.path.isdir(local):
            raise PublishError(f'folder not found: {local}')
        src = _folder_source(local)
    elif os.path.isfile(source):
        raise PublishError(f'{source} is a file; give a model name with --checkpoint {source}')
    elif source.startswith('hf-hub:'):
        src = _pretrained_source(source, checkpoint)
    else:
        if '/' in source or ':' in source:
            raise PublishError(f"{source!r} is not a timm model name, a folder or hf-hub:ORG/NAME")
        name, _, spec_tag = source.partition('.')
        _check_model_name(name, source)
        if checkpoint is not None:
            state_dict, file_arch = _read_state_dict(checkpoint)
            src = Source(_build_with_weights(name, state_dict, checkpoint, file_arch), name, spec_tag,
                         weights=f'checkpoint `{os.path.basename(os.path.normpath(checkpoint))}`')
        elif spec_tag:
            src = _pretrained_source(source, None)
        else:
            raise PublishError(f'{source} names no weights: give a pretrained tag ({source}.TAG), a weights or run '
                               'folder, or --checkpoint')
    if tag:
        src.tag = tag
    return src


def _pretrained_source(spec: str, checkpoint: Optional[str]) -> Source:
    timm = _timm()
    if checkpoint is not None:
        raise PublishError(f'{spec} brings its own weights; give --checkpoint with a plain model name')
    if not spec.startswith('hf-hub:'):
        try:
            cfg = timm.models.get_pretrained_cfg(spec, allow_unregistered=False)
        except RuntimeError:
            cfg = None
        if cfg is None:
            name = spec.partition('.')[0]
            tags = [t.partition('.')[2] for t in timm.list_pretrained(f'{name}.*')]
            raise PublishError(f"unknown pretrained tag in {spec!r}; "
                               f"{'known: ' + ', '.join(tags) if tags else name + ' has no pretrained tags'}")
    try:
        model = timm.create_model(spec, pretrained=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PublishError(f'cannot get the weights of {spec}: {first[:300]}') from None
    pcfg = dict(model.pretrained_cfg)
    arch = str(pcfg.get('architecture') or spec.partition('.')[0]).split('.')[0]
    hub_id = pcfg.get('hf_hub_id')
    return Source(model.eval(), arch, pcfg.get('tag') or '', weights=f'pretrained `{spec}`',
                  base_model=hub_id if hub_id and hub_id.split('/')[0] != 'timm-recal' else None)


def training_from_config(path: str, input_size: Optional[int] = None, arch: Optional[str] = None,
                         num_classes: Optional[int] = None) -> Dict[str, Any]:
    """The recipe of a train.py YAML config (``--train-config``), as the card states it; ``input_size`` is the
    model's image side (the augmentation depends on it when the config sets no ``img_size``).

    A config that names another model than ``arch``, or trains another class count than ``num_classes``, is
    refused: the card would claim the weights were trained with a recipe written for a different network. A config
    without ``model`` is a recipe for any model (``timm-recal train --model``) and passes.
    """
    from .training.config import load_config, read_yaml
    try:
        cfg = load_config(path, {})
        raw = read_yaml(path)
    except (OSError, ValueError) as e:
        raise PublishError(f'cannot read --train-config {path}: {str(e).splitlines()[0]}') from None
    named = raw.get('model') if isinstance(raw, dict) else None
    if named is not None and not isinstance(named, str):
        raise PublishError(f'--train-config {path}: model must name a model, got {named!r}')
    other = model_architecture(named) if named else None
    if arch and other and other != arch:
        raise PublishError(f'--train-config {path} trains {other}, not {arch} (the model published); give the config '
                           f'{arch} was trained with')
    classes = cfg.num_classes if cfg.num_classes is not None else (cfg.model_kwargs or {}).get('num_classes')
    if num_classes and classes is not None and classes != num_classes:
        raise PublishError(f'--train-config {path} trains {classes} classes, the weights of {arch or "the model"} have '
                           f'{num_classes}; give the config they were trained with')
    if _schedule(cfg) is None:
        raise PublishError(f'--train-config {path}: timm cannot build its lr schedule (sched {cfg.sched!r}, '
                           f'epochs {cfg.epochs}); `timm-recal train` would refuse it too')
    return recipe_dict(cfg, os.path.basename(path), input_size=input_size)


#: create_scheduler_v2's keyword <- the train.py / TrainConfig option it comes from (those that set the length)
_SCHEDULE_ARGS = {'sched': 'sched', 'num_epochs': 'epochs', 'decay_epochs': 'decay_epochs',
                  'decay_milestones': 'decay_milestones', 'cooldown_epochs': 'cooldown_epochs',
                  'warmup_epochs': 'warmup_epochs', 'warmup_prefix': 'warmup_prefix', 'cycle_mul': 'lr_cycle_mul',
                  'cycle_decay': 'lr_cycle_decay', 'cycle_limit': 'lr_cycle_limit'}


def _schedule(args: Any) -> Optional[Tuple[int, bool]]:
    """(epochs in all, whether the lr restarts in cycles) of the schedule ``args`` describe, or None if timm
    cannot build it.

    timm's ``create_scheduler_v2`` counts them, as the trainer does: only cycling schedules (cosine, tanh, poly)
    multiply ``epochs`` by ``lr_cycle_limit`` (and ``lr_cycle_mul``); step, multistep, plateau, ... ignore both,
    so ``epochs * lr_cycle_limit`` would ask a finished step run for epochs it never trains.
    """
    import torch
    from timm.scheduler import create_scheduler_v2
    kwargs = {key: getattr(args, name) for key, name in _SCHEDULE_ARGS.items()
              if getattr(args, name, None) is not None}
    if 'num_epochs' not in kwargs:
        return None
    if 'decay_milestones' in kwargs:
        kwargs['decay_milestones'] = list(kwargs['decay_milestones'])
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        scheduler, epochs = create_scheduler_v2(probe, **kwargs)
    except (AssertionError, ValueError, KeyError, TypeError):
        return None
    cycles = hasattr(scheduler, 'get_cycle_length') and int(kwargs.get('cycle_limit', 1)) > 1
    return int(epochs), cycles


def _augmentation(args: Any, size: int) -> Optional[str]:
    """What the run's training transform did to the images, as ``timm_recal.training.trainer.build_transforms``
    (and the device loader) build it from ``aug``, the image size, ``no_aug`` and ``hflip``; None where this cannot
    tell (timm's own pipeline, a train.py run)."""
    aug = getattr(args, 'aug', None)
    if aug is None:  # not a `timm-recal train` config: train.py's pipeline (RandAugment, mixup, ...) is its own
        return None
    if getattr(args, 'no_aug', False):
        return 'no augmentation'
    if aug == 'auto':
        aug = 'cifar' if size <= 64 else 'timm'
    if aug != 'cifar':
        return None
    text = f'{size // 8}-pixel pad + random crop'
    hflip = float(getattr(args, 'hflip', 0.5) or 0.0)
    if hflip == 0.5:
        text += ' + horizontal flip'
    elif hflip > 0:
        text += f' + horizontal flip (p={hflip:g})'
    return text


def recipe_dict(args: Any, config_name: Optional[str] = None, input_size: Optional[int] = None) -> Dict[str, Any]:
    """The recipe fields of a ``TrainConfig`` or train.py ``args``: epochs as the schedule runs them (all cycles
    of a cycling schedule), cycles only where the schedule has them, and the augmentation that ran."""
    size = int(getattr(args, 'img_size', None) or input_size or 32)
    schedule = _schedule(args)
    epochs, cycles = schedule if schedule is not None else (getattr(args, 'epochs', None), False)
    keys = ('opt', 'momentum', 'lr', 'batch_size', 'weight_decay', 'sched') \
        + (('lr_cycle_limit', 'lr_cycle_decay') if cycles else ()) + ('warmup_epochs',)
    recipe = {k: getattr(args, k, None) for k in keys}
    recipe['epochs'] = int(epochs) if epochs else None
    recipe['augmentation'] = _augmentation(args, size)
    recipe['trainer'] = '`timm-recal train`'
    if config_name:
        recipe['config'] = config_name
    return {k: v for k, v in recipe.items() if v is not None}


def _check_metric_values(data: Dict[str, Any], where: str) -> None:
    """Refuse a metric the card cannot state, naming the file and the field: the card formats ``top1``/``top5``
    as percentages and ``n_images``/``epochs`` as counts, and a string there fails deep inside without either."""
    for key in ('top1', 'top5'):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or not 0 <= value <= 100):
            raise PublishError(f'{where}: {key!r} is {value!r}, not a percentage (a number from 0 to 100)')
    for key in ('n_images', 'epochs'):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not float(value).is_integer() or value < 1):
            raise PublishError(f'{where}: {key!r} is {value!r}, not a positive whole number')


def metrics_from_file(path: str, arch: str) -> Dict[str, Any]:
    """Top-1/top-5 from a ``timm-recal validate -o`` JSON or a ``metrics.json``; refuses another model's file."""
    data = _read_json(path)
    if data.get('top1') is None:
        raise PublishError(f'{path} has no top1: expected the JSON of `timm-recal validate -o` or a metrics.json')
    _check_metric_values(data, f'--metrics {path}')
    other = str(data.get('architecture') or '').split('.')[0]
    if other and other != arch:
        raise PublishError(f'--metrics {path} measured {other}, not {arch}')
    keep = {k: data[k] for k in ('dataset', 'split', 'n_images', 'top1', 'top5', 'epochs', 'source') if k in data}
    if 'source' not in keep:
        precision = data.get('precision') or 'fp32'
        runtime = (data.get('runtime') or {}).get('runtime') if isinstance(data.get('runtime'), dict) else None
        keep['source'] = f"`timm-recal validate` ({runtime or 'onnx'} {precision})"
    return keep


def read_report(report_dir: str, arch: str, num_classes: Optional[int] = None,
                weights_random: bool = False) -> Dict[str, Any]:
    """``report.json`` of a ``timm-recal pipeline`` folder, refused when it measured another model."""
    path = os.path.join(report_dir, 'report.json')
    if not os.path.isdir(report_dir):
        raise PublishError(f'--report {report_dir}: folder not found')
    if not os.path.isfile(path):
        raise PublishError(f'--report {report_dir} has no report.json; give a `timm-recal pipeline -o` folder')
    report = _read_json(path)
    if report.get('kind') != 'timm-recal-pipeline':
        raise PublishError(f'{path} is not a `timm-recal pipeline` report')
    target = (report.get('models') or {}).get('target') or {}
    name = str(report.get('model_name') or target.get('name') or '').split('.')[0]
    if name != arch:
        raise PublishError(f'--report {report_dir} measured {name or "an unnamed model"}, not {arch}')
    if num_classes is not None and target.get('num_classes') not in (None, num_classes):
        raise PublishError(f"--report {report_dir} measured {target['num_classes']} classes, the weights have "
                           f'{num_classes}')
    if target.get('weights') == 'random' and not weights_random:
        raise PublishError(f'--report {report_dir} measured randomly initialized weights, not these')
    return report


# ---------------------------------------------------------------------------------------------- the folder
def _flops(model, input_size) -> Optional[float]:
    try:
        from ptflops import get_model_complexity_info
    except ImportError:
        return None
    import copy
    macs, _ = get_model_complexity_info(
        copy.deepcopy(model), tuple(int(v) for v in input_size), as_strings=False, print_per_layer_stat=False,
        verbose=False, backend='pytorch', backend_specific_config={'count_functional': False})
    return macs / 1e9 if macs else None


#: the options only the ONNX step reads (``onnx_options`` keys) -> their flags, and the defaults of those with one
_ONNX_FLAGS = {'calib_data': '--calib-data', 'calib_images': '--calib-images', 'calib_method': '--calib-method',
               'fp32_layers': '--fp32-layers'}
_ONNX_DEFAULTS = {'calib_images': 512, 'calib_method': 'minmax', 'fp32_layers': 0}


def _check_onnx_options(with_onnx: bool, options: Optional[Dict[str, Any]]) -> None:
    """Without ``with_onnx`` nothing reads the ONNX options: refuse them rather than drop them silently."""
    unknown = sorted(set(options or {}) - set(_ONNX_FLAGS))
    if unknown:
        raise PublishError(f"unknown ONNX option(s) {', '.join(unknown)}; known: {', '.join(_ONNX_FLAGS)}")
    given = [flag for key, flag in _ONNX_FLAGS.items() if (options or {}).get(key) is not None]
    if given and not with_onnx:
        raise PublishError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} with --with-onnx "
                           '(the ONNX files); add --with-onnx or leave ' + ('it' if len(given) == 1 else 'them')
                           + ' out')


def _check_calib_data(calib_data: Optional[str]) -> None:
    """An INT8 calibration folder that is missing or holds no images is refused now, not after the export."""
    if calib_data is None:
        return
    from timm_recal_deploy.images import scan_images
    try:
        scan_images(calib_data)
    except RecalError as e:
        raise PublishError(f'--calib-data: {e}') from None


def _export_onnx(model, repo_id: str, folder: str, arch: str, options: Dict[str, Any]) -> List[Tuple[str, str]]:
    """FP32 and INT8 ONNX files in ``folder/onnx`` via the deploy stage (``export_onnx``, ``quantize_int8``)."""
    import timm_recal_deploy as deploy
    options = {**_ONNX_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    from timm_recal_deploy.metadata import read_metadata
    onnx_dir = os.path.join(folder, 'onnx')
    os.makedirs(onnx_dir, exist_ok=True)
    fp32, int8 = os.path.join(onnx_dir, 'model.onnx'), os.path.join(onnx_dir, 'model_int8.onnx')
    deploy.export_onnx(f'hf-hub:{repo_id}', fp32, model=model)
    deploy.quantize_int8(fp32, int8, options.get('calib_data'), calib_images=options['calib_images'],
                         calib_method=options['calib_method'], fp32_layers=options['fp32_layers'], progress=False)
    files = []
    for path, rel in ((fp32, 'onnx/model.onnx'), (int8, 'onnx/model_int8.onnx')):
        meta = read_metadata(path)
        if str(meta.get('architecture', '')).split('.')[0] != arch:
            raise PublishError(f"{rel} was exported from {meta.get('architecture')!r}, not {arch!r}")
        if meta.get('precision') == 'int8':
            q = meta.get('quantization') or {}
            n_float = len(q.get('fp32_layers') or [])
            what = (f"INT8 (QDQ, {q.get('weight_type', 'int8')} weights per channel), calibrated on "
                    f"{q.get('calib_images', '?')} images of `{q.get('calib_data', '?')}` "
                    f"({q.get('calibrate_method', '?')}), {n_float} nodes kept in float")
        else:
            what = f"FP32 ({meta.get('exporter', '?')} exporter, opset {meta.get('opset', '?')}), dynamic batch"
        files.append((rel, what))
    return files


def _local_path_hits(text: str) -> List[str]:
    hits = [m.group(1) for m in _ABS_PATH.finditer(text)]
    for root in {os.getcwd(), os.path.expanduser('~'), tempfile.gettempdir()}:
        if root not in ('', '/') and root in text:
            hits.append(root)
    return hits


def check_publishable(folder: str) -> None:
    """Refuse pickle files and absolute local paths in a folder meant for publishing."""
    for path in sorted(Path(folder).rglob('*')):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        from .hub import PUBLISHABLE_SUFFIXES
        if path.suffix.lower() in _PICKLE_SUFFIXES or path.suffix.lower() not in PUBLISHABLE_SUFFIXES:
            raise PublishError(f'{rel}: only safetensors, JSON, Markdown, PNG and ONNX files are published')
        if path.suffix in ('.json', '.md'):
            text = path.read_text(encoding='utf-8')
        elif path.suffix == '.onnx':  # every string of the file: metadata, node metadata, doc strings
            text = path.read_bytes().decode('latin-1')
        else:
            continue
        hits = _local_path_hits(text)
        if hits:
            raise PublishError(f'{rel} records local paths ({hits[0]}); a published file must not')


def _dataset(src: Source, dataset: Optional[str]) -> Optional[str]:
    """The data set the folder names: ``dataset`` (``--dataset``), else the metrics', else the tag's.

    A ``dataset`` that contradicts the data set the metrics were measured on, or the one the pretrained tag names,
    is refused: the card would claim results on one data set while metrics.json and config.json (its label
    names) describe another.
    """
    from .model_card import DATASETS, dataset_for_tag
    recorded = (src.metrics or {}).get('dataset')
    by_tag = dataset_for_tag(src.tag)
    if recorded and by_tag and str(recorded).lower() != by_tag:
        # e.g. --tag svhn on CIFAR-10 weights: the repo and config.json would say SVHN, the card and metrics CIFAR-10
        raise PublishError(f'the pretrained tag {src.tag!r} names {by_tag}, but the metrics of {src.arch} were '
                           f'measured on {recorded}; give --tag naming the weights of {recorded}')
    if not dataset:
        origin = f'the metrics ({recorded})' if recorded else f'the pretrained tag {src.tag!r}'
        return _check_class_count(src, recorded or by_tag, origin)
    dataset = dataset.lower() if dataset.lower() in DATASETS else dataset
    if recorded and str(recorded).lower() != dataset.lower():
        raise PublishError(f'--dataset {dataset} contradicts the metrics of {src.arch}, measured on {recorded}; '
                           'leave --dataset out, or give --metrics measured on ' + dataset)
    if by_tag and by_tag != dataset.lower():
        raise PublishError(f'--dataset {dataset} contradicts the pretrained tag {src.tag!r}, which names {by_tag}; '
                           f'leave --dataset out, or give --tag naming the weights of {dataset}')
    return _check_class_count(src, dataset, f'--dataset {dataset}')


def _check_class_count(src: Source, dataset: Optional[str], origin: str) -> Optional[str]:
    """``dataset``, unless the weights classify another number of classes than that data set has: a run on a
    5-class folder (a run folder's tag defaults to cifar10) would be carded as CIFAR-10 results."""
    from .model_card import DATASETS
    known = DATASETS.get(str(dataset or '').lower(), {})
    classes = int(getattr(src.model, 'num_classes', 0) or 0)
    if known.get('num_classes') and classes and classes != known['num_classes']:
        raise PublishError(f"the weights of {src.arch} classify {classes} classes, but {known['name']} (named by "
                           f"{origin}) has {known['num_classes']}; give --tag and --dataset naming the data they "
                           f"were trained on")
    return dataset


def _hub_config(src: Source, dataset: Optional[str]) -> Dict[str, Any]:
    """``save_for_hf``'s ``model_config``: the tag and the data set's label names, when they fit."""
    from .model_card import DATASETS
    config: Dict[str, Any] = {'pretrained_cfg': {'tag': src.tag}} if src.tag else {}
    labels = DATASETS.get(dataset or '', {}).get('labels')
    if labels and len(labels) == int(getattr(src.model, 'num_classes', 0) or 0):
        config['label_names'] = list(labels)
    return config


def build_hub_folder(src: Source, out_dir: str, repo_id: str, *, force: bool = False,
                     report_dir: Optional[str] = None, with_onnx: bool = False,
                     onnx_options: Optional[Dict[str, Any]] = None, dataset: Optional[str] = None,
                     base_model: Optional[str] = None, usage_name: Optional[str] = None) -> Path:
    """Write the Hub folder of ``src`` to ``out_dir`` whole or not at all (``atomic_folder``); returns it."""
    from .hub import write_weights_folder
    from .model_card import CardInfo, build_card
    from .outputs import atomic_folder, write_json, write_text
    check_repo_id(repo_id)
    model, arch = src.model.eval(), src.arch
    dataset = _dataset(src, dataset)
    _check_onnx_options(with_onnx, onnx_options)
    if with_onnx:
        _check_calib_data((onnx_options or {}).get('calib_data'))
    report = read_report(report_dir, arch, int(getattr(model, 'num_classes', 0) or 0)) if report_dir else None
    input_size = tuple(model.pretrained_cfg.get('input_size') or (3, 224, 224))
    params = sum(p.numel() for p in model.parameters())
    metrics = dict(src.metrics or {})
    if metrics and dataset:
        metrics.setdefault('dataset', dataset)
    if metrics or src.training:
        metrics.update(params=params, **({'training': src.training} if src.training else {}),
                       **({'weights': src.weights} if src.weights else {}))
    with atomic_folder(out_dir, force=force) as tmp:
        write_weights_folder(model, tmp, _hub_config(src, dataset))
        onnx_files = _export_onnx(model, repo_id, tmp, arch, onnx_options or {}) if with_onnx else []
        if report is not None and os.path.isfile(os.path.join(report_dir, 'throughput.png')):
            from .outputs import write_bytes
            write_bytes(Path(report_dir, 'throughput.png').read_bytes(), os.path.join(tmp, 'throughput.png'))
        png = 'throughput.png' if os.path.isfile(os.path.join(tmp, 'throughput.png')) else None
        card = build_card(CardInfo(
            repo_id=repo_id, arch=arch, tag=src.tag, license=model.pretrained_cfg.get('license') or 'apache-2.0',
            params=params, gmacs=_flops(model, input_size), input_size=input_size, dataset=dataset,
            metrics=metrics if metrics.get('top1') is not None else None, training=src.training, weights=src.weights,
            base_model=base_model or src.base_model, report=report, onnx_files=onnx_files,
            usage_name=usage_name or f'hf-hub:{repo_id}'))
        text = str(card)
        if report is not None and png is None:
            text = text.replace('\n![throughput vs batch size](throughput.png)', '')
        write_text(text + ('' if text.endswith('\n') else '\n'), os.path.join(tmp, 'README.md'))
        if metrics:
            write_json(metrics, os.path.join(tmp, 'metrics.json'))
        check_publishable(tmp)
    return Path(out_dir)


# ----------------------------------------------------------------------------------------------- the upload
def _hub_error(e: BaseException, repo_id: str) -> str:
    from huggingface_hub import errors
    if isinstance(e, errors.OfflineModeIsEnabled):
        return 'cannot reach the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE=1)'
    status = getattr(getattr(e, 'response', None), 'status_code', None)
    first = (str(e).splitlines() or [type(e).__name__])[0][:300]
    if status in (401, 403):
        return f'the Hub refused access to {repo_id} (HTTP {status}): check the token\'s write permission; {first}'
    if isinstance(e, errors.HfHubHTTPError):
        return f'the Hub rejected the request for {repo_id}: {first}'
    return f'cannot reach the Hugging Face Hub ({type(e).__name__}): {first}'


@dataclass
class HubTarget:
    """A Hub repo checked for publishing: the client, the token (never printed) and whether the repo exists."""
    api: Any
    token: str
    repo_id: str
    exists: bool
    private: bool = False
    overwrite: bool = False
    create_pr: bool = False


def _network_errors() -> tuple:
    """What a Hub call raises for a refusal or an unreachable Hub (huggingface_hub's errors are ``OSError`` or,
    from 1.0, the HTTP client's ``HTTPError``; a malformed id is a ``ValueError``)."""
    from huggingface_hub import errors
    kinds = [OSError, ValueError]
    http = getattr(errors, 'HTTPError', None)
    if http is None:
        with contextlib.suppress(ImportError):
            import httpx
            http = httpx.HTTPError
    return tuple(kinds + ([http] if http is not None else []))


def check_hub_target(repo_id: str, *, private: bool = False, overwrite: bool = False,
                     create_pr: bool = False) -> HubTarget:
    """Check the token and the repo's state before anything is built or uploaded.

    An existing repo needs ``overwrite`` (its files become exactly the folder's) or ``create_pr``; ``private`` is
    refused for an existing public repo (publishing would make the files public).
    """
    from huggingface_hub import HfApi, get_token
    check_repo_id(repo_id)
    if overwrite and create_pr:
        raise PublishError('--overwrite and --create-pr exclude each other')
    token = get_token()
    if not token:
        raise PublishError('no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was uploaded)')
    api = HfApi()
    try:
        exists = api.repo_exists(repo_id, repo_type='model', token=token)
        if exists and not (overwrite or create_pr):
            raise PublishError(f'{repo_id} already exists on the Hub; pass --overwrite to replace its files in one '
                               'commit, or --create-pr to propose the change as a pull request')
        if not exists and create_pr:
            raise PublishError(f'--create-pr: {repo_id} does not exist yet; publish it without --create-pr first')
        if exists and private and not getattr(api.model_info(repo_id, token=token), 'private', False):
            raise PublishError(f'--private: {repo_id} exists and is public; change its visibility on the Hub first')
    except _network_errors() as e:
        raise PublishError(_hub_error(e, repo_id) + ' (nothing was uploaded)') from None
    return HubTarget(api, token, repo_id, bool(exists), private, overwrite, create_pr)


def upload_hub_folder(folder: str, target: HubTarget, commit_message: Optional[str] = None) -> str:
    """Upload ``folder`` to ``target`` in one commit; returns the commit (or pull request) URL.

    A new repo is created (``private`` honoured) and deleted again if the upload fails, so no repo claims to be
    complete when it is not.
    """
    api, token, repo_id = target.api, target.token, target.repo_id
    network = _network_errors()
    created = False
    if not target.exists:
        try:
            api.create_repo(repo_id, repo_type='model', private=target.private, exist_ok=False, token=token)
        except network as e:
            raise PublishError(_hub_error(e, repo_id) + ' (nothing was uploaded)') from None
        created = True
    try:
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type='model', token=token,
                                 commit_message=commit_message or f'Publish {repo_id} with timm-recal',
                                 create_pr=target.create_pr, delete_patterns=['*'] if target.exists else None)
    except BaseException as e:
        note = ''
        if created:
            try:
                api.delete_repo(repo_id, repo_type='model', token=token, missing_ok=True)
                note = f'; the new repo {repo_id} was deleted again'
            except network:
                note = f'; the new repo {repo_id} could not be deleted: delete it on the Hub'
        if isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt(f'interrupted during the upload{note}') from None
        if not isinstance(e, network):
            raise
        raise PublishError(_hub_error(e, repo_id) + note) from None
    return str(getattr(info, 'pr_url', None) or getattr(info, 'commit_url', None) or info)


@contextlib.contextmanager
def _staging_folder() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix='timm_recal_publish_')
    try:
        yield os.path.join(root, 'repo')
    finally:
        shutil.rmtree(root, ignore_errors=True)


def publish(source: str, repo_id: Optional[str] = None, *, checkpoint: Optional[str] = None,
            tag: Optional[str] = None, output: Optional[str] = None, dry_run: bool = False, force: bool = False,
            metrics: Optional[str] = None, train_config: Optional[str] = None, report: Optional[str] = None,
            with_onnx: bool = False, onnx_options: Optional[Dict[str, Any]] = None, dataset: Optional[str] = None,
            base_model: Optional[str] = None, private: bool = False, overwrite: bool = False,
            create_pr: bool = False, commit_message: Optional[str] = None) -> Dict[str, Any]:
    """Build the Hub folder of ``source`` and (unless ``dry_run``) upload it; see the module docstring."""
    from .hub import hub_repo_id
    from .outputs import OutputExistsError, check_writable_folder
    if repo_id is not None:
        check_repo_id(repo_id)
    if tag is not None:
        check_tag(tag)
    if base_model is not None:
        check_repo_id(base_model)
    if overwrite and create_pr:
        raise PublishError('--overwrite and --create-pr exclude each other')
    if dry_run:  # nothing reads the upload's options then: refuse them rather than drop them silently
        given = [flag for flag, value in (('--private', private), ('--overwrite', overwrite),
                                          ('--create-pr', create_pr), ('--commit-message', commit_message)) if value]
        if given:
            raise PublishError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to the upload, and "
                               '--dry-run uploads nothing; leave ' + ('it' if len(given) == 1 else 'them') + ' out')
    if output and os.path.exists(output) and not force:
        raise OutputExistsError(f'{output} exists; pass --force to replace it')
    if output:
        check_writable_folder(os.path.dirname(os.path.abspath(output)))
    if report and not os.path.isfile(os.path.join(report, 'report.json')):
        read_report(report, '')  # the folder's own error message
    _check_onnx_options(with_onnx, onnx_options)
    if with_onnx:  # before the export, which takes a while
        _check_calib_data((onnx_options or {}).get('calib_data'))
    src = load_source(source, checkpoint, tag)
    if metrics:
        src.metrics = metrics_from_file(metrics, src.arch)
    if train_config:
        src.training = training_from_config(train_config, _input_size(src.model), src.arch,
                                            int(getattr(src.model, 'num_classes', 0) or 0) or None)
    _dataset(src, dataset)  # a --dataset that contradicts the metrics or the tag, before anything is written
    if repo_id is None:
        if not src.tag:
            raise PublishError(f'{src.arch} has no pretrained tag to name the repo: give --repo-id ORG/NAME or --tag')
        repo_id = hub_repo_id(src.arch, src.tag)
        if not _REPO_ID.match(repo_id):
            raise PublishError(f'{repo_id}, the repo name of {src.arch} and its tag {src.tag!r}, is not a valid Hub '
                               "name (letters, digits, '-', '_', '.'; at most 96 characters); give --repo-id ORG/NAME")
    if report:
        read_report(report, src.arch, int(getattr(src.model, 'num_classes', 0) or 0))
    usage = f'{src.arch}.{src.tag}' if src.tag and repo_id == hub_repo_id(src.arch, src.tag) else None
    if output is None and dry_run:
        if not src.tag:
            raise PublishError('give the folder to write with -o DIR')
        output = os.path.join('weights', f'{src.arch}.{src.tag}')
        if os.path.exists(output) and not force:
            raise OutputExistsError(f'{output} exists; pass --force to replace it')
    options = dict(force=force, report_dir=report, with_onnx=with_onnx, onnx_options=onnx_options,
                   dataset=dataset, base_model=base_model, usage_name=usage)
    if dry_run:
        folder = build_hub_folder(src, output, repo_id, **options)
        return {'repo_id': repo_id, 'folder': str(folder), 'uploaded': False}
    target = check_hub_target(repo_id, private=private, overwrite=overwrite, create_pr=create_pr)
    if output:  # the local copy is whole before the upload starts, and stays whole if it fails
        folder = build_hub_folder(src, output, repo_id, **options)
        url = upload_hub_folder(str(folder), target, commit_message)
        return {'repo_id': repo_id, 'folder': str(folder), 'uploaded': True, 'url': url}
    with _staging_folder() as staging:
        build_hub_folder(src, staging, repo_id, **{**options, 'force': False})
        url = upload_hub_folder(staging, target, commit_message)
    return {'repo_id': repo_id, 'folder': None, 'uploaded': True, 'url': url}


# ------------------------------------------------------------------------------------------------------ CLI
def _add_folder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('source', metavar='SOURCE',
                   help='model with a pretrained tag (ARCH.TAG), hf-hub:ORG/NAME, a weights folder (save_for_hf '
                        'layout, or local-dir:FOLDER), a `timm-recal train` run folder, or a model name with '
                        '--checkpoint')
    p.add_argument('--checkpoint', metavar='PATH',
                   help='weights for a model name: state dict (.pth/.safetensors), train.py checkpoint or '
                        'save_for_hf folder')
    p.add_argument('--tag', help='pretrained tag of the weights (default: the source\'s, cifar10 for a run)')
    p.add_argument('--repo-id', metavar='ORG/NAME', help='Hub repo (default timm-recal/ARCH.TAG)')
    p.add_argument('-o', '--output', metavar='DIR',
                   help='write the Hub folder here (with --dry-run default weights/ARCH.TAG)')
    p.add_argument('--force', action='store_true', help='replace an existing -o folder (local only)')
    p.add_argument('--metrics', metavar='JSON', help='top-1/top-5 from `timm-recal validate -o` JSON or metrics.json')
    p.add_argument('--train-config', metavar='YAML', help='train.py YAML config the weights were trained with')
    p.add_argument('--report', metavar='DIR', help='a `timm-recal pipeline -o` folder of this model: its deploy '
                                                   'numbers and throughput.png go into the card')
    p.add_argument('--dataset', help='data set of the weights (default: from the tag), e.g. cifar10, imagenet-1k')
    p.add_argument('--base-model', metavar='ORG/NAME', help='Hub repo the weights were fine-tuned from')
    g = p.add_argument_group('ONNX files')
    g.add_argument('--with-onnx', action='store_true', help='add onnx/model.onnx (FP32) and onnx/model_int8.onnx')
    # defaults None: an ONNX option given without --with-onnx is refused (see _check_onnx_options)
    g.add_argument('--calib-data', metavar='DIR', help='INT8 calibration images (default: the bundled samples)')
    g.add_argument('--calib-images', type=_positive_int, metavar='N',
                   help=f"calibration images (default {_ONNX_DEFAULTS['calib_images']})")
    g.add_argument('--calib-method', choices=['minmax', 'percentile', 'entropy'],
                   help=f"calibration method (default {_ONNX_DEFAULTS['calib_method']})")
    g.add_argument('--fp32-layers', type=_non_negative_int, metavar='K',
                   help='keep the K nodes most sensitive to quantization in float (default 0)')


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    """``timm-recal publish``."""
    p = sub.add_parser('publish', help='publish weights, model card and deploy numbers to the Hugging Face Hub',
                       description='Write a Hub folder (model.safetensors, config.json, README.md model card, '
                                   'metrics.json) and upload it in one commit. Needs the [hub] extra.')
    _add_folder_arguments(p)
    g = p.add_argument_group('upload')
    g.add_argument('--dry-run', action='store_true', help='write the folder (-o) and upload nothing')
    x = g.add_mutually_exclusive_group()
    x.add_argument('--overwrite', action='store_true', help='replace the files of an existing Hub repo')
    x.add_argument('--create-pr', action='store_true', help='propose the change to an existing repo as a PR')
    g.add_argument('--private', action='store_true', help='create the repo private (refused for a public repo)')
    g.add_argument('--commit-message')
    p.set_defaults(func=run_publish, dry_run_only=False)
    return p


def add_package_weights_parser(sub) -> argparse.ArgumentParser:
    """``timm-recal package-weights``: the older name of ``publish --dry-run``."""
    p = sub.add_parser('package-weights', help='write a Hub-ready weights folder + model card (publish --dry-run)',
                       description='`timm-recal publish --dry-run`: write the Hub folder, upload nothing.')
    _add_folder_arguments(p)
    p.set_defaults(func=run_publish, dry_run_only=True)
    return p


def run_publish(args: argparse.Namespace) -> int:
    dry_run = args.dry_run_only or args.dry_run
    result = publish(
        args.source, args.repo_id, checkpoint=args.checkpoint, tag=args.tag, output=args.output, dry_run=dry_run,
        force=args.force, metrics=args.metrics, train_config=args.train_config, report=args.report,
        with_onnx=args.with_onnx, dataset=args.dataset, base_model=args.base_model,
        onnx_options=dict(calib_data=args.calib_data, calib_images=args.calib_images,
                          calib_method=args.calib_method, fp32_layers=args.fp32_layers),
        private=getattr(args, 'private', False), overwrite=getattr(args, 'overwrite', False),
        create_pr=getattr(args, 'create_pr', False), commit_message=getattr(args, 'commit_message', None))
    if result['uploaded']:
        print(f"published {result['repo_id']}: {result['url']}")
    else:
        print(f"wrote {result['folder']} (for {result['repo_id']}; nothing uploaded)")
    return 0
