"""`timm-recal train` and `sweep` against bad input and faults (issue 11): every bad option is a one-line error
with a non-zero exit before anything is written; a failed or killed run leaves no empty folder, no temporary file
and no half-written file; records hold no absolute local paths; epochs are counted from 1 in messages."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from train_helpers import REPO, TINY_MODEL as MODEL, make_tiny_cifar

GOOD = f"model: {MODEL}\nepochs: 1\nbatch_size: 8\nlr: 0.05\nworkers: 0\nsched: constant\n"


@pytest.fixture(scope='module')
def tiny_cifar(tmp_path_factory):
    return make_tiny_cifar(str(tmp_path_factory.mktemp('tiny_cifar')))


@pytest.fixture(scope='module')
def finished_run(tiny_cifar, tmp_path_factory):
    """A finished 1-epoch run (one step): a real checkpoint to resume from, and to damage."""
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import train
    out = tmp_path_factory.mktemp('finished') / 'run'
    train(load_config(None, dict(model=MODEL, data_dir=tiny_cifar, output=str(out), epochs=1, batch_size=8, lr=0.05,
                                 workers=0, threads=1, max_steps_per_epoch=1, sched='constant')))
    return out


def _write(path, text):
    path.write_text(text)
    return str(path)


def _bad_cases(tmp_path, data, run):
    """(argv, expected message fragment) for `timm-recal train`; each must fail before writing anything."""
    good = _write(tmp_path / 'good.yaml', GOOD)
    ckpt = run / 'last.pth.tar'
    truncated = tmp_path / 'truncated.pth.tar'
    truncated.write_bytes(ckpt.read_bytes()[:4000])
    other = torch.load(ckpt, map_location='cpu', weights_only=False)
    other['arch'] = 'resnet20_cifar'
    torch.save(other, tmp_path / 'other.pth.tar')
    afile = _write(tmp_path / 'afile', 'x')
    empty = tmp_path / 'no_images'
    (empty / 'train' / 'a').mkdir(parents=True)
    (empty / 'test' / 'a').mkdir(parents=True)

    def yaml(name, extra):
        return _write(tmp_path / name, GOOD + extra)
    d = ['--data-dir', data]
    return {
        'epochs 0 in YAML': (['-c', yaml('e0.yaml', 'epochs: 0\n')] + d, 'epochs (--epochs) must be >= 1, got 0'),
        'negative --epochs': (['-c', good, '--epochs', '-1'] + d, 'epochs (--epochs) must be >= 1, got -1'),
        'malformed YAML': (['-c', _write(tmp_path / 'bad.yaml', 'model: [a\nepochs: 1\n')] + d,
                           "bad.yaml, line 2, column 7: not valid YAML (expected ',' or ']', but got ':')"),
        'YAML not a mapping': (['-c', _write(tmp_path / 'list.yaml', '- a\n')] + d, 'must be a YAML mapping'),
        'missing config': (['-c', str(tmp_path / 'nope.yaml')] + d, 'config file not found'),
        'unknown option': (['-c', yaml('uk.yaml', 'learning_rate: 1\n')] + d,
                           'unknown training option(s): learning_rate'),
        'batch size 0': (['-c', good, '-b', '0'] + d, 'batch_size (--batch-size) must be >= 1, got 0'),
        'negative lr': (['-c', good, '--lr', '-0.1'] + d, 'lr (--lr) must be > 0, got -0.1'),
        'zero lr': (['-c', good, '--lr', '0'] + d, 'leave lr unset to scale lr_base'),
        'negative workers': (['-c', good, '--workers', '-1'] + d, 'workers (--workers) must be >= 0'),
        'zero threads': (['-c', good, '--threads', '0'] + d, 'threads (--threads) must be >= 1'),
        'zero steps per epoch': (['-c', good, '--max-steps-per-epoch', '0'] + d,
                                 'max_steps_per_epoch (--max-steps-per-epoch) must be >= 1'),
        'dropout 2': (['-c', yaml('drop.yaml', 'drop: 2\n')] + d, 'drop must be >= 0 and < 1, got 2'),
        'mean not a list': (['-c', yaml('mean.yaml', 'mean: 3\n')] + d, 'mean must be a list of 1 or 3 numbers'),
        'zero std': (['-c', yaml('std.yaml', 'std: [0, 0, 0]\n')] + d, 'std must be a list of 1 or 3 positive'),
        'scale of one number': (['-c', yaml('scale.yaml', 'scale: [1]\n')] + d,
                                'scale must be a list of 2 positive numbers in [0, 1] (low <= high)'),
        'milestones not a list': (['-c', yaml('ms.yaml', 'decay_milestones: 5\n')] + d,
                                  'decay_milestones must be a list of epoch numbers'),
        'unknown interpolation': (['-c', yaml('ip.yaml', 'interpolation: nosuch\n')] + d,
                                  'interpolation must be one of nearest, bilinear'),
        'amp not a boolean': (['-c', yaml('amp.yaml', 'amp: maybe\n')] + d, "'amp' is true or false, got 'maybe'"),
        'negative seed': (['-c', good, '--seed', '-1'] + d, 'seed (--seed) must be >= 0 and < 4294967296, got -1'),
        'unknown model_kwargs key': (['-c', yaml('mk2.yaml', 'model_kwargs: {foo: 1}\n')] + d,
                                     "unexpected keyword argument 'foo'"),
        'missing device module': (['-c', yaml('dm.yaml', 'device_modules: [no_such_module]\n')] + d,
                                  "device_modules: cannot import 'no_such_module'"),
        'model_kwargs not a mapping': (['-c', yaml('mk.yaml', 'model_kwargs: 3\n')] + d,
                                       'model_kwargs must be a mapping'),
        'model_kwargs repeating drop': (['-c', yaml('mk3.yaml', 'model_kwargs: {drop_rate: 0.2}\n')] + d,
                                        'model_kwargs: drop_rate is set by the training option drop; give it there'),
        'unknown model': (['-c', good, '--model', 'shufflenetv2_x05_cifar'] + d,
                          "unknown model 'shufflenetv2_x05_cifar'; did you mean shufflenetv2_x0_5_cifar"),
        'unknown optimizer': (['-c', yaml('opt.yaml', 'opt: nosuch\n')] + d, "cannot build optimizer 'nosuch'"),
        'unknown scheduler': (['-c', yaml('sch.yaml', 'sched: nosuch\n')] + d, "cannot build scheduler 'nosuch'"),
        'missing data folder': (['-c', good, '--data-dir', str(tmp_path / 'nodata')], 'data folder not found'),
        'no data folder given': (['-c', good], 'no data folder: pass --data-dir'),
        'missing split folder': (['-c', yaml('vs.yaml', 'val_split: val\n')] + d, "split folder 'val' not found"),
        'data without images': (['-c', good, '--data-dir', str(empty)], 'Found 0 images in subfolders'),
        'batch larger than the data': (['-c', good, '-b', '4096'] + d, 'is larger than the 80 training images'),
        'class count mismatch': (['-c', yaml('nc.yaml', 'num_classes: 7\n')] + d, '10 classes but the model has 7'),
        'output is a file': (['-c', good, '-o', afile] + d, 'is a file; the run folder must be a folder'),
        'missing --resume': (['-c', good, '--resume', str(tmp_path / 'gone.pth.tar')] + d,
                             '--resume: checkpoint not found'),
        '--resume a folder': (['-c', good, '--resume', str(run)] + d, 'is a folder; give a checkpoint file'),
        '--resume a text file': (['-c', good, '--resume', _write(tmp_path / 'text.pth', 'hello\n')] + d,
                                 'not a readable training checkpoint (not a file written by torch.save)'),
        '--resume a truncated checkpoint': (['-c', good, '--resume', str(truncated)] + d,
                                            'not a readable training checkpoint (truncated or damaged'),
        '--resume another model': (['-c', good, '--resume', str(tmp_path / 'other.pth.tar')] + d,
                                   "the checkpoint is of model 'resnet20_cifar'"),
        '--resume a finished run': (['-c', good, '--resume', str(ckpt)] + d,
                                    'nothing to train, the checkpoint has finished 1 of 1 epochs; raise epochs (--epochs)'),
        'nan lr': (['-c', good, '--lr', 'nan'] + d, 'lr (--lr) must be > 0, got nan'),
        # flags the run would not read were dropped silently: float32 training, the JPEG path without a cache
        '--amp-dtype without --amp': (['-c', good, '--amp-dtype', 'float16'] + d,
                                      '--amp-dtype float16 sets the precision of --amp, which is off'),
        '--data-cache without the device path': (['-c', good, '--data-cache', str(tmp_path / 'cache')] + d,
                                                 '--data-cache is the cache of --data-path device, and this run uses '
                                                 '--data-path jpeg'),
        'inf lr': (['-c', good, '--lr', 'inf'] + d, 'lr (--lr) must be > 0, got inf'),
        # a name given as a YAML number reached str methods: an AttributeError traceback
        'device not text': (['-c', yaml('dev.yaml', 'device: 0\n')] + d,
                            "training option 'device' needs a text value (a name or path), got 0"),
        'optimizer not text': (['-c', yaml('opt5.yaml', 'opt: 5\n')] + d,
                               "training option 'opt' needs a text value (a name or path), got 5"),
        'dataset null': (['-c', yaml('dsn.yaml', 'dataset: null\n')] + d,
                         "training option 'dataset' needs a text value (a name or path), got None"),
        # timm's multistep scheduler bisects the milestones: out of order, the lr decayed at the wrong epochs
        'milestones out of order': (['-c', yaml('ms2.yaml', 'sched: multistep\ndecay_milestones: [10, 5]\n')] + d,
                                    'decay_milestones must be in increasing order, got [10, 5]'),
    }


CASES = ['epochs 0 in YAML', 'negative --epochs', 'malformed YAML', 'YAML not a mapping', 'missing config',
         'unknown option', 'batch size 0', 'negative lr', 'zero lr', 'negative workers', 'zero threads',
         'zero steps per epoch', 'dropout 2', 'mean not a list', 'zero std', 'scale of one number',
         'milestones not a list', 'unknown interpolation', 'amp not a boolean', 'negative seed',
         'unknown model_kwargs key', 'missing device module', 'model_kwargs not a mapping', 'unknown model',
         'unknown optimizer',
         'unknown scheduler', 'missing data folder', 'no data folder given', 'missing split folder',
         'data without images', 'batch larger than the data', 'class count mismatch', 'output is a file',
         'missing --resume', '--resume a folder', '--resume a text file', '--resume a truncated checkpoint',
         '--resume another model', '--resume a finished run', 'nan lr', 'inf lr', '--amp-dtype without --amp',
         '--data-cache without the device path', 'device not text', 'optimizer not text', 'dataset null',
         'milestones out of order', 'model_kwargs repeating drop']
if not torch.cuda.is_available():
    CASES.append('--device cuda without CUDA')


@pytest.mark.parametrize('case', CASES)
def test_bad_train_input_is_one_line_and_writes_nothing(case, tiny_cifar, finished_run, tmp_path, capsys):
    from timm_recal.cli import main
    cases = _bad_cases(tmp_path, tiny_cifar, finished_run)
    cases['--device cuda without CUDA'] = (['-c', str(tmp_path / 'good.yaml'), '--device', 'cuda',
                                            '--data-dir', tiny_cifar], 'CUDA is not available')
    argv, message = cases[case]
    out = tmp_path / 'new' / 'run'
    if '-o' not in argv:
        argv = argv + ['-o', str(out)]
    before = sorted(os.listdir(finished_run))
    assert main(['train', *argv, '--threads', '1'] if '--threads' not in argv else ['train', *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('timm-recal train: error: '), err
    assert message in err
    assert not (tmp_path / 'new').exists(), 'nothing written, no folder created'
    assert sorted(os.listdir(finished_run)) == before


@pytest.mark.parametrize('arch, model, refused', [
    (f'{MODEL}.cifar10', MODEL, False), (MODEL, f'{MODEL}.cifar10', False), ('resnet20_cifar.cifar10', MODEL, True)])
def test_resume_compares_architectures_not_tags(arch, model, refused, finished_run, tmp_path):
    """A checkpoint of ``X.cifar10`` (a run warm-started from tagged weights) resumes under ``X`` and the other way
    round: the same architecture, refused before as "another model"; another architecture still is."""
    import timm
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import _load_resume
    ckpt = torch.load(finished_run / 'last.pth.tar', map_location='cpu', weights_only=False)
    ckpt['arch'] = arch
    torch.save(ckpt, tmp_path / 'ckpt.pth.tar')
    cfg = load_config(None, dict(model=model))
    net = timm.create_model(MODEL)
    if refused:
        with pytest.raises(ValueError, match=f"the checkpoint is of model '{arch}'"):
            _load_resume(net, cfg, str(tmp_path / 'ckpt.pth.tar'), None, None)
    else:
        assert _load_resume(net, cfg, str(tmp_path / 'ckpt.pth.tar'), None, None) == 1
        assert all(torch.equal(v, ckpt['state_dict'][k]) for k, v in net.state_dict().items())


def _cli(*args, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return [sys.executable, '-m', 'timm_recal.cli', *args], dict(env=env, cwd=kwargs.get('cwd', REPO), text=True)


@pytest.mark.parametrize('case', ['epochs 0 in YAML', 'malformed YAML', 'missing --resume'])
def test_bad_train_input_in_a_real_process(case, tiny_cifar, finished_run, tmp_path):
    """The issue's three tracebacks/blank errors, as a user sees them: exit 2, one line, no traceback, no folder."""
    argv, message = _bad_cases(tmp_path, tiny_cifar, finished_run)[case]
    cmd, kw = _cli('train', *argv, '-o', str(tmp_path / 'new' / 'run'))
    r = subprocess.run(cmd, capture_output=True, timeout=300, **kw)
    assert r.returncode == 2, r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr
    assert not (tmp_path / 'new').exists()


def _start(tmp_path, data, out, batch_size=4):
    config = _write(tmp_path / 'kill.yaml', GOOD)
    cmd, kw = _cli('train', '-c', config, '-o', str(out), '--data-dir', data, '--epochs', '3', '-b', str(batch_size),
                   '--threads', '1')
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_sigterm_in_the_first_epoch_leaves_no_folder(tiny_cifar, tmp_path):
    out = tmp_path / 'new' / 'run'
    proc = _start(tmp_path, tiny_cifar, out, batch_size=2)  # 40 steps in the first epoch
    t0 = time.time()
    while not out.is_dir():  # made once everything is built, just before the first epoch starts
        assert proc.poll() is None and time.time() - t0 < 240, proc.communicate()
        time.sleep(0.02)
    assert not os.listdir(out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'interrupted' in err and 'Traceback' not in err, err
    assert not (tmp_path / 'new').exists(), 'the folders this run created are gone'


def test_failed_run_removes_only_the_folders_it_created(tiny_cifar, tmp_path, monkeypatch):
    """A run that fails in its first epoch (here: the loss diverges) removes the run folder and parents it made,
    keeps a folder that existed before, and the CLI reports it as one line."""
    import timm_recal.training.trainer as trainer
    from timm_recal.cli import main
    from timm_recal.training.config import load_config
    config = _write(tmp_path / 'c.yaml', GOOD)

    def nan_loss(*args, **kwargs):
        return torch.tensor(float('nan'))
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, 'forward', nan_loss)
    with pytest.raises(trainer.TrainingDiverged, match=r'loss is nan at epoch 1, step 1; lower lr \(--lr\)'):
        trainer.train(load_config(config, dict(data_dir=tiny_cifar, output=str(tmp_path / 'a' / 'b' / 'run'),
                                               threads=1)))
    assert not (tmp_path / 'a').exists()
    existing = tmp_path / 'existing'
    existing.mkdir()
    assert main(['train', '-c', config, '--data-dir', tiny_cifar, '-o', str(existing), '--threads', '1']) == 2
    assert existing.is_dir() and not os.listdir(existing)


def test_checkpoint_and_summary_writes_are_whole_or_nothing(tmp_path, monkeypatch):
    """A save that dies half-way (disk full, kill) leaves the previous last.pth.tar/summary.csv and no temp file."""
    from timm_recal.training.trainer import _append_summary, _atomic_saver
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = _atomic_saver(model, opt, checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(0, metric=1.0)
    _append_summary(str(tmp_path / 'summary.csv'), 0, {'loss': 1.0}, {'top1': 1.0}, lr=0.1)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    assert sorted(before) == ['checkpoint-0.pth.tar', 'last.pth.tar', 'model_best.pth.tar', 'summary.csv']
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, 'r+b') as fh:
            fh.truncate(100)
        raise KeyboardInterrupt('killed mid-save')
    monkeypatch.setattr(torch, 'save', dying_save)
    with pytest.raises(KeyboardInterrupt):
        saver.save_checkpoint(1, metric=2.0)
    monkeypatch.setattr(torch, 'save', real_save)
    real_replace = os.replace

    def dying_replace(src, dst):  # killed after the save, before it becomes `last`
        if os.path.basename(dst) == 'last.pth.tar':
            raise KeyboardInterrupt('killed between save and rename')
        real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', dying_replace)
    with pytest.raises(KeyboardInterrupt):
        saver.save_checkpoint(1, metric=2.0)
    monkeypatch.setattr(os, 'replace', real_replace)
    import timm.utils

    def dying_summary(epoch, train_metrics, eval_metrics, filename, **kwargs):
        with open(filename, 'a') as fh:
            fh.write('1,0.5')
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(timm.utils, 'update_summary', dying_summary)
    with pytest.raises(OSError, match='No space'):
        _append_summary(str(tmp_path / 'summary.csv'), 1, {'loss': 0.5}, {'top1': 2.0}, lr=0.1)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_records_hold_no_absolute_paths_and_epochs_count_from_one(tiny_cifar, tmp_path, monkeypatch, capsys):
    """results.json and the checkpoint's args name folders relative to the working folder (or by name only when
    outside it); the CLI says 'epoch 1 of 1' after one epoch, results.json keeps summary.csv's 0."""
    from timm_recal.cli import main
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    config = _write(work / 'c.yaml', GOOD)
    assert main(['train', '-c', config, '--data-dir', tiny_cifar, '-o', str(work / 'runs' / 'r1'), '--threads', '1',
                 '--max-steps-per-epoch', '1']) == 0
    out = capsys.readouterr().out
    assert 'at epoch 1 of 1;' in out and 'epoch 1/1:' in out
    results = (work / 'runs' / 'r1' / 'results.json').read_text()
    assert str(tmp_path) not in results and os.path.expanduser('~') + os.sep not in results
    assert json.loads(results)['best_epoch'] == 0  # summary.csv's epoch column
    args = torch.load(work / 'runs' / 'r1' / 'last.pth.tar', map_location='cpu', weights_only=False)['args']
    assert args.output == os.path.join('runs', 'r1')
    assert args.data_dir == os.path.basename(tiny_cifar), 'a folder outside the working folder: its name only'
    assert str(tmp_path) not in repr(vars(args))


def test_forced_fresh_run_replaces_the_old_run_only_after_its_first_epoch(tiny_cifar, tmp_path, monkeypatch, capsys):
    """`train --force` into an old run folder: stopped in its first epoch, the old run is untouched; finished, none
    of the old run's files (a later checkpoint-N, results.json) remain beside the new ones."""
    import timm_recal.training.trainer as trainer
    from timm_recal.cli import main
    config = _write(tmp_path / 'c.yaml', GOOD)
    out = tmp_path / 'run'
    base = ['train', '-c', config, '--data-dir', tiny_cifar, '-o', str(out), '--threads', '1',
            '--max-steps-per-epoch', '1']
    assert main(base + ['--epochs', '2']) == 0
    old = {n: (out / n).read_bytes() for n in os.listdir(out)}
    assert 'checkpoint-1.pth.tar' in old or 'checkpoint-0.pth.tar' in old

    def stop(*args, **kwargs):
        raise KeyboardInterrupt('stopped')
    with monkeypatch.context() as m:
        m.setattr(trainer, 'evaluate', stop)  # the end of the first epoch, before anything is written
        assert main(base + ['--force']) == 130
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == old
    assert main(base + ['--force']) == 0
    capsys.readouterr()
    names = sorted(os.listdir(out))
    assert names == ['checkpoint-0.pth.tar', 'last.pth.tar', 'model_best.pth.tar', 'results.json', 'summary.csv']
    assert json.loads((out / 'results.json').read_text())['epochs'] == 1


# --- issue 21: eval labels by name, interrupts at known points (timm_recal.pause_points) ---------------------------
@pytest.fixture(scope='module')
def gap_cifar(tiny_cifar, tmp_path_factory):
    """The tiny CIFAR-10 copy whose test split has no ``bird`` folder (the third class)."""
    import shutil
    root = tmp_path_factory.mktemp('gap') / 'data'
    shutil.copytree(tiny_cifar, root)
    shutil.rmtree(root / 'test' / 'bird')
    return root


def test_eval_split_without_a_class_keeps_the_train_class_indices(gap_cifar, tmp_path, monkeypatch, capsys):
    """Sorted on its own, the test split would number 'cat' 2 (the train split's 'bird'): every label after the gap
    shifted, a wrong top-1 and exit 0. By name, each eval image keeps its train class index."""
    import timm_recal.training.trainer as trainer
    from timm_recal.cli import main
    seen = []
    evaluate = trainer.evaluate

    def spy(model, loader, cfg):
        seen.append(list(loader.dataset.reader.samples))
        return evaluate(model, loader, cfg)
    monkeypatch.setattr(trainer, 'evaluate', spy)
    assert main(['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', str(gap_cifar), '-o',
                 str(tmp_path / 'run'), '--threads', '1', '--max-steps-per-epoch', '1']) == 0
    classes = sorted(os.listdir(gap_cifar / 'train'))
    labels = {os.path.basename(os.path.dirname(path)): target for path, target in seen[0]}
    assert labels == {c: i for i, c in enumerate(classes) if c != 'bird'}


def test_device_path_eval_split_without_a_class_keeps_the_train_class_indices(gap_cifar, tmp_path, monkeypatch):
    """The same gap on ``--data-path device``: the eval cache's labels are renumbered as the train split's by
    folder name (its own sorted folders would shift every class after 'bird')."""
    import collections
    import timm_recal.training.trainer as trainer
    from timm_recal.cli import main
    seen = []
    evaluate = trainer.evaluate

    def spy(model, loader, cfg):
        seen.append((dict(loader.class_to_idx), collections.Counter(loader.labels.tolist())))
        return evaluate(model, loader, cfg)
    monkeypatch.setattr(trainer, 'evaluate', spy)
    assert main(['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', str(gap_cifar), '-o',
                 str(tmp_path / 'run'), '--threads', '1', '--max-steps-per-epoch', '1', '--data-path', 'device',
                 '--data-cache', str(tmp_path / 'cache')]) == 0
    classes = sorted(os.listdir(gap_cifar / 'train'))
    expected = {c: i for i, c in enumerate(classes) if c != 'bird'}
    class_to_idx, counts = seen[0]
    assert class_to_idx == expected
    assert counts == {expected[c]: len(os.listdir(gap_cifar / 'test' / c)) for c in expected}


def test_eval_folder_that_is_no_train_class_is_refused(gap_cifar, tmp_path, capsys):
    import shutil
    from timm_recal.cli import main
    data = tmp_path / 'data'
    shutil.copytree(gap_cifar, data)
    (data / 'test' / 'cat').rename(data / 'test' / 'zebra')
    rc = main(['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', str(data), '-o',
               str(tmp_path / 'new' / 'run'), '--threads', '1'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "has class folder(s) zebra that are not classes of the train split (airplane, automobile" in err
    assert not (tmp_path / 'new').exists()


def test_device_path_refuses_a_foreign_eval_folder_before_decoding(gap_cifar, tmp_path, capsys, monkeypatch):
    """On ``--data-path device`` the same refusal comes from the folder listing: nothing decoded, no cache file."""
    import shutil
    import timm_recal.training.image_cache as image_cache
    from timm_recal.cli import main
    data = tmp_path / 'data'
    shutil.copytree(gap_cifar, data)
    (data / 'test' / 'cat').rename(data / 'test' / 'zebra')
    decoded = []
    monkeypatch.setattr(image_cache, '_decode', lambda plan: decoded.append(plan) or pytest.fail('decoded'))
    rc = main(['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', str(data), '-o',
               str(tmp_path / 'new' / 'run'), '--threads', '1', '--data-path', 'device',
               '--data-cache', str(tmp_path / 'cache')])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert 'has class folder(s) zebra that are not classes of the train split' in err
    assert not decoded and not (tmp_path / 'cache').exists() and not (tmp_path / 'new').exists()


@pytest.mark.parametrize('where', ['file', 'under_a_file'])
def test_a_data_cache_that_cannot_be_a_folder_is_one_line_before_decoding(where, tiny_cifar, tmp_path, capsys,
                                                                          monkeypatch):
    """``--data-cache FILE`` decoded every image, then ended in a NotADirectoryError traceback (the cleanup of the
    temporary name under a file raised over the write error): now refused before any work."""
    import timm_recal.training.image_cache as image_cache
    from timm_recal.cli import main
    afile = tmp_path / 'afile.txt'
    afile.write_text('hi')
    cache = afile if where == 'file' else afile / 'cache'
    monkeypatch.setattr(image_cache, '_decode', lambda plan: pytest.fail('decoded'))
    rc = main(['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', tiny_cifar, '-o',
               str(tmp_path / 'new' / 'run'), '--threads', '1', '--data-path', 'device', '--data-cache', str(cache)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f'--data-cache): {afile} is a file, so {cache} cannot be a folder'), err
    assert afile.read_text() == 'hi' and not (tmp_path / 'new').exists()


def test_ctrl_c_while_the_command_imports_is_one_line_and_exit_130(tiny_cifar, tmp_path):
    """Ctrl-C in the seconds ``import timm_recal`` loads torch (held there): 'interrupted', exit 130, no traceback,
    nothing written."""
    from pause_helpers import Held, cli
    held = Held(cli() + ['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', tiny_cifar,
                         '-o', str(tmp_path / 'new' / 'run')], 'import', str(tmp_path / 'held'))
    held.wait_held()
    rc, _, err = held.signal(signal.SIGINT)
    assert rc == 130 and err.strip() == 'interrupted', err
    assert not (tmp_path / 'new').exists()


@pytest.mark.parametrize('sig', [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupted_after_the_first_epoch_keeps_it_and_resume_auto_continues(sig, tiny_cifar, tmp_path):
    """Held right after epoch 1's row and checkpoint are written, then signalled: exit 130, that epoch kept whole
    (checkpoint, one summary row), no temporary file; ``--resume auto`` trains epoch 2 only."""
    from pause_helpers import Held, cli
    out = tmp_path / 'run'
    argv = cli() + ['train', '-c', _write(tmp_path / 'c.yaml', GOOD), '--data-dir', tiny_cifar, '-o', str(out),
                    '--epochs', '2', '--max-steps-per-epoch', '1', '--threads', '1']
    held = Held(argv, 'train.epoch_end', str(tmp_path / 'held'))
    held.wait_held()
    rc, stdout, err = held.signal(sig)
    assert rc == 130 and 'Traceback' not in err and 'epoch 1/2:' in stdout and 'epoch 2/2' not in stdout, err
    names = sorted(os.listdir(out))
    assert names == ['checkpoint-0.pth.tar', 'last.pth.tar', 'model_best.pth.tar', 'summary.csv'], names
    assert torch.load(out / 'last.pth.tar', map_location='cpu', weights_only=False)['epoch'] == 0
    with open(out / 'summary.csv', newline='') as f:
        assert [int(r['epoch']) for r in csv.DictReader(f)] == [0]
    r = subprocess.run(argv + ['--resume', 'auto'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'epoch 2/2:' in r.stdout and 'epoch 1/2:' not in r.stdout, r.stderr
    with open(out / 'summary.csv', newline='') as f:
        assert [int(r['epoch']) for r in csv.DictReader(f)] == [0, 1]
