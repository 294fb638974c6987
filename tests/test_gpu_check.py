"""benchmarks/gpu/run.sh and its driver: the plan and the deadline logic on the CPU (no GPU needed); the whole
dry run (cnn3 at 32x32 on the CPU, compiles) under ``-m slow``."""
import importlib.util
import json
import os
import subprocess

import pytest

from deploy_helpers import REPO

_spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(REPO, 'benchmarks', 'gpu', 'gpu_check.py'))
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_the_gpu_plan_covers_the_issue(tmp_path):
    steps = gpu_check.plan(str(tmp_path), dry=False)
    assert steps[0].name == 'CUDA tests'
    benches = [s for s in steps if s.name.startswith('bench')]
    text = [' '.join(s.argv) for s in benches]
    assert len(benches) == 5 and all('--device cuda' in t and 'eager_cl,inductor,aoti' in t for t in text)
    assert sum('--batch 1,256' in t for t in text) == 2 and sum('--batch 1,1024' in t for t in text) == 3
    assert {s.output for s in steps} and all(s.output.startswith(str(tmp_path)) for s in steps)
    assert any('parity resnet50 fp16' in s.name for s in steps)


def test_steps_after_the_deadline_are_skipped_and_the_rest_get_the_time_left(tmp_path):
    now = [0.0]
    ran = []

    def run(step):
        ran.append((step.name, step.timeout_s))
        step.status = 'ok'
        now[0] += 100

    steps = gpu_check.run_steps(gpu_check.plan(str(tmp_path), dry=False), 250.0, run, clock=lambda: now[0])
    assert [s.status for s in steps[:3]] == ['ok', 'ok', 'ok'] and all(s.status == 'skipped' for s in steps[3:])
    assert ran[2][1] == 50.0  # the last step that started got only the time left


def test_run_sh_needs_a_folder():
    proc = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu', 'run.sh')], capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if k != 'OUT'})
    assert proc.returncode == 2 and 'usage' in proc.stderr


@pytest.mark.slow
def test_dry_run_writes_the_summary(tmp_path):
    proc = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu', 'run.sh'), str(tmp_path), '--dry'],
                          capture_output=True, text=True, timeout=900)
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary['dry'] and all(s['status'] == 'ok' for s in summary['steps'])
    parity = json.loads((tmp_path / 'parity_cnn3.json').read_text())
    assert parity['runtimes']['aoti']['max_abs_err'] <= 2 * parity['eager_fp32_max_abs_err'] + 1e-5
