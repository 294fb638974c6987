"""train_configs/: every YAML is a config for timm's own ``train.py --config FILE`` (train.py's option names and
value kinds), names a registered model, loads into ``timm-recal train`` and says what it reproduces; the recipes
hold the papers' hyper-parameters.

train.py's options come from ``tests/data/timm_train_py_dests.txt`` (no network, no timm checkout needed). With
``TIMM_TRAIN_PY=/path/to/pytorch-image-models/train.py`` the list is re-extracted and compared, and every config
is also parsed by train.py's own argument parser. Regenerate the list with
``python tests/test_train_configs.py --extract /path/to/train.py > tests/data/timm_train_py_dests.txt``.
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import sys
from dataclasses import fields
from typing import Any, Dict, NamedTuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, 'train_configs')
DESTS_FILE = os.path.join(REPO, 'tests', 'data', 'timm_train_py_dests.txt')
SWEEP_DIR = os.path.join(CONFIG_DIR, 'sweeps')
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(CONFIG_DIR, '**', '*.yaml'), recursive=True)
    if not p.startswith(SWEEP_DIR + os.sep))
IDS = [os.path.relpath(p, CONFIG_DIR) for p in CONFIGS]

#: the short CPU schedules of the shipped weights: not paper recipes, so their headers say so
SHORT_CPU = {f'cifar10/{p}shufflenetv2_x0_5_short_cpu.yaml' for p in ('', 'se_', 'sle_', 'ab_')}


class Option(NamedTuple):
    kind: str  # bool | int | float | str | kwargs
    nargs: str  # '-' (one value), '?', '*', '+' or a count
    default: Any


# --- train.py option extraction --------------------------------------------------------------------------------
def _import_train_py(path: str):
    """Import train.py as a module: its parsers are built at import, ``main()`` only runs as a script."""
    spec = importlib.util.spec_from_file_location('_timm_train_py', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kind(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return 'bool'
    if type(action).__name__ == 'ParseKwargs':
        return 'kwargs'
    if action.type in (int, float):
        return action.type.__name__
    if action.type in (None, str):
        return 'str'
    raise ValueError(f"train.py option {action.dest!r} has an unexpected type {action.type!r}")


def extract_train_py_options(path: str) -> Dict[str, Option]:
    """The ``dest`` of every argument of train.py's two parsers (the YAML keys), with kind, nargs and default."""
    module = _import_train_py(path)
    options = {}
    for parser in (module.config_parser, module.parser):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            default = list(action.default) if isinstance(action.default, tuple) else action.default
            nargs = '-' if action.nargs is None else str(action.nargs)
            options[action.dest] = Option(_kind(action), nargs, default)
    return options


def format_options(options: Dict[str, Option], header: str) -> str:
    lines = ['# ' + h for h in header.splitlines()]
    lines += ['\t'.join((d, o.kind, o.nargs, json.dumps(o.default))) for d, o in sorted(options.items())]
    return '\n'.join(lines) + '\n'


def read_options(path: str = DESTS_FILE) -> Dict[str, Option]:
    options = {}
    with open(path) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            dest, kind, nargs, default = line.rstrip('\n').split('\t')
            options[dest] = Option(kind, nargs, json.loads(default))
    return options


TRAIN_PY = read_options() if os.path.isfile(DESTS_FILE) else {}  # (absent only while regenerating it)


def _load(path: str) -> Dict[str, Any]:
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def _header(path: str) -> str:
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line[1:].strip())
    return '\n'.join(lines)


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == 'bool':
        return isinstance(value, bool)
    if kind == 'int':
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == 'float':  # a YAML `1e-3` is a string: train.py would convert it, a number is still required here
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'kwargs':
        return isinstance(value, dict)
    return isinstance(value, str)


def check_value(dest: str, value: Any) -> None:
    """A YAML value of the shape and kind train.py's argparse gives that option."""
    opt = TRAIN_PY[dest]
    if value is None:
        assert opt.default is None, f"{dest}: null, but train.py's default is {opt.default!r}"
        return
    if opt.nargs in ('-', '?') or opt.kind in ('kwargs', 'bool'):
        assert _kind_ok(opt.kind, value), f"{dest}: {value!r} is not a {opt.kind}"
        return
    assert isinstance(value, list), f"{dest}: train.py takes a list (nargs {opt.nargs}), got {value!r}"
    if opt.nargs.isdigit():
        assert len(value) == int(opt.nargs), f"{dest}: needs {opt.nargs} values, got {value!r}"
    elif opt.nargs == '+':
        assert value, f"{dest}: needs at least one value"
    bad = [v for v in value if not _kind_ok(opt.kind, v)]
    assert not bad, f"{dest}: {bad!r} are not {opt.kind}s"


# --- the committed option list ---------------------------------------------------------------------------------
def test_dests_file_names_its_source_and_has_the_core_options():
    header = _header(DESTS_FILE)
    assert 'huggingface/pytorch-image-models' in header and 'commit' in header
    for dest in ('model', 'model_kwargs', 'device_modules', 'batch_size', 'lr', 'lr_base', 'lr_base_size',
                 'lr_base_scale', 'opt', 'sched', 'decay_milestones', 'scale', 'ratio', 'hflip', 'smoothing'):
        assert dest in TRAIN_PY, dest
    # the shapes the checks below rely on
    assert TRAIN_PY['device_modules'] == Option('str', '+', None)
    assert TRAIN_PY['decay_milestones'].kind == 'int' and TRAIN_PY['decay_milestones'].nargs == '+'
    assert TRAIN_PY['model_kwargs'].kind == 'kwargs'
    assert TRAIN_PY['channels_last'].kind == 'bool'
    with pytest.raises(AssertionError):
        check_value('lr', '1e-3')  # PyYAML reads 1e-3 as a string: a config must write 1.0e-3
    with pytest.raises(AssertionError):
        check_value('scale', 0.5)


@pytest.mark.skipif(not os.environ.get('TIMM_TRAIN_PY'), reason='set TIMM_TRAIN_PY to a timm train.py to compare')
def test_dests_file_matches_train_py():
    assert extract_train_py_options(os.environ['TIMM_TRAIN_PY']) == TRAIN_PY


@pytest.fixture(scope='module')
def train_py_parser():
    path = os.environ.get('TIMM_TRAIN_PY')
    if not path:
        pytest.skip('set TIMM_TRAIN_PY to a timm train.py to parse the configs with it')
    return _import_train_py(path).parser


# --- every config ----------------------------------------------------------------------------------------------
def test_configs_found():
    groups = {os.path.relpath(p, CONFIG_DIR).split(os.sep)[0] for p in CONFIGS}
    assert {'cifar10', 'cifar100', 'svhn', 'imagenet'} <= groups
    assert len(CONFIGS) >= 70


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_is_a_train_py_yaml(path):
    cfg = _load(path)
    assert isinstance(cfg, dict) and cfg, 'a mapping of train.py options'
    unknown = sorted(set(cfg) - set(TRAIN_PY))
    assert not unknown, f"not train.py option names: {unknown}"
    assert 'config' not in cfg and 'data' not in cfg, 'data_dir, not the positional; no nested config'
    for dest, value in cfg.items():
        check_value(dest, value)
    assert 'timm_recal' in cfg['device_modules'], 'train.py must import the plugin'


def _model_builds():
    """One (model, num_classes, model_kwargs) per distinct combination the configs use."""
    seen = {}
    for path, ident in zip(CONFIGS, IDS):
        cfg = _load(path)
        key = json.dumps([cfg.get('model'), cfg.get('num_classes'), cfg.get('model_kwargs', {})], sort_keys=True)
        seen.setdefault(key, ident)
    return sorted((ident, json.loads(key)) for key, ident in seen.items())


@pytest.mark.parametrize('ident,build', _model_builds(), ids=[i for i, _ in _model_builds()])
def test_config_model_is_registered_and_builds(ident, build):
    """The model is registered (device_modules: [timm_recal] resolves it) and accepts the config's model_kwargs
    (init schemes) and num_classes; built on the meta device: no memory, no init cost, no weight download."""
    import timm
    import torch
    import timm_recal  # noqa: F401
    model_name, num_classes, kwargs = build
    assert timm.is_model(model_name), f"{ident}: {model_name} is not a registered timm model"
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)
    assert model.num_classes == num_classes


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_loads_in_timm_recal_train(path):
    from timm_recal.training.config import load_config, resolve_lr
    cfg = load_config(path)
    assert cfg.model == _load(path)['model']
    lr = resolve_lr(cfg)
    assert math.isfinite(lr) and lr > 0


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_header_says_what_it_reproduces(path):
    header = _header(path)
    assert header, 'a comment header stating what the file reproduces'
    if os.path.relpath(path, CONFIG_DIR) in SHORT_CPU:
        assert 'Not a paper recipe' in header and '89.97' in header
        return
    lines = header.splitlines()
    assert any(l.startswith('Reproduces: ') for l in lines), 'a "Reproduces:" line'
    paper = next((l for l in lines if l.startswith('Paper: ')), '')
    assert paper, 'a "Paper:" line with the published number'
    assert any(c.isdigit() for c in paper) or 'no published number' in paper


def _differing_defaults():
    """Options whose default differs between train.py and `timm-recal train`: a config must set them, or the two
    trainers run different recipes from the same file."""
    from timm_recal.training.config import TrainConfig
    out = {}
    for f in fields(TrainConfig):
        if f.name not in TRAIN_PY or f.name in ('device', 'workers', 'output', 'resume', 'amp_dtype'):
            continue  # where and how fast to run, not what to train ('' = train.py's float16 on CUDA)
        ours = f.default_factory() if callable(f.default_factory) else f.default
        ours = list(ours) if isinstance(ours, tuple) else ours
        theirs = TRAIN_PY[f.name].default
        same = ours == theirs or (isinstance(ours, float) and isinstance(theirs, float) and math.isclose(ours, theirs))
        if not same:
            out[f.name] = (ours, theirs)
    return out


def test_differing_defaults_are_the_expected_ones():
    diff = _differing_defaults()
    # the recipe-relevant train.py defaults that are not ours (label smoothing 0.1, 5 warm-up epochs, ...)
    for name in ('smoothing', 'warmup_epochs', 'weight_decay', 'val_split', 'epochs'):
        assert name in diff, name
    assert 'lr' not in diff and 'color_jitter' not in diff and 'lr_base' not in diff


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_sets_every_option_whose_default_differs(path):
    cfg = _load(path)
    missing = {k: v for k, v in _differing_defaults().items() if k not in cfg}
    aug_keys = {'color_jitter', 'train_interpolation'}  # train.py's timm transforms read them for every input
    missing.update({k: None for k in aug_keys if k not in cfg and not cfg.get('no_aug')})
    assert not missing, f"set explicitly (ours vs train.py default): {missing}"


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_parses_with_train_py(path, train_py_parser):
    cfg = _load(path)
    saved = {a: a.default for a in train_py_parser._actions}, dict(train_py_parser._defaults)
    try:
        train_py_parser.set_defaults(**cfg)
        args = train_py_parser.parse_args([])
    finally:
        for action, default in saved[0].items():
            action.default = default
        train_py_parser._defaults.clear()
        train_py_parser._defaults.update(saved[1])
    for k, v in cfg.items():
        assert getattr(args, k) == v


# --- the recipes -----------------------------------------------------------------------------------------------
_CIFAR_CROP = {'scale': [0.75, 1.0], 'hflip': 0.5, 'color_jitter': 0.0}
_SINGH = dict(opt='momentum', momentum=0.9, lr=0.1, weight_decay=1e-4, batch_size=128, epochs=164,
              sched='multistep', decay_milestones=[81, 122], decay_rate=0.1, smoothing=0.0, **_CIFAR_CROP)
_WRN = dict(opt='sgd', momentum=0.9, lr=0.1, weight_decay=5e-4, batch_size=128, epochs=200, sched='multistep',
            decay_milestones=[60, 120, 160], decay_rate=0.2, warmup_epochs=0, smoothing=0.0, **_CIFAR_CROP)
_HU = dict(opt='momentum', momentum=0.9, lr_base=0.6, lr_base_size=1024, lr_base_scale='linear', batch_size=128,
           epochs=100, sched='step', decay_epochs=30, decay_rate=0.1, warmup_epochs=0, smoothing=0.0,
           img_size=224, scale=[0.08, 1.0], hflip=0.5, crop_pct=0.875, num_classes=1000)
_MAHENDRAN_224 = dict(img_size=224, batch_size=32, scale=[0.08, 1.0], hflip=0.5, color_jitter=0.0)

#: glob under train_configs/ -> (number of files, the options each must hold)
RECIPES = {
    'cifar10/*shufflenetv2_cifar.yaml': (4, dict(
        opt='adam', opt_betas=[0.9, 0.999], lr=1e-3, batch_size=64, weight_decay=1e-4, sched='constant',
        epochs=100, warmup_epochs=0, smoothing=0.0, model_kwargs={'conv_init': 'kaiming_fan_out'}, **_CIFAR_CROP)),
    'cifar10/*resnet56_cifar.yaml': (4, dict(_SINGH, warmup_epochs=0, num_classes=10)),
    'cifar10/*resnet1[16][04]_cifar.yaml': (8, dict(_SINGH, warmup_epochs=1, warmup_lr=0.01, num_classes=10)),
    'cifar100/*resnet56_cifar.yaml': (4, dict(_SINGH, warmup_epochs=0, num_classes=100)),
    'cifar100/*resnet1[16][04]_cifar.yaml': (8, dict(_SINGH, warmup_epochs=1, warmup_lr=0.01, num_classes=100)),
    'cifar10/*wrn22_10_cifar.yaml': (4, dict(_WRN, num_classes=10)),
    'cifar100/*wrn22_10_cifar.yaml': (4, dict(_WRN, num_classes=100)),
    'cifar10/*resnet18.yaml': (6, dict(_MAHENDRAN_224, num_classes=10, crop_pct=1.0)),
    'cifar100/*resnet18.yaml': (6, dict(_MAHENDRAN_224, num_classes=100, crop_pct=0.875)),
    'svhn/*resnet18.yaml': (6, dict(_MAHENDRAN_224, num_classes=10)),
    'cifar10/*cnn3.yaml': (6, dict(opt='adadelta', lr=1.0, batch_size=64, epochs=50, sched='step', decay_epochs=1,
                                   decay_rate=0.7, warmup_epochs=0, smoothing=0.0, num_classes=10)),
    'imagenet/*resnet50.yaml': (9, _HU),
    'imagenet/*shufflenetv2.yaml': (4, dict(opt='momentum', lr_base=0.1, lr_base_size=256, batch_size=32,
                                            sched='plateau', decay_rate=0.1, num_classes=1000)),
    'imagenet/finetune/*_warm.yaml': (2, dict(pretrained=True, epochs=10, num_classes=1000)),
}


@pytest.mark.parametrize('pattern', sorted(RECIPES))
def test_recipe(pattern):
    count, expected = RECIPES[pattern]
    paths = sorted(glob.glob(os.path.join(CONFIG_DIR, pattern)))
    assert len(paths) == count, [os.path.basename(p) for p in paths]
    for path in paths:
        cfg = _load(path)
        wrong = {k: (cfg.get(k), v) for k, v in expected.items() if cfg.get(k) != v}
        assert not wrong, f"{os.path.relpath(path, CONFIG_DIR)}: (config, recipe) {wrong}"


def test_every_paper_variant_has_a_config():
    names = {os.path.relpath(p, CONFIG_DIR) for p in CONFIGS}
    gates = ('', 'se_', 'ab_', 'abplus_')
    for ds in ('cifar10', 'cifar100'):
        for arch in ('resnet56', 'resnet110', 'resnet164', 'wrn22_10'):
            assert {f'{ds}/{g}{arch}_cifar.yaml' for g in gates} <= names
    mahendran = ('', 'se_', 'slowsq_', 'slowex_', 'slowsqex_', 'bump_')
    for ds in ('cifar10', 'cifar100', 'svhn'):
        assert {f'{ds}/{g}resnet18.yaml' for g in mahendran} <= names
    assert {f'cifar10/{g}cnn3.yaml' for g in mahendran} <= names
    hu = ('resnet50', 'seresnet50', 'ab_resnet50', 'abplus_resnet50', 'se_pre_resnet50', 'se_post_resnet50',
          'se_id_resnet50', 'se3x3_resnet50', 'nosqueeze_resnet50', 'shufflenetv2', 'se_shufflenetv2')
    assert {f'imagenet/{m}.yaml' for m in hu} <= names


def test_file_name_is_the_model_name():
    for path in CONFIGS:
        name = os.path.basename(path)[:-len('.yaml')]
        model = _load(path)['model']
        known = os.path.relpath(path, CONFIG_DIR) in SHORT_CPU  # <model minus _cifar>_short_cpu
        assert name in (model, f'{model}_warm') or known, (name, model)


@pytest.mark.parametrize('gpus,nodes,per_gpu,lr', [
    (8, 1, 128, 0.6), (8, 2, 64, 0.6), (4, 1, 128, 0.3), (1, 1, 128, 0.075)])
def test_imagenet_lr_follows_the_global_batch(gpus, nodes, per_gpu, lr):
    """train.py's rule, lr = lr_base * global batch / lr_base_size: SE's 0.6 at 1024 exactly when the global
    batch is 1024, whatever the split over processes."""
    from timm_recal.training.config import load_config, resolve_lr
    cfg = load_config(os.path.join(CONFIG_DIR, 'imagenet', 'seresnet50.yaml'), {'batch_size': per_gpu})
    assert cfg.lr is None, 'lr unset: train.py derives it from lr_base'
    assert resolve_lr(cfg, world_size=gpus * nodes) == pytest.approx(lr)


def test_resolve_lr_is_train_py_rule():
    from timm_recal.training.config import load_config, resolve_lr
    sgd = load_config(None, {'opt': 'momentum', 'lr_base': 0.1, 'lr_base_size': 256, 'batch_size': 64})
    assert resolve_lr(sgd, world_size=2) == pytest.approx(0.05)  # linear
    ada = load_config(None, {'opt': 'adamw', 'lr_base': 1e-3, 'lr_base_size': 256, 'batch_size': 64})
    assert resolve_lr(ada, world_size=1) == pytest.approx(1e-3 * 0.5)  # 'ada' in the name: sqrt(64 / 256)
    explicit = load_config(None, {'lr': 0.3, 'batch_size': 4096})
    assert resolve_lr(explicit, world_size=64) == 0.3
    with pytest.raises(ValueError, match='lr_base_scale'):
        load_config(None, {'lr_base_scale': 'cubic'})


def test_wang_yuan_sweep_is_their_grid():
    from timm_recal.training.sweep import load_sweep
    spec = load_sweep(os.path.join(SWEEP_DIR, 'cifar10_shufflenetv2_wang_yuan.yaml'))
    assert spec.models == ['shufflenetv2_cifar', 'se_shufflenetv2_cifar', 'sle_shufflenetv2_cifar']
    assert sorted(spec.lrs) == [1e-4, 1e-3, 1e-2]
    assert sorted(spec.batch_sizes) == [32, 64, 128]
    assert os.path.samefile(spec.base_config, os.path.join(CONFIG_DIR, 'cifar10', 'shufflenetv2_cifar.yaml'))


def test_table1_sweep_is_the_four_nets_at_the_papers_cell_with_seeds():
    from timm_recal.training.sweep import cell_config, grid_cells, load_sweep
    spec = load_sweep(os.path.join(SWEEP_DIR, 'cifar10_shufflenetv2_table1.yaml'))
    cells = grid_cells(spec)
    assert {c.model for c in cells} == {f'{g}shufflenetv2_cifar' for g in ('', 'se_', 'sle_', 'ab_')}
    assert {(c.lr, c.batch_size) for c in cells} == {(1e-3, 64)} and len(cells) == 8
    cfgs = [cell_config(spec, c, 'out') for c in cells]
    assert sorted({cfg.seed for cfg in cfgs}) == [0, 1] and {cfg.epochs for cfg in cfgs} == {100}
    assert {cfg.opt for cfg in cfgs} == {'adam'}



# --- multi-GPU / multi-node launch -----------------------------------------------------------------------------
def _torchrun_args(cmd):
    """torchrun's own argument parser (no process is started)."""
    from torch.distributed.run import get_args_parser
    assert cmd[:3] == [sys.executable, '-m', 'torch.distributed.run']
    return get_args_parser().parse_args(cmd[3:])


def test_torchrun_command_single_node():
    from timm_recal.training.launch import format_command, torchrun_command
    config = os.path.join('train_configs', 'imagenet', 'seresnet50.yaml')
    cmd = torchrun_command(config, nproc_per_node=8, train_args=['--data-dir', '/data/imagenet'],
                           python=sys.executable)
    args = _torchrun_args(cmd)
    assert args.nproc_per_node == '8' and args.standalone and args.nnodes == '1'
    assert args.training_script == 'train.py'
    assert args.training_script_args == ['--config', config, '--data-dir', '/data/imagenet']
    assert torchrun_command(config, 8)[:1] == ['torchrun']
    line = format_command(torchrun_command(config, 8, train_args=['--output', 'runs/my run']))
    assert line.endswith("--config train_configs/imagenet/seresnet50.yaml --output 'runs/my run'")


@pytest.mark.parametrize('node_rank', [0, 1])
def test_torchrun_command_two_nodes(node_rank):
    from timm_recal.training.config import load_config, resolve_lr
    from timm_recal.training.launch import global_batch_size, torchrun_command
    config = os.path.join(CONFIG_DIR, 'imagenet', 'ab_resnet50.yaml')
    cmd = torchrun_command(config, nproc_per_node=8, nnodes=2, node_rank=node_rank, master_addr='10.1.2.3',
                           master_port=29400, train_args=['--batch-size', '64'], python=sys.executable)
    args = _torchrun_args(cmd)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ('2', node_rank, '8')
    assert (args.master_addr, args.master_port) == ('10.1.2.3', 29400) and not args.standalone
    # 2 nodes x 8 GPUs x 64 per GPU: the global batch of Hu et al., so exactly their lr
    cfg = load_config(config, {'batch_size': 64})
    world = int(args.nnodes) * int(args.nproc_per_node)
    assert global_batch_size(cfg, world) == 1024
    assert resolve_lr(cfg, world_size=world) == pytest.approx(0.6)


def test_torchrun_command_rejects_bad_layouts():
    from timm_recal.training.launch import torchrun_command
    with pytest.raises(ValueError, match='master_addr'):
        torchrun_command('c.yaml', 8, nnodes=2, node_rank=1)
    with pytest.raises(ValueError, match='node_rank'):
        torchrun_command('c.yaml', 8, nnodes=2, node_rank=2, master_addr='h')
    with pytest.raises(ValueError, match='nproc_per_node'):
        torchrun_command('c.yaml', 0)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description='extract the option dests of a timm train.py')
    ap.add_argument('--extract', required=True, metavar='TRAIN_PY')
    ap.add_argument('--source', default='huggingface/pytorch-image-models, commit <sha>',
                    help='where the train.py came from (written into the header)')
    a = ap.parse_args()
    print(format_options(extract_train_py_options(a.extract), (
        f"Option dests of timm's train.py (argparse `dest`s of its config parser and main parser): the keys a\n"
        f"`train.py --config FILE` YAML may use. Source: {a.source}.\n"
        f"Extracted by importing train.py as a module (its parsers are built at import; main() is not run):\n"
        f"  python tests/test_train_configs.py --extract /path/to/train.py --source '...' "
        f"> tests/data/timm_train_py_dests.txt\n"
        f"Columns (tab-separated): dest, kind (bool/int/float/str/kwargs), nargs ('-' = one value), default (JSON)."
    )), end='')
