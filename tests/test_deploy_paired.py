"""``timm-recal validate MODEL --compare MODEL2``: both models on the same images, the paired statistics in the
summary and the JSON, and bad input as one line that writes nothing."""
import json
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest
import torch

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.images import make_dataset  # noqa: E402
from timm_recal_deploy.paired_stats import mcnemar_exact  # noqa: E402
from timm_recal_deploy.sources import Source, open_source  # noqa: E402
from timm_recal_deploy.validate import _check_same_labels  # noqa: E402

from deploy_helpers import cifar_samples, run_cli, saved_and_exported  # noqa: E402

CIFAR_MODEL = 'shufflenetv2_x0_5_cifar'


@pytest.fixture(scope='module')
def two_models(tmp_path_factory):
    """Two differently randomized CIFAR models: the first as a checkpoint, the second as its ONNX export."""
    folder = tmp_path_factory.mktemp('paired')
    first, first_ckpt, _ = saved_and_exported(CIFAR_MODEL, folder, 'first.onnx', seed=0)
    _, _, second_onnx = saved_and_exported(CIFAR_MODEL, folder, 'second.onnx', seed=1)
    return first, first_ckpt, second_onnx


@torch.no_grad()
def _correct_images(model, data: str):
    """Which images ``model`` gets right, computed here without the validate stage."""
    src = open_source(CIFAR_MODEL, module=model)
    ds = make_dataset(data, src.data_config)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    pred = model(x).argmax(1).numpy()
    return {os.path.relpath(p, data).replace(os.sep, '/') for (p, y), q in zip(ds.samples, pred) if y == q}


def test_validate_compare_model_against_onnx_file(two_models, tmp_path, capsys):
    first, ckpt, second_onnx = two_models
    data, out_json = cifar_samples(), tmp_path / 'paired.json'
    rc, out, err = run_cli(capsys, 'validate', CIFAR_MODEL, '--checkpoint', ckpt, '--compare', second_onnx,
                           '--data', data, '--json', '-o', out_json, '--resamples', 2000)
    assert rc == 0, err
    printed, written = json.loads(out), json.loads(out_json.read_text())
    assert written['paired'] == printed['paired'] and written['compare']['top1'] == printed['compare']['top1']
    p, other = printed['paired'], printed['compare']
    assert other['onnx'] and other['n_images'] == printed['n_images'] == p['n_images'] == 50
    assert p['model_top1'] == printed['top1'] and p['compare_top1'] == other['top1']
    assert p['both_correct'] + p['only_model'] + p['only_compare'] + p['both_wrong'] == 50
    assert p['only_model'] == len(p['only_model_images']) and p['only_compare'] == len(p['only_compare_images'])
    assert p['only_model'] + p['only_compare'] > 0, 'two random models should disagree somewhere'
    assert p['difference'] == pytest.approx(printed['top1'] - other['top1'], abs=1e-3)
    assert p['mcnemar_p'] == mcnemar_exact(p['only_model'], p['only_compare'])
    assert p['ci_low'] <= p['difference'] <= p['ci_high'] and p['resamples'] == 2000
    # the images the first model gets right, recomputed independently: both_correct + only_model of them
    right = _correct_images(first, data)
    assert set(p['only_model_images']) <= right and not set(p['only_compare_images']) & right
    assert len(right) == p['both_correct'] + p['only_model']


def test_validate_compare_summary_is_three_lines(two_models, capsys):
    _, ckpt, second_onnx = two_models
    rc, out, err = run_cli(capsys, 'validate', second_onnx, '--compare', CIFAR_MODEL, '--compare-checkpoint', ckpt,
                           '--data', cifar_samples(), '--limit', 20)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3 and str(second_onnx) in lines[0] and CIFAR_MODEL in lines[1]
    assert 'paired, same 20 images' in lines[2] and 'McNemar exact p =' in lines[2] and '95% bootstrap CI' in lines[2]


def _one_line_error(capsys, *argv) -> str:
    rc, out, err = run_cli(capsys, *argv)
    assert rc != 0 and not out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_validate_compare_bad_input(two_models, tmp_path, capsys):
    _, ckpt, second_onnx = two_models
    seven = tmp_path / 'seven.pth'
    torch.save(timm.create_model(CIFAR_MODEL, num_classes=7).state_dict(), seven)
    out_json = tmp_path / 'm.json'
    common = ['--data', cifar_samples(), '-o', out_json]
    err = _one_line_error(capsys, 'validate', second_onnx, '--compare', CIFAR_MODEL, '--compare-checkpoint', seven,
                          *common)
    assert 'predict different labels' in err and '10 classes' in err and '7 classes' in err
    err = _one_line_error(capsys, 'validate', second_onnx, '--compare', tmp_path / 'missing.onnx', *common)
    assert 'not found' in err and 'missing.onnx' in err
    err = _one_line_error(capsys, 'validate', second_onnx, '--compare-checkpoint', ckpt, *common)
    assert '--compare-checkpoint needs --compare' in err
    assert not out_json.exists()
    rc, _, err = run_cli(capsys, 'validate', second_onnx, '--compare', CIFAR_MODEL, '--resamples', 0, *common)
    assert rc == 2 and 'argument --resamples: must be > 0' in err  # argparse's usage + error


def _source(labels, n=None):
    return Source('m', 'model', {'num_classes': n or len(labels), 'class_labels': labels})


def test_label_sets_compared_by_name():
    _check_same_labels(_source(['cat', 'dog']), _source(['dog', 'cat']))  # same classes, another order: paired by name
    _check_same_labels(_source(None, 2), _source(['cat', 'dog']))         # unnamed: the data folder check decides
    with pytest.raises(DeployError, match='predict different labels'):
        _check_same_labels(_source(['cat', 'dog']), _source(['cat', 'cow']))


def test_validate_per_class_prints_a_table_worst_first(two_models, capsys):
    """``--per-class`` printed nothing about the classes without --json/-o: now a table of every class, worst
    first, with the numbers of the JSON; with --compare one table per model, each named."""
    _, ckpt, second_onnx = two_models
    argv = ['validate', second_onnx, '--data', cifar_samples(), '--per-class']
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    rc, js, err = run_cli(capsys, *argv, '--json')
    per_class = json.loads(js)['per_class']
    lines = out.strip().splitlines()
    assert lines[1] == 'per-class top-1, 10 classes, worst first:' and lines[2].split() == ['class', 'images', 'top-1']
    rows = [ln.split() for ln in lines[3:]]
    assert len(rows) == 10 and {r[0] for r in rows} == set(per_class)
    assert [(int(n), float(t.rstrip('%'))) for _, n, t in rows] == [
        (per_class[c]['n'], round(per_class[c]['top1'], 2)) for c, _, _ in rows]
    tops = [per_class[c]['top1'] for c, _, _ in rows]
    assert tops == sorted(tops) and len(set(tops)) > 1, 'worst first, and a random model is not equally bad everywhere'
    rc, out, err = run_cli(capsys, 'validate', second_onnx, '--compare', CIFAR_MODEL, '--compare-checkpoint', ckpt,
                           '--data', cifar_samples(), '--per-class', '--resamples', 100)
    assert rc == 0, err
    assert f'per-class top-1 of {second_onnx}, 10 classes' in out and f'per-class top-1 of {CIFAR_MODEL}, 10' in out


def test_per_class_table_of_many_classes_shows_the_worst():
    """1000 ImageNet classes are not printed one per line: the worst ten, and where the rest are."""
    from timm_recal_deploy.validate import PER_CLASS_WORST, format_per_class
    per_class = {f'c{i:02d}': {'n': 4, 'top1': 100.0 - i} for i in range(25)}
    lines = format_per_class(per_class).splitlines()
    assert lines[0] == f'per-class top-1, the {PER_CLASS_WORST} worst of 25 classes:'
    assert [ln.split()[0] for ln in lines[2:-1]] == [f'c{i:02d}' for i in range(24, 24 - PER_CLASS_WORST, -1)]
    assert lines[-1].strip() == f'... {25 - PER_CLASS_WORST} more classes in the JSON (--json or -o)'


def test_compare_side_errors_name_the_compare_flags(two_models, tmp_path, capsys):
    """``--compare-checkpoint`` with an ONNX ``--compare`` was refused as '--checkpoint/--use-ema apply to a
    MODEL', a flag the user had not given; now the message names --compare-checkpoint and the file."""
    _, ckpt, second_onnx = two_models
    err = _one_line_error(capsys, 'validate', CIFAR_MODEL, '--checkpoint', ckpt, '--compare', second_onnx,
                          '--compare-checkpoint', ckpt, '--data', cifar_samples())
    assert f'--compare-checkpoint apply to a MODEL; --compare {second_onnx} is an ONNX file' in err, err
    assert '--checkpoint/' not in err
    err = _one_line_error(capsys, 'validate', CIFAR_MODEL, '--checkpoint', ckpt, '--compare', second_onnx, '--amp',
                          '--data', cifar_samples())
    assert f'--device/--amp apply to a MODEL, and --compare {second_onnx} is an ONNX file' in err, err
    err = _one_line_error(capsys, 'validate', second_onnx, '--checkpoint', ckpt, '--data', cifar_samples())
    assert '--checkpoint/--use-ema apply to a MODEL; an ONNX file carries its own weights' in err  # unchanged
