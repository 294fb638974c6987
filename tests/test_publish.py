"""``timm-recal publish``: the Hub folder (weights, config, ModelCard card, deploy numbers, ONNX) and the upload.

Offline throughout (never a fake Hub server): folders load back through ``local-dir:`` and through a Hub cache
seeded in the Hub's layout (``hf-hub:``, ``HF_HUB_OFFLINE=1``); the upload runs against huggingface_hub's real
client with the network off, or with ``HfApi`` methods patched to record calls or raise the Hub's own errors.
"""
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import timm
import torch

import timm_recal  # noqa: F401
from timm_recal.cli import main
from timm_recal.hub import seed_hub_cache
from timm_recal.publish import PublishError, check_publishable, publish

from deploy_helpers import randomize_weights_
from hub_cache import offline_hub

pytest.importorskip('huggingface_hub')
pytest.importorskip('safetensors')

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / 'weights'
FOLDER_FILES = {'config.json', 'model.safetensors', 'README.md', 'metrics.json'}

#: one small model per family: ShuffleNetV2, CIFAR ResNet, gated timm ResNet, 3-layer CNN
FAMILIES = [('shufflenetv2_x0_5_cifar', 32), ('resnet20_cifar', 32), ('se_resnet18', 64), ('cnn3', 32)]


def _random_model(arch: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_weights_(timm.create_model(arch, **kwargs), seed=seed).eval()


def _checkpoint(tmp_path: Path, arch: str, fmt: str = 'train', **kwargs):
    """A random model saved as a train.py-style checkpoint (``train``) or a safetensors state dict."""
    model = _random_model(arch, **kwargs)
    if fmt == 'safetensors':
        from hub_cache import save_state_dict
        return model, str(save_state_dict(model.state_dict(), tmp_path / f'{arch}.safetensors'))
    path = tmp_path / f'{arch}.pth.tar'
    torch.save({'epoch': 3, 'arch': arch, 'state_dict': model.state_dict()}, path)
    return model, str(path)


def _validate_json(tmp_path: Path, arch: str, top1: float = 71.25, top5: float = 93.5) -> str:
    """What `timm-recal validate -o` writes (the keys publish reads), absolute data path included."""
    path = tmp_path / f'validate_{arch}.json'
    path.write_text(json.dumps({'top1': top1, 'top5': top5, 'n_images': 10000, 'architecture': arch,
                                'precision': 'fp32', 'data': str(tmp_path / 'data' / 'test'),
                                'runtime': {'runtime': 'pytorch'}}))
    return str(path)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------------------ dry run
@pytest.mark.parametrize('arch,size', FAMILIES, ids=[a for a, _ in FAMILIES])
def test_dry_run_folder_loads_back(arch, size, tmp_path, monkeypatch):
    """The folder loads through `local-dir:` and through a seeded Hub cache (`hf-hub:`) with equal weights;
    its card parses with ModelCard and carries the metrics in model-index."""
    from huggingface_hub import ModelCard
    ref, ckpt = _checkpoint(tmp_path, arch, num_classes=10)
    out = tmp_path / 'hub'
    repo_id = f'test-org/{arch}.cifar10'
    old = os.umask(0o027)  # files must follow the umask (not safetensors' 0600)
    try:
        result = publish(arch, repo_id, checkpoint=ckpt, tag='cifar10', output=str(out), dry_run=True,
                         metrics=_validate_json(tmp_path, arch))
    finally:
        os.umask(old)
    assert result == {'repo_id': repo_id, 'folder': str(out), 'uploaded': False}
    assert {p.name for p in out.iterdir()} == FOLDER_FILES
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.hub.')], 'temporary folder left behind'

    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = ref(x)
    local = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    _assert_same_weights(local, ref)
    torch.testing.assert_close(local(x), expected, rtol=0, atol=0)

    cache = tmp_path / 'cache'
    seed_hub_cache(cache, repo_id, out)
    offline_hub(monkeypatch, cache)
    hub = timm.create_model(f'hf-hub:{repo_id}', pretrained=True).eval()
    _assert_same_weights(hub, ref)
    torch.testing.assert_close(hub(x), expected, rtol=0, atol=0)

    card = ModelCard.load(out / 'README.md')
    assert card.data.library_name == 'timm' and card.data.license == 'apache-2.0'
    assert 'timm-recal' in card.data.tags and card.data.datasets == ['cifar10']
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results['accuracy'].metric_value == 71.25 and results['top-5-accuracy'].metric_value == 93.5
    assert results['accuracy'].dataset_type == 'cifar10' and card.data.model_name == repo_id
    assert card.text.index('import timm_recal') < card.text.index('import timm\n')
    assert f"timm.create_model('hf-hub:{repo_id}', pretrained=True)" in card.text
    assert '| 71.25 | 93.50 |' in card.text
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == arch and config['num_classes'] == 10 and len(config['label_names']) == 10
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['top1'] == 71.25 and metrics['params'] == sum(p.numel() for p in ref.parameters())
    assert str(tmp_path) not in (out / 'README.md').read_text() + (out / 'metrics.json').read_text()


def test_tagged_source_from_seeded_cache(tmp_path, monkeypatch):
    """SOURCE = a model with a pretrained tag resolves through the Hub cache; the card's usage names the tag."""
    folder = WEIGHTS / 'se_shufflenetv2_x0_5_cifar.cifar10'
    if not (folder / 'model.safetensors').is_file():
        pytest.skip('no trained weights in weights/')
    cache = tmp_path / 'cache'
    seed_hub_cache(cache, 'timm-recal/se_shufflenetv2_x0_5_cifar.cifar10', folder)
    offline_hub(monkeypatch, cache)
    out = tmp_path / 'out'
    result = publish('se_shufflenetv2_x0_5_cifar.cifar10', output=str(out), dry_run=True)
    assert result['repo_id'] == 'timm-recal/se_shufflenetv2_x0_5_cifar.cifar10'
    from safetensors.torch import load_file
    a, b = load_file(out / 'model.safetensors'), load_file(folder / 'model.safetensors')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    text = (out / 'README.md').read_text()
    assert "timm.create_model('se_shufflenetv2_x0_5_cifar.cifar10', pretrained=True)" in text
    assert json.loads((out / 'config.json').read_text())['pretrained_cfg']['tag'] == 'cifar10'


def test_warm_start_tag_names_its_base_model(tmp_path, monkeypatch):
    """Weights from a warm-start tag come from timm's base weights: the card says so (base_model, ImageNet-1k)."""
    from huggingface_hub import ModelCard
    from hub_cache import save_state_dict
    cache = tmp_path / 'cache'
    base = _random_model('resnet18')
    seed_hub_cache(cache, 'timm/resnet18.a1_in1k',
                   {'model.safetensors': save_state_dict(base.state_dict(), tmp_path / 'r18.safetensors')})
    offline_hub(monkeypatch, cache)
    out = tmp_path / 'out'
    publish('se_resnet18.a1_in1k_warm', 'test-org/se_resnet18-warm', output=str(out), dry_run=True)
    card = ModelCard.load(out / 'README.md')
    assert card.data.base_model == 'timm/resnet18.a1_in1k' and card.data.datasets == ['imagenet-1k']
    assert json.loads((out / 'config.json').read_text())['pretrained_cfg']['tag'] == 'a1_in1k_warm'
    x = torch.randn(1, 3, 64, 64)
    warm = timm.create_model('se_resnet18.a1_in1k_warm', pretrained=True).eval()
    local = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    sw, sl = warm.state_dict(), local.state_dict()
    assert sw.keys() == sl.keys()
    assert all(torch.equal(sw[k], sl[k]) for k in sw if '.se.' not in k)  # the gates' own init is random
    with torch.no_grad():
        torch.testing.assert_close(local(x), base.eval()(x), rtol=1e-4, atol=1e-4)  # warm start = the base net


def _fake_run(tmp_path: Path, arch: str = 'cnn3', done: int = 3, **options) -> Path:
    """A `timm-recal train` run folder with ``done`` epochs in summary.csv (the last at 45.50/88.25) and the
    checkpoint's ``args`` (3 epochs of cosine unless ``options`` say otherwise)."""
    import argparse
    model = _random_model(arch)
    run = tmp_path / 'run'
    run.mkdir()
    args = argparse.Namespace(**{**dict(model=arch, epochs=3, opt='sgd', momentum=0.9, lr=0.05, batch_size=64,
                                        weight_decay=5e-4, sched='cosine', warmup_epochs=1, lr_cycle_limit=1),
                                 **options})
    torch.save({'epoch': done - 1, 'arch': arch, 'state_dict': model.state_dict(), 'args': args},
               run / 'last.pth.tar')
    rows = [f'{e},2.0,2.0,{30.0 + 5 * e},{80.0 + 2 * e},0.05' for e in range(done - 1)]
    (run / 'summary.csv').write_text('\n'.join(['epoch,train_loss,eval_loss,eval_top1,eval_top5,lr', *rows,
                                               f'{done - 1},1.2,1.2,45.5,88.25,0.01']) + '\n')
    return run


def test_package_weights_is_publish_dry_run(tmp_path):
    """`package-weights RUN -o A` and `publish RUN --dry-run -o B` write the same folder."""
    run = _fake_run(tmp_path)
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert main(['package-weights', str(run), '-o', str(a)]) == 0
    assert main(['publish', str(run), '--dry-run', '-o', str(b)]) == 0
    for name in FOLDER_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    text = (a / 'README.md').read_text()
    assert '| 45.50 | 88.25 |' in text and '3 epochs, sgd (momentum 0.9), lr 0.05, batch 64' in text
    assert 'timm-recal/cnn3.cifar10' in text
    assert json.loads((a / 'metrics.json').read_text())['training']['epochs'] == 3


def test_existing_output_needs_force(tmp_path, capsys):
    run = _fake_run(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'stale.txt').write_text('old')
    assert main(['publish', str(run), '--dry-run', '-o', str(out)]) == 2
    assert 'exists' in capsys.readouterr().err and (out / 'stale.txt').is_file()
    assert main(['publish', str(run), '--dry-run', '-o', str(out), '--force']) == 0
    assert {p.name for p in out.iterdir()} == FOLDER_FILES  # the old contents are gone, not merged


def test_finished_step_run_with_a_cycle_limit_is_published_as_trained(tmp_path, capsys):
    """The epochs a run trains are what timm's scheduler runs: `sched: step` ignores lr_cycle_limit (only cosine,
    tanh and poly restart), so a finished 2-epoch step run with lr_cycle_limit 2 is published as 2 epochs and its
    card names no cycles; 2 cycles of a 2-epoch cosine schedule are 4 epochs, refused after 2, stated after 4."""
    run = _fake_run(tmp_path, done=2, epochs=2, sched='step', decay_epochs=1, warmup_epochs=0, lr_cycle_limit=2,
                    lr_cycle_decay=0.5)
    (run / 'results.json').write_text(json.dumps({'model': 'cnn3', 'epochs': 2}))  # what the trainer records
    out = tmp_path / 'out'
    assert main(['publish', str(run), '--dry-run', '-o', str(out)]) == 0
    text = (out / 'README.md').read_text()
    assert '- **Training:** 2 epochs, sgd (momentum 0.9)' in text and 'step schedule,' in text
    assert 'cycle' not in text and 'Trained 2 epochs' in text
    training = json.loads((out / 'metrics.json').read_text())['training']
    assert training['epochs'] == 2 and 'lr_cycle_limit' not in training and 'lr_cycle_decay' not in training

    for done in (2, 4):
        (tmp_path / f'cosine{done}').mkdir()
        cosine = _fake_run(tmp_path / f'cosine{done}', done=done, epochs=2, lr_cycle_limit=2, lr_cycle_decay=0.5)
        rc = main(['publish', str(cosine), '--dry-run', '-o', str(tmp_path / f'out{done}')])
        err = capsys.readouterr().err
        if done == 2:
            assert rc == 2 and 'only 2 of 4 epochs are done' in err and not (tmp_path / 'out2').exists()
        else:
            assert rc == 0, err
            text = (tmp_path / 'out4' / 'README.md').read_text()
            assert '- **Training:** 4 epochs' in text and 'cosine schedule in 2 cycles' in text


def _train_yaml(tmp_path: Path, arch: str, **options) -> str:
    """A `timm-recal train` config of ``arch`` with ``options`` (epochs 2, step schedule)."""
    import yaml
    path = tmp_path / f'{arch}_train.yaml'
    path.write_text(yaml.safe_dump({'model': arch, 'epochs': 2, 'sched': 'step', 'opt': 'sgd', 'lr': 0.05,
                                    **options}))
    return str(path)


@pytest.mark.parametrize('options,claim', [
    ({'no_aug': True, 'hflip': 0.0}, 'no augmentation'),
    ({'no_aug': True}, 'no augmentation'),
    ({'hflip': 0.0}, '4-pixel pad + random crop'),
    ({'hflip': 0.25}, '4-pixel pad + random crop + horizontal flip (p=0.25)'),
    ({}, '4-pixel pad + random crop + horizontal flip'),
    ({'img_size': 64}, '8-pixel pad + random crop + horizontal flip'),
], ids=['no_aug_no_flip', 'no_aug', 'no_flip', 'flip_p', 'default', 'img_size_64'])
def test_card_states_the_augmentation_that_ran(options, claim, tmp_path):
    """The card and metrics.json state the augmentation the trainer ran (``build_transforms``: pad size // 8 and
    crop unless no_aug, flip with probability hflip), not the CIFAR default whatever the config says."""
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    out = tmp_path / 'out'
    publish('cnn3', 'test-org/cnn3', checkpoint=ckpt, output=str(out), dry_run=True,
            train_config=_train_yaml(tmp_path, 'cnn3', **options))
    assert json.loads((out / 'metrics.json').read_text())['training']['augmentation'] == claim
    text = (out / 'README.md').read_text()
    assert f', {claim}, config `cnn3_train.yaml`' in text
    if options.get('no_aug'):
        assert 'random crop' not in text and 'flip' not in text


def test_card_of_the_shipped_no_aug_config_claims_no_augmentation(tmp_path):
    """train_configs/cifar10/se_cnn3.yaml trains without augmentation (no_aug, hflip 0) for 50 epochs of a step
    schedule: so says the card."""
    _, ckpt = _checkpoint(tmp_path, 'se_cnn3')
    out = tmp_path / 'out'
    publish('se_cnn3', 'test-org/se_cnn3', checkpoint=ckpt, output=str(out), dry_run=True,
            train_config=str(ROOT / 'train_configs' / 'cifar10' / 'se_cnn3.yaml'))
    text = (out / 'README.md').read_text()
    assert '50 epochs, adadelta, lr 1.0, batch 64, weight decay 0.0, step schedule, no augmentation,' in text
    assert 'random crop' not in text and 'flip' not in text
    assert json.loads((out / 'metrics.json').read_text())['training']['augmentation'] == 'no augmentation'


def test_train_config_of_another_model_is_refused(tmp_path, cnn3_ckpt, capsys):
    """A --train-config written for another model (or another class count) was accepted and the card claimed its
    recipe for these weights; now one line naming both, nothing written. The same model (any spelling: a tag,
    hf-hub:ORG/ARCH.TAG, a JSON file) and a config without ``model`` (a recipe for any model) pass."""
    import yaml
    recipe = {'epochs': 2, 'sched': 'step', 'opt': 'sgd', 'lr': 0.05}
    other_json = tmp_path / 'other.json'
    other_json.write_text(json.dumps({'model': 'hf-hub:test-org/resnet20_cifar.cifar10', **recipe}))
    classes = tmp_path / 'classes.yaml'
    classes.write_text(yaml.safe_dump({'model': 'cnn3', 'model_kwargs': {'num_classes': 100}, **recipe}))
    out = tmp_path / 'out'
    base = ['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out)]
    for config, message in ((_train_yaml(tmp_path, 'resnet20_cifar'), 'trains resnet20_cifar, not cnn3'),
                            (str(other_json), 'trains resnet20_cifar, not cnn3'),
                            (str(classes), 'trains 100 classes, the weights of cnn3 have 10')):
        rc = main(base + ['--train-config', config])
        err = capsys.readouterr().err
        assert rc == 2 and f'--train-config {config} {message}' in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()

    same = tmp_path / 'same.json'
    same.write_text(json.dumps({'model': 'cnn3.cifar10', **recipe}))
    anymodel = tmp_path / 'any.yaml'
    anymodel.write_text(yaml.safe_dump(recipe))
    for i, config in enumerate((str(same), str(anymodel))):
        assert main(base[:-1] + [str(tmp_path / f'ok{i}'), '--train-config', config]) == 0, capsys.readouterr().err
        assert json.loads((tmp_path / f'ok{i}' / 'metrics.json').read_text())['training']['epochs'] == 2


def test_tag_contradicting_the_metrics_is_refused(tmp_path, capsys):
    """``--tag svhn`` on CIFAR-10 weights whose metrics.json says cifar10 named the repo and config.json's tag svhn
    while the card described CIFAR-10; now one line, nothing written."""
    folder = WEIGHTS / 'se_shufflenetv2_x0_5_cifar.cifar10'
    assert json.loads((folder / 'metrics.json').read_text())['dataset'] == 'cifar10'
    out = tmp_path / 'out'
    rc = main(['publish', str(folder), '--tag', 'svhn', '--dry-run', '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and ("the pretrained tag 'svhn' names svhn, but the metrics of se_shufflenetv2_x0_5_cifar were "
                        'measured on cifar10') in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(['publish', str(folder), '--tag', 'cifar10_seed1', '--dry-run', '-o', str(out)]) == 0



@pytest.mark.parametrize('tag', ['a/b', 'cifar10 x', '', 'x..y'])
def test_malformed_tag_is_refused_as_the_tag(tag, tmp_path, capsys):
    """A --tag the repo name cannot hold was refused as a "malformed --repo-id" the user never gave (or, empty,
    dropped silently, publishing under the source's tag); now one line naming --tag, nothing written."""
    out = tmp_path / 'out'
    rc = main(['publish', str(WEIGHTS / 'se_shufflenetv2_x0_5_cifar.cifar10'), '--tag', tag, '--dry-run',
               '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f'malformed --tag {tag!r}' in err and '--repo-id' not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_weights_of_another_class_count_than_the_data_set_are_refused(tmp_path, capsys):
    """A run folder's tag defaults to cifar10: a 5-class run was published as CIFAR-10 weights with CIFAR-10
    results in its card. Weights whose class count is not the data set's (by the tag or --dataset) are refused;
    a tag naming no known data set passes."""
    run = _fake_run(tmp_path, 'cnn3')
    ckpt = torch.load(run / 'last.pth.tar', map_location='cpu', weights_only=False)
    ckpt['state_dict'] = _random_model('cnn3', num_classes=5).state_dict()  # trained on a 5-class folder
    torch.save(ckpt, run / 'last.pth.tar')
    out = tmp_path / 'out'
    for extra, named in (([], "the pretrained tag 'cifar10'"), (['--tag', 'flowers5', '--dataset', 'svhn'],
                                                                 '--dataset svhn')):
        rc = main(['publish', str(run), '--dry-run', '-o', str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and 'the weights of cnn3 classify 5 classes, but ' in err, err
        assert f'(named by {named}) has 10' in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(['publish', str(run), '--dry-run', '-o', str(out), '--tag', 'flowers5']) == 0, capsys.readouterr().err
    assert json.loads((out / 'config.json').read_text())['num_classes'] == 5


@pytest.mark.parametrize('spec', ['cnn3.cifar10', 'local-dir:{folder}'])
def test_run_of_a_tagged_or_local_dir_model_is_published_as_its_architecture(spec, tmp_path, capsys):
    """A run trained as ``model: ARCH.TAG`` or ``local-dir:FOLDER`` records that name as the checkpoint's arch: its
    publish failed with "saved from 'cnn3.cifar10', not 'cnn3.cifar10'" (and so did ARCH --checkpoint of it); now
    the architecture the name gives is published."""
    folder = tmp_path / 'weights'
    folder.mkdir()
    from timm_recal.hub import write_weights_folder
    write_weights_folder(_random_model('cnn3'), folder)
    spec = spec.format(folder=folder)
    run = _fake_run(tmp_path, 'cnn3', model=spec)
    ckpt = torch.load(run / 'last.pth.tar', map_location='cpu', weights_only=False)
    torch.save({**ckpt, 'arch': spec}, run / 'last.pth.tar')
    out = tmp_path / 'out'
    assert main(['publish', str(run), '--dry-run', '-o', str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / 'config.json').read_text())['architecture'] == 'cnn3'
    assert main(['publish', 'cnn3', '--checkpoint', str(run / 'last.pth.tar'), '--tag', 'cifar10', '--dry-run',
                 '-o', str(tmp_path / 'out2')]) == 0, capsys.readouterr().err
    rc = main(['publish', 'resnet20_cifar', '--checkpoint', str(run / 'last.pth.tar'), '--tag', 'cifar10',
               '--dry-run', '-o', str(tmp_path / 'out3')])
    err = capsys.readouterr().err
    assert rc == 2 and f"saved from {spec!r}, not 'resnet20_cifar'" in err, err

@pytest.mark.parametrize('flags,message', [
    (['--private'], '--private applies to the upload'),
    (['--overwrite', '--commit-message', 'x'], '--overwrite, --commit-message apply to the upload'),
    (['--create-pr'], '--create-pr applies to the upload'),
])
def test_upload_options_with_dry_run_are_refused(flags, message, tmp_path, cnn3_ckpt, capsys):
    """--dry-run uploads nothing, so --private and the other upload options were silently dropped."""
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and '--dry-run uploads nothing' in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_dataset_contradicting_the_metrics_or_the_tag_is_refused(tmp_path, capsys):
    """A --dataset other than the one the metrics were measured on (a --metrics JSON, a weights folder's
    metrics.json) or the one the tag names is one line and writes nothing: the card would name one data set and
    metrics.json / config.json another. The same data set passes."""
    from huggingface_hub import ModelCard
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    metrics = tmp_path / 'metrics_cifar10.json'
    metrics.write_text(json.dumps({'top1': 71.25, 'top5': 93.5, 'dataset': 'cifar10', 'architecture': 'cnn3'}))
    out = tmp_path / 'out'
    base = ['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out)]
    for extra, message in ((['--metrics', str(metrics), '--dataset', 'imagenet-1k'],
                            '--dataset imagenet-1k contradicts the metrics of cnn3, measured on cifar10'),
                           (['--tag', 'cifar10', '--dataset', 'svhn'],
                            "--dataset svhn contradicts the pretrained tag 'cifar10', which names cifar10")):
        rc = main(base + extra)
        err = capsys.readouterr().err
        assert rc == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()

    assert main(base + ['--metrics', str(metrics), '--dataset', 'cifar10', '--tag', 'cifar10']) == 0
    assert ModelCard.load(out / 'README.md').data.datasets == ['cifar10']
    assert json.loads((out / 'metrics.json').read_text())['dataset'] == 'cifar10'
    assert len(json.loads((out / 'config.json').read_text())['label_names']) == 10

    # a weights folder whose metrics.json says cifar10 (the shipped weights/*.cifar10 are such folders)
    again = tmp_path / 'again'
    rc = main(['publish', str(out), '--dry-run', '-o', str(again), '--dataset', 'imagenet-1k'])
    err = capsys.readouterr().err
    assert rc == 2 and 'contradicts the metrics of cnn3, measured on cifar10' in err and not again.exists()


# ----------------------------------------------------------------------------------------------- --report
def _report_dir(tmp_path: Path, arch: str, weights: str = 'checkpoint') -> Path:
    """A `timm-recal pipeline -o` folder: report.json (the fields the card reads, absolute paths included, as
    the pipeline writes them) and throughput.png."""
    d = tmp_path / f'report_{arch}'
    d.mkdir()
    data = str(tmp_path / 'data' / 'cifar10' / 'test')
    parity = [dict(role='target', precision=p, result=dict(
        passed=ok, precision=p, n_images=n, top1_agreement=agree, top5_agreement=0.998, max_abs_err=err,
        max_rel_err=err / 10, data=data, bundled_data=False, worst_image=data + '/cat/1.jpg'))
        for p, ok, n, agree, err in (('fp32', True, 10000, 1.0, 3.1e-06), ('int8', False, 5000, 0.9905, 1.7))]
    validate = [dict(role='target', precision=p, result=dict(top1=t, top5=99.1, n_images=10000, data=data))
                for p, t in (('pytorch', 85.51), ('int8', 85.42))]
    results = [dict(role='target', model=arch, runtime=rt, precision=p, batch=b, images_per_s=ips)
               for rt, p, b, ips in (('eager', 'fp32', 1, 251.0), ('eager', 'fp32', 16, 812.0),
                                     ('ort', 'fp32', 1, 1471.0), ('ort', 'fp32', 16, 2034.0),
                                     ('ort', 'int8', 1, 1588.0), ('ort', 'int8', 16, 2660.0))]
    ratios = [dict(kind='int8_vs_fp32', batch=b, role='target', value=v) for b, v in ((1, 1.0795), (16, 1.3078))]
    bench = dict(results=results, ratios=ratios, notes=['the machine was busy when the benchmark started'],
                 settings=dict(warmup=3, repeats=5, min_time_s=1.0),
                 threads=dict(torch_intra_op=2), machine=dict(cpu_model='Test CPU 9000', cpu_flags=['avx512_vnni'],
                                                              usable_cpus=2, versions=dict(onnxruntime='1.32.0')))
    settings = dict(precisions=['fp32', 'int8'], calib_data=str(tmp_path / 'data' / 'cifar10' / 'train'),
                    calib_images=512, int8_options=dict(calibrate_method='percentile', fp32_layers=48))
    report = dict(kind='timm-recal-pipeline', model=f'local-dir:{tmp_path}/weights', model_name=arch, settings=settings,
                  output_dir=str(d), models=dict(target=dict(name=arch, num_classes=10, weights=weights)),
                  parity=parity, validate=validate, bench=bench)
    (d / 'report.json').write_text(json.dumps(report))
    (d / 'throughput.png').write_bytes(b'\x89PNG\r\n\x1a\n' + os.urandom(64))
    return d


def test_report_puts_deploy_numbers_in_card(tmp_path):
    from huggingface_hub import ModelCard
    arch = 'cnn3'
    _, ckpt = _checkpoint(tmp_path, arch)
    report = _report_dir(tmp_path, arch)
    out = tmp_path / 'out'
    publish(arch, 'test-org/cnn3-demo', checkpoint=ckpt, output=str(out), dry_run=True, report=str(report))
    assert (out / 'throughput.png').read_bytes() == (report / 'throughput.png').read_bytes()
    text = ModelCard.load(out / 'README.md').text
    assert '## Deployment (ONNX), measured by `timm-recal pipeline`' in text
    assert ('INT8 (ONNX Runtime QDQ) calibrated on 512 images of `cifar10/train`, percentile ranges, 48 most '
            'sensitive nodes kept in float') in text
    assert '| fp32 | pass | 10000 | 100.00% | 99.80% | 3.10e-06 |' in text
    assert '| int8 | FAIL | 5000 | 99.05% |' in text
    assert '| ONNX Runtime CPU | int8 | 1,588 | 2,660 |' in text
    assert '| int8 / fp32 | 1.08x | 1.31x |' in text
    assert '| int8 | 10000 | 85.42 | 99.10 |' in text
    assert 'Machine: Test CPU 9000 (avx512_vnni), 2 usable CPUs' in text
    assert '![throughput vs batch size](throughput.png)' in text
    assert '**Note:** the machine was busy when the benchmark started.' in text
    assert str(tmp_path) not in text and '`cifar10/test`' in text


def test_report_of_another_model_is_refused(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    report = _report_dir(tmp_path, 'se_cnn3')
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               '--report', str(report)])
    err = capsys.readouterr().err
    assert rc == 2 and 'measured se_cnn3, not cnn3' in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               '--report', str(tmp_path)])
    assert rc == 2 and 'no report.json' in capsys.readouterr().err and not out.exists()


# ------------------------------------------------------------------------------------------------ ONNX
def test_with_onnx_adds_fp32_and_int8(tmp_path):
    pytest.importorskip('onnxruntime')
    import numpy as np
    import onnxruntime as ort
    from timm_recal_deploy.metadata import read_metadata
    ref, ckpt = _checkpoint(tmp_path, 'cnn3', fmt='safetensors')
    out = tmp_path / 'out'
    publish('cnn3', 'test-org/cnn3-onnx', checkpoint=ckpt, output=str(out), dry_run=True, with_onnx=True,
            onnx_options=dict(calib_images=8))
    assert {p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file()} == {
        'config.json', 'model.safetensors', 'README.md', 'onnx/model.onnx', 'onnx/model_int8.onnx'}
    fp32, int8 = read_metadata(str(out / 'onnx/model.onnx')), read_metadata(str(out / 'onnx/model_int8.onnx'))
    assert fp32['architecture'] == int8['architecture'] == 'cnn3'
    assert fp32['precision'] == 'fp32' and int8['precision'] == 'int8'
    assert not os.path.isabs(int8['quantization']['calib_data'])  # no local paths in a published file
    x = torch.randn(3, 3, 32, 32)
    sess = ort.InferenceSession(str(out / 'onnx/model.onnx'), providers=['CPUExecutionProvider'])
    y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(y, ref(x).numpy(), rtol=1e-4, atol=1e-4)
    text = (out / 'README.md').read_text()
    assert '`onnx/model_int8.onnx`' in text and 'calibrated on 8 images' in text
    check_publishable(str(out))


@pytest.mark.parametrize('option', [['--calib-data', 'DATA'], ['--calib-images', '8'],
                                    ['--calib-method', 'entropy'], ['--fp32-layers', '2']],
                         ids=lambda o: o[0].lstrip('-'))
def test_onnx_options_need_with_onnx(option, tmp_path, cnn3_ckpt, capsys):
    """Only the ONNX step reads these options: without --with-onnx they are refused, not silently dropped."""
    (tmp_path / 'calib' / 'cat').mkdir(parents=True)
    option = [str(tmp_path / 'calib') if v == 'DATA' else v for v in option]
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               *option])
    err = capsys.readouterr().err
    assert rc == 2 and f'{option[0]} applies with --with-onnx' in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize('kind,message', [('missing', 'data folder not found'), ('empty', 'no images found')])
def test_with_onnx_checks_calib_data_before_the_export(kind, message, tmp_path, monkeypatch, cnn3_ckpt, capsys):
    """`--calib-data` is checked before the export (as README promises wherever INT8 is asked for), not after."""
    import timm_recal_deploy as deploy
    exported = []

    def export_onnx(*args, **kwargs):
        exported.append(args)
        raise RuntimeError('exported before --calib-data was checked')
    monkeypatch.setattr(deploy, 'export_onnx', export_onnx)
    calib = tmp_path / 'calib'
    if kind == 'empty':
        (calib / 'cat').mkdir(parents=True)
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               '--with-onnx', '--calib-data', str(calib)])
    err = capsys.readouterr().err
    assert not exported
    assert rc == 2 and f'--calib-data: {message}' in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_check_publishable_refuses_pickles_and_local_paths(tmp_path):
    (tmp_path / 'README.md').write_text('fine')
    check_publishable(str(tmp_path))
    (tmp_path / 'pytorch_model.bin').write_bytes(b'x')
    with pytest.raises(PublishError, match='only safetensors'):
        check_publishable(str(tmp_path))
    (tmp_path / 'pytorch_model.bin').unlink()
    (tmp_path / 'metrics.json').write_text(json.dumps({'data': '/home/someone/cifar10/test'}))
    with pytest.raises(PublishError, match='local paths'):
        check_publishable(str(tmp_path))


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize('argv,message', [
    (['se_shufflenetv2_x0_5_cifarr.cifar10'], 'unknown model'),
    (['cnn3', '--repo-id', 'no-slash'], 'malformed --repo-id'),
    (['cnn3', '--repo-id', 'org/bad--name'], 'malformed --repo-id'),
    (['cnn3', '--repo-id', 'a/b/c'], 'malformed --repo-id'),
    (['cnn3'], 'names no weights'),
    (['cnn3.no_such_tag'], 'unknown pretrained tag'),
])
def test_bad_inputs(argv, message, tmp_path, capsys):
    out = tmp_path / 'out'
    rc = main(['publish', *argv, '--dry-run', '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert not out.exists()


def test_checkpoint_of_another_architecture(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path, 'resnet20_cifar')
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "saved from 'resnet20_cifar', not 'cnn3'" in err and not out.exists()
    # a plain state dict says nothing of its architecture: the keys tell
    sd = tmp_path / 'plain.pth'
    torch.save(_random_model('resnet20_cifar').state_dict(), sd)
    rc = main(['publish', 'cnn3', '--checkpoint', str(sd), '--repo-id', 'test-org/x', '--dry-run', '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and 'does not fit cnn3' in err and not out.exists()


def test_unreadable_checkpoint_says_what_it_is(tmp_path, capsys):
    """A text file given as --checkpoint is named as not a checkpoint (torch.load's own 'KeyError: 105' says
    nothing); a cut-off checkpoint is named as damaged."""
    text = tmp_path / 'afile.txt'
    text.write_text('if this is a checkpoint, I am a teapot\n')
    _, ckpt = _checkpoint(tmp_path, 'se_cnn3')
    cut = tmp_path / 'cut.pth.tar'
    cut.write_bytes(Path(ckpt).read_bytes()[:2000])
    out = tmp_path / 'out'
    for path, message in ((text, 'not a PyTorch checkpoint (a file written by torch.save) or a .safetensors file'),
                          (cut, 'truncated or damaged')):
        rc = main(['publish', 'se_cnn3', '--checkpoint', str(path), '--repo-id', 'test-org/x', '--dry-run',
                   '-o', str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and f'cannot read checkpoint {path}: {message}' in err, err
        assert 'KeyError' not in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize('values,field', [
    ({'top1': 'abc'}, 'top1'), ({'top1': 71.25, 'top5': 'x'}, 'top5'), ({'top1': float('nan')}, 'top1'),
    ({'top1': 171.0}, 'top1'), ({'top1': 71.25, 'n_images': 'all'}, 'n_images'),
], ids=['top1_text', 'top5_text', 'top1_nan', 'top1_over_100', 'n_images_text'])
def test_metrics_with_a_bad_value_names_the_file_and_field(values, field, tmp_path, cnn3_ckpt, capsys):
    path = tmp_path / 'bad_metrics.json'
    path.write_text(json.dumps(values))
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/x', '--dry-run', '-o', str(out),
               '--metrics', str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--metrics {path}: '{field}' is {values[field]!r}, not a" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------------------------------------ upload
def _staging_leftovers() -> set:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith('timm_recal_publish_')}


def test_upload_offline_real_client(tmp_path, monkeypatch, capsys):
    """The real huggingface_hub client with HF_HUB_OFFLINE=1: one clean line, nothing written locally."""
    offline_hub(monkeypatch, tmp_path / 'cache')
    monkeypatch.setenv('HF_TOKEN', 'hf_not_a_real_token_for_tests')
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    before = _staging_leftovers()
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/cnn3', '-o', str(out)])
    captured = capsys.readouterr()
    assert rc == 2 and 'offline mode is on (HF_HUB_OFFLINE=1)' in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and 'hf_not_a_real_token' not in captured.err + captured.out
    assert not out.exists() and _staging_leftovers() == before
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/cnn3'])  # staging folder path
    assert rc == 2 and 'offline' in capsys.readouterr().err and _staging_leftovers() == before


def test_upload_without_token(tmp_path, monkeypatch, capsys):
    offline_hub(monkeypatch, tmp_path / 'cache')
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    rc = main(['publish', 'cnn3', '--checkpoint', ckpt, '--repo-id', 'test-org/cnn3'])
    err = capsys.readouterr().err
    assert rc == 2 and 'no Hugging Face token: set HF_TOKEN or run `hf auth login`' in err


class _Hub:
    """Records the HfApi calls publish makes; ``exists``/``private`` describe the remote repo, ``fail`` maps a
    method name to the huggingface_hub error it raises."""

    def __init__(self, monkeypatch, exists=False, private=False, fail=None):
        from huggingface_hub import HfApi
        self.calls, self.exists, self.private, self.fail = [], exists, private, fail or {}
        self.uploaded = None
        for name in ('repo_exists', 'model_info', 'create_repo', 'upload_folder', 'delete_repo'):
            monkeypatch.setattr(HfApi, name, self._method(name))
        monkeypatch.setenv('HF_TOKEN', 'hf_not_a_real_token_for_tests')

    def _method(self, name):
        hub = self

        def method(_api, *args, **kwargs):
            hub.calls.append((name, args, kwargs))
            if name in hub.fail:
                raise hub.fail[name]
            if name == 'repo_exists':
                return hub.exists
            if name == 'model_info':
                from types import SimpleNamespace
                return SimpleNamespace(private=hub.private)
            if name == 'upload_folder':
                folder = Path(kwargs['folder_path'])
                hub.uploaded = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob('*')
                                if p.is_file()}
                from types import SimpleNamespace
                return SimpleNamespace(commit_url='https://huggingface.co/test-org/x/commit/1',
                                       pr_url='https://huggingface.co/test-org/x/discussions/1'
                                       if kwargs.get('create_pr') else None)
            return None
        return method

    def names(self):
        return [c[0] for c in self.calls]

    def call(self, name):
        return next(c for c in self.calls if c[0] == name)


def _http_error(status: int, cls_name: str = 'HfHubHTTPError'):
    from huggingface_hub import errors
    httpx = sys.modules[errors.Response.__module__]
    response = errors.Response(status, request=httpx.Request('POST', 'https://huggingface.co/api/test'),
                               text='forbidden')
    return getattr(errors, cls_name)(f'{status} Client Error: rejected by the Hub (test)', response=response)


@pytest.fixture
def cnn3_ckpt(tmp_path):
    return _checkpoint(tmp_path, 'cnn3')[1]


def test_upload_new_repo_one_commit(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch)
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3'])
    out = capsys.readouterr()
    assert rc == 0 and 'published test-org/cnn3' in out.out and 'hf_not_a_real' not in out.out + out.err
    assert hub.names() == ['repo_exists', 'create_repo', 'upload_folder']
    assert hub.call('create_repo')[2]['private'] is False and hub.call('create_repo')[2]['exist_ok'] is False
    kw = hub.call('upload_folder')[2]
    assert kw['repo_id'] == 'test-org/cnn3' and not kw['create_pr'] and kw['delete_patterns'] is None
    assert set(hub.uploaded) == {'config.json', 'model.safetensors', 'README.md'}
    assert b'hf-hub:test-org/cnn3' in hub.uploaded['README.md']


def test_upload_private(monkeypatch, cnn3_ckpt):
    hub = _Hub(monkeypatch)
    assert main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--private']) == 0
    assert hub.call('create_repo')[2]['private'] is True


def test_upload_private_refuses_public_repo(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, exists=True, private=False)
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--private',
               '--overwrite'])
    assert rc == 2 and 'exists and is public' in capsys.readouterr().err
    assert 'upload_folder' not in hub.names()


def test_existing_repo_needs_overwrite_or_pr(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, exists=True)
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3'])
    assert rc == 2 and '--overwrite' in capsys.readouterr().err
    assert hub.names() == ['repo_exists']


def test_overwrite_replaces_files_in_one_commit(monkeypatch, cnn3_ckpt):
    hub = _Hub(monkeypatch, exists=True)
    assert main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--overwrite']) == 0
    assert hub.names() == ['repo_exists', 'upload_folder']
    kw = hub.call('upload_folder')[2]
    assert kw['delete_patterns'] == ['*'] and not kw['create_pr']


def test_create_pr(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, exists=True)
    assert main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--create-pr']) == 0
    assert hub.call('upload_folder')[2]['create_pr'] is True and 'discussions/1' in capsys.readouterr().out
    hub = _Hub(monkeypatch, exists=False)
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--create-pr'])
    assert rc == 2 and 'does not exist yet' in capsys.readouterr().err and hub.names() == ['repo_exists']


def test_rejected_first_upload_deletes_the_new_repo(tmp_path, monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, fail={'upload_folder': _http_error(403)})
    out = tmp_path / 'out'
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '-o', str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and 'refused access to test-org/cnn3 (HTTP 403)' in err and 'was deleted again' in err
    assert len(err.strip().splitlines()) == 1
    assert hub.names() == ['repo_exists', 'create_repo', 'upload_folder', 'delete_repo']
    assert hub.call('delete_repo')[1] == ('test-org/cnn3',)
    assert {p.name for p in out.iterdir()} == {'config.json', 'model.safetensors', 'README.md'}  # whole folder


def test_rejected_overwrite_keeps_the_existing_repo(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, exists=True, fail={'upload_folder': _http_error(500)})
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3', '--overwrite'])
    assert rc == 2 and 'rejected the request' in capsys.readouterr().err
    assert 'delete_repo' not in hub.names()


def test_rejected_create_repo(monkeypatch, cnn3_ckpt, capsys):
    hub = _Hub(monkeypatch, fail={'create_repo': _http_error(403)})
    rc = main(['publish', 'cnn3', '--checkpoint', cnn3_ckpt, '--repo-id', 'test-org/cnn3'])
    assert rc == 2 and 'nothing was uploaded' in capsys.readouterr().err
    assert hub.names() == ['repo_exists', 'create_repo']


def test_import_stays_light():
    """The CLI builds its parser from timm_recal.publish: it must not pull in onnx or the deploy stage."""
    code = ('import sys, timm_recal.publish, timm_recal.cli; timm_recal.cli.build_parser(); '
            'print(sorted(m for m in ("onnx", "onnxruntime", "timm_recal_deploy.export") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


# ------------------------------------------------------------------------------------------ shipped folders
SHIPPED = sorted(p for p in WEIGHTS.glob('*.cifar10') if (p / 'config.json').is_file())


@pytest.mark.skipif(not SHIPPED, reason='no trained weights in weights/')
@pytest.mark.parametrize('folder', SHIPPED, ids=lambda p: p.name)
def test_shipped_weight_folders_are_publishable(folder):
    """weights/*.cifar10 are `publish --dry-run` folders: ModelCard cards with model-index results equal to
    metrics.json, label names in config.json, nothing that may not be published."""
    from huggingface_hub import ModelCard
    card = ModelCard.load(folder / 'README.md')
    metrics = json.loads((folder / 'metrics.json').read_text())
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {'accuracy': metrics['top1'], 'top-5-accuracy': metrics['top5']}
    assert card.data.library_name == 'timm' and card.data.datasets == ['cifar10']
    arch = folder.name.split('.')[0]
    assert card.data.model_name == f'timm-recal/{folder.name}'
    assert f"timm.create_model('{folder.name}', pretrained=True)" in card.text
    assert json.loads((folder / 'config.json').read_text())['architecture'] == arch
    if (folder / 'throughput.png').is_file():
        assert '## Deployment (ONNX), measured by `timm-recal pipeline`' in card.text
    check_publishable(str(folder))


@pytest.mark.slow
def test_real_pipeline_report_in_card(tmp_path):
    """A real `timm-recal pipeline` folder (not a hand-made report.json) goes into the card."""
    pytest.importorskip('onnxruntime')
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    pipe = tmp_path / 'pipe'
    assert main(['pipeline', 'cnn3', '--checkpoint', ckpt, '-o', str(pipe), '--quick', '--precision', 'fp32,int8',
                 '--batch', '1,4']) == 0
    out = tmp_path / 'out'
    publish('cnn3', 'test-org/cnn3', checkpoint=ckpt, output=str(out), dry_run=True, report=str(pipe))
    text = (out / 'README.md').read_text()
    assert '| int8 | pass |' in text or '| int8 | FAIL |' in text
    assert '| ONNX Runtime CPU | fp32 |' in text and (out / 'throughput.png').is_file()
    check_publishable(str(out))


def test_real_pipeline_report_without_bench_says_throughput_was_not_measured(tmp_path):
    """A real pipeline folder without its bench stage (how the weights/ cards are made on a shared machine): the
    card carries parity and the INT8 recipe under the pipeline's own report.json keys, and says throughput was not
    measured rather than showing numbers."""
    pytest.importorskip('onnxruntime')
    _, ckpt = _checkpoint(tmp_path, 'cnn3')
    pipe = tmp_path / 'pipe'
    assert main(['pipeline', 'cnn3', '--checkpoint', ckpt, '-o', str(pipe), '--stages', 'quantize,parity,report',
                 '--precision', 'fp32,int8', '--exporter', 'legacy', '--calib-method', 'percentile']) == 0
    out = tmp_path / 'out'
    publish('cnn3', 'test-org/cnn3', checkpoint=ckpt, output=str(out), dry_run=True, report=str(pipe))
    text = (out / 'README.md').read_text()
    assert '| int8 | pass |' in text or '| int8 | FAIL |' in text
    assert 'percentile ranges' in text  # settings.int8_options.calib_method, the pipeline's key
    assert 'Throughput was not measured in this run' in text and 'images/s' not in text
    assert not (out / 'throughput.png').exists()
    check_publishable(str(out))
