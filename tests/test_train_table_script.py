"""benchmarks/gpu/train_table.sh in its CPU dry mode: data unpacked, cache built, the table's 8 runs side by side
(1 epoch of 1 step), the weights folders, table.json and table.md. Slow (8 training processes): -m slow."""
import json
import os
import subprocess
import tarfile

import pytest

from train_helpers import REPO, make_tiny_cifar


@pytest.mark.slow
def test_train_table_dry_mode(tmp_path):
    data = make_tiny_cifar(str(tmp_path / 'cifar10'), 8, 2)
    tgz = tmp_path / 'cifar10.tgz'
    with tarfile.open(tgz, 'w:gz') as tar:
        tar.add(data, arcname='cifar10')
    out = tmp_path / 'out'
    env = dict(os.environ, TABLE_DEVICE='cpu', TABLE_EPOCHS='1', TABLE_MAX_STEPS='1', TABLE_PARALLEL='2',
               TABLE_DATA=str(tgz), TABLE_WORK=str(tmp_path / 'work'), OUT=str(out), PYTHON='python')
    subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu', 'train_table.sh')], check=True, env=env,
                   timeout=3600)
    table = json.loads((out / 'table.json').read_text())
    nets = {n['model']: n for n in table['nets']}
    assert set(nets) == {f'{g}shufflenetv2_cifar' for g in ('', 'se_', 'sle_', 'ab_')}
    assert all(n['best_top1']['n'] == 2 for n in nets.values())
    assert nets['se_shufflenetv2_cifar']['paper_top1'] == 90.26
    assert {r['seed'] for r in nets['shufflenetv2_cifar']['runs']} == {0, 1}
    assert sorted(p.name for p in out.iterdir() if p.name.endswith('.tgz')) == sorted(
        f'{m}.cifar10.tgz' for m in nets)
    assert len(list(out.iterdir())) <= 8  # what the device tool sends back
    assert (out / 'table.md').read_text().startswith('| net | paper top-1 |')
    weights = tmp_path / 'work' / 'weights' / 'se_shufflenetv2_cifar.cifar10'
    assert json.loads((weights / 'config.json').read_text())['architecture'] == 'se_shufflenetv2_cifar'
