"""The one prepared GPU check of issue 20 (``run.sh`` calls it): parity of ``inductor``/``aoti`` fp16 against
float64, bench of eager / inductor / aoti for resnet50, seresnet50, ab_resnet50 (batch 1 and 256) and the x1.0
CIFAR ShuffleNetV2 quartet (batch 1 and 1024), and the CUDA tests, into one folder of JSON files.

Every step runs as its own command with a timeout, in priority order, under one deadline (``--budget-s``): a
step that would start after the deadline is recorded as skipped, so the whole check ends in time and whatever
ran is kept. ``summary.json`` lists each step: command, status (ok / failed / timeout / skipped), seconds, and
its output file. ``--dry`` runs the same plan on the CPU with cnn3 at 32x32, fp32 and tiny timing: the logic,
not the numbers.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: (target, base, batches) of the GPU benches
PAIRS = [('seresnet50', 'resnet50', '1,256'), ('ab_resnet50', 'resnet50', '1,256'),
         ('se_shufflenetv2_x1_0_cifar', 'shufflenetv2_x1_0_cifar', '1,1024'),
         ('sle_shufflenetv2_x1_0_cifar', 'shufflenetv2_x1_0_cifar', '1,1024'),
         ('ab_shufflenetv2_x1_0_cifar', 'shufflenetv2_x1_0_cifar', '1,1024')]
PARITY_MODELS = ['resnet50', 'seresnet50', 'ab_resnet50', 'se_shufflenetv2_x1_0_cifar']


@dataclass
class Step:
    name: str
    argv: List[str]
    timeout_s: float
    output: Optional[str] = None
    status: str = 'pending'
    seconds: float = 0.0
    tail: List[str] = field(default_factory=list)


def plan(out: str, dry: bool) -> List[Step]:
    """The steps in priority order: CUDA tests, parity, then the benches (the resnet50 pair first)."""
    cli = [sys.executable, '-m', 'timm_recal.cli']
    steps: List[Step] = []
    if dry:
        steps.append(Step('parity cnn3 aoti fp32 vs float64', [sys.executable, __file__, 'parity', 'cnn3', '--device',
                                                               'cpu', '--precision', 'fp32', '--img-size', '32', '-o',
                                                               os.path.join(out, 'parity_cnn3.json')], 600,
                          os.path.join(out, 'parity_cnn3.json')))
        steps.append(Step('bench cnn3 eager/inductor/aoti', cli + [
            'bench', 'cnn3', '--img-size', '32', '--runtimes', 'eager,inductor,aoti', '--batch', '1,2',
            '--warmup', '1', '--repeats', '1', '--min-time', '0', '-o', os.path.join(out, 'bench_cnn3.json')], 900,
            os.path.join(out, 'bench_cnn3.json')))
        return steps
    steps.append(Step('CUDA tests', [sys.executable, '-m', 'pytest', os.path.join(REPO, 'tests',
                                                                                  'test_deploy_compiled.py'),
                                     '-q', '-n', '0', '-k', 'cuda', '-p', 'no:cacheprovider',
                                     f"--junitxml={os.path.join(out, 'cuda_tests.xml')}"], 240,
                      os.path.join(out, 'cuda_tests.xml')))
    for model in PARITY_MODELS:
        path = os.path.join(out, f'parity_{model}.json')
        steps.append(Step(f'parity {model} fp16 vs float64', [sys.executable, __file__, 'parity', model, '--device',
                                                               'cuda', '--precision', 'fp16', '-o', path], 240, path))
    for target, base, batches in PAIRS:
        path = os.path.join(out, f'bench_{target}_vs_{base}.json')
        steps.append(Step(f'bench {target} vs {base}', cli + [
            'bench', target, '--compare', base, '--device', 'cuda', '--runtimes', 'eager_cl,inductor,aoti', '--amp',
            '--precision', 'fp16', '--batch', batches, '--warmup', '2', '--repeats', '3', '--min-time', '0.3',
            '--compile-timeout', '240', '-o', path], 420, path))
    return steps


def run_steps(steps: List[Step], deadline: float, run: Callable[[Step], None],
              clock: Callable[[], float] = time.monotonic) -> List[Step]:
    """Run each step while time is left (a step gets at most the time left); the rest are skipped."""
    for step in steps:
        left = deadline - clock()
        if left < 20:
            step.status = 'skipped'
            step.tail = ['the time budget was spent on the steps before it']
            continue
        step.timeout_s = min(step.timeout_s, left)
        t0 = clock()
        run(step)
        step.seconds = round(clock() - t0, 1)
    return steps


def run_subprocess(step: Step) -> None:
    try:
        proc = subprocess.run(step.argv, capture_output=True, text=True, timeout=step.timeout_s)
        step.status = 'ok' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
        step.tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
    except subprocess.TimeoutExpired as e:
        step.status = 'timeout'
        step.tail = ((e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes)
                     else (e.stdout or '')).strip().splitlines()[-8:]


def parity_main(argv: List[str]) -> int:
    """``gpu_check.py parity MODEL``: max |logit error| of eager fp32, inductor and aoti against float64 eager, and
    top-1 agreement, on the bundled sample images (random weights: no download)."""
    import numpy as np
    import torch
    import timm
    import timm_recal  # noqa: F401
    from timm_recal_deploy.images import make_loader
    from timm_recal_deploy.model_io import data_config_of
    from timm_recal_deploy.runtimes import open_runtime
    p = argparse.ArgumentParser()
    p.add_argument('model')
    p.add_argument('--device', default='cuda')
    p.add_argument('--precision', default='fp16')
    p.add_argument('--img-size', type=int)
    p.add_argument('-o', '--output', required=True)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = timm.create_model(a.model).eval()
    cfg = data_config_of(model, a.img_size)
    x = next(iter(make_loader(None, cfg, 16, limit=16)))[0]
    with torch.no_grad():
        ref = model.double()(x.double()).numpy()
        fp32 = model.float()(x).numpy()
    record = {'model': a.model, 'device': a.device, 'precision': a.precision, 'images': len(x),
              'torch': torch.__version__, 'eager_fp32_max_abs_err': float(np.abs(fp32 - ref).max()), 'runtimes': {}}
    for word in ('inductor', 'aoti'):
        try:
            runner = open_runtime(word, model, precision=a.precision, device=a.device,
                                  input_size=cfg['input_size'], compile_timeout=200)
            out = runner(x.numpy())
            record['runtimes'][word] = {
                'max_abs_err': float(np.abs(out - ref).max()),
                'top1_agreement': float((out.argmax(1) == ref.argmax(1)).mean()), 'describe': runner.describe()}
        except Exception as e:  # one runtime failing (a compile crash) must not hide the other's numbers
            record['runtimes'][word] = {'error': str(e).splitlines()[0][:400]}
    with open(a.output, 'w', encoding='utf-8') as f:
        json.dump(record, f, indent=2)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == 'parity':
        return parity_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', help='folder for the JSON files (created)')
    p.add_argument('--dry', action='store_true', help='the same plan on the CPU, cnn3 at 32x32, tiny timing')
    p.add_argument('--budget-s', type=float, default=450.0, help='deadline for all steps (default 450 s)')
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.monotonic()
    steps = run_steps(plan(a.out, a.dry), t0 + a.budget_s, run_subprocess)
    summary = {'kind': 'timm-recal-gpu-check', 'dry': a.dry, 'seconds': round(time.monotonic() - t0, 1),
               'budget_s': a.budget_s, 'steps': [dict(asdict(s), argv=' '.join(os.path.basename(x) if i == 0 else x
                                                                               for i, x in enumerate(s.argv)))
                                                  for s in steps]}
    with open(os.path.join(a.out, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    for s in steps:
        print(f'{s.status:>10}  {s.seconds:6.1f} s  {s.name}')
    return 0 if all(s.status == 'ok' for s in steps) else 1


if __name__ == '__main__':
    sys.exit(main())
