"""Training images/s of the device-resident data path against the JPEG path, measured side by side.

Each round runs ``timm-recal train`` once per data path (order alternating between rounds), two epochs of
``--max-steps-per-epoch`` steps each, and reads the second epoch's ``train_img_per_s`` from summary.csv (the first
epoch starts the JPEG path's worker processes and warms the allocator). Everything else is the config's: the
shipped CPU recipe trains the x0.5 net with one loader worker, channels_last, batch 128.

    python benchmarks/scripts/train_data_path.py --data-dir DATA -o benchmarks/train_data_path_x0_5_cpu.json

DATA is an ImageFolder of 32x32 images with train/ and test/ (the script's --subset makes a small copy of
CIFAR-10 so the per-epoch evaluation stays short; the data path's speed does not depend on the split's size).
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _subset(src: str, dst: str, train_per_class: int, test_per_class: int) -> str:
    for split, n in (('train', train_per_class), ('test', test_per_class)):
        for cls in sorted(os.listdir(os.path.join(src, split))):
            os.makedirs(os.path.join(dst, split, cls), exist_ok=True)
            for name in sorted(os.listdir(os.path.join(src, split, cls)))[:n]:
                shutil.copy(os.path.join(src, split, cls, name), os.path.join(dst, split, cls, name))
    return dst


def _two_epoch_config(config: str, tmp: str) -> str:
    """The config as two plain epochs (one cosine cycle, no warm-up): the recipe's cycles would multiply them."""
    import yaml
    with open(config) as f:
        values = yaml.safe_load(f)
    values.update(epochs=2, lr_cycle_limit=1, warmup_epochs=0)
    path = os.path.join(tmp, 'config.yaml')
    with open(path, 'w') as f:
        yaml.safe_dump(values, f)
    return path


def _run(args, data: str, path: str, out: str) -> float:
    cmd = ['timm-recal', 'train', '-c', args.run_config, '--data-dir', data,
           '--max-steps-per-epoch', str(args.steps), '--data-path', path, '--data-cache', args.cache,
           '--threads', str(args.threads), '-o', out, '--force', *args.train_args.split()]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, 'summary.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]['train_img_per_s'])


def _interleaved_speeds(args, data: str, train: bool) -> dict:
    """Images/s of the two data paths in one process, ``--rounds`` interleaved windows of ``--steps`` batches each
    (so a load change on the shared machine hits both alike). ``train``: each batch also takes a training step of
    the config's model (one model and optimizer per path); else the loaders alone."""
    import dataclasses
    import timm
    import torch
    from timm.data import resolve_data_config
    from timm_recal.training.config import load_config
    from timm_recal.training.trainer import build_loaders
    torch.set_num_threads(args.threads)
    cfg = load_config(args.run_config, {'data_dir': data, 'data_cache': args.cache, 'output': 'unused'})
    model = timm.create_model(cfg.model, **cfg.model_kwargs)
    data_config = resolve_data_config({'mean': cfg.mean, 'std': cfg.std}, model=model)
    loaders = {'jpeg': build_loaders(cfg, data_config)[0],
               'device': build_loaders(dataclasses.replace(cfg, data_path='device'), data_config)[0]}
    iters = {k: iter(v) for k, v in loaders.items()}
    nets = {}
    for k in loaders:
        torch.manual_seed(0)
        net = timm.create_model(cfg.model, **cfg.model_kwargs).train()
        if cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        nets[k] = (net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
    speeds = {k: [] for k in loaders}

    def step(k):
        try:
            x, y = next(iters[k])
        except StopIteration:
            iters[k] = iter(loaders[k])
            x, y = next(iters[k])
        if train:
            net, opt = nets[k]
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return x.shape[0]
    for k in loaders:  # start the workers, warm up
        step(k)
    for r in range(args.rounds):
        for k in (('jpeg', 'device') if r % 2 == 0 else ('device', 'jpeg')):
            t0, n = time.perf_counter(), 0
            for _ in range(args.steps):
                n += step(k)
            speeds[k].append(n / (time.perf_counter() - t0))
            print(f"{'train' if train else 'loader'} round {r + 1}/{args.rounds} {k}: {speeds[k][-1]:.1f} img/s",
                  flush=True)
    return speeds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data-dir', required=True)
    p.add_argument('--config', default=os.path.join(ROOT, 'train_configs/cifar10/shufflenetv2_x0_5_short_cpu.yaml'))
    p.add_argument('--subset', type=int, nargs=2, default=(300, 20), metavar=('TRAIN', 'TEST'),
                   help='images per class copied from DATA (0 0: use DATA as is)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--steps', type=int, default=8)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--mode', choices=['runs', 'steps', 'loader'], default='runs',
                   help='runs: whole `timm-recal train` runs per path; steps: training steps of both paths '
                        'interleaved in one process; loader: the loaders alone (no model)')
    p.add_argument('--train-args', default='', metavar='"ARGS"',
                   help='runs: more `timm-recal train` options, the same for both paths (e.g. "--torchcompile")')
    p.add_argument('-o', '--output', required=True)
    args = p.parse_args()
    from deploy.timing import busy_cpus, machine_info
    from timm_recal.outputs import write_json
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir if args.subset == [0, 0] else _subset(args.data_dir, os.path.join(tmp, 'data'),
                                                                      *args.subset)
        args.cache = os.path.join(tmp, 'cache')
        args.run_config = _two_epoch_config(args.config, tmp)
        if args.mode != 'runs':
            speeds = _interleaved_speeds(args, data, train=args.mode == 'steps')
            ratios = [d / j for d, j in zip(speeds['device'], speeds['jpeg'])]
            what = ('training steps (loader + forward/backward/SGD step of the config\'s model), both paths '
                    'interleaved in one process' if args.mode == 'steps' else 'the training loader alone (no model)')
            write_json({'kind': f'timm-recal-data-path-{args.mode}', 'what': f'images/s of {what}: device vs JPEG',
                        'config': os.path.relpath(args.config, ROOT), 'batches_per_window': args.steps,
                        'threads': args.threads, 'img_per_s': speeds,
                        'median_img_per_s': {k: statistics.median(v) for k, v in speeds.items()},
                        'ratio_device_over_jpeg_per_round': ratios, 'ratio_median': statistics.median(ratios),
                        'machine': machine_info(), 'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())},
                       args.output, force=True)
            print(f"{args.mode}, device / jpeg: {statistics.median(ratios):.2f}x; {args.output}")
            return 0
        _run(args, data, 'device', os.path.join(tmp, 'warm'))  # builds the cache: not timed
        speeds = {'jpeg': [], 'device': []}
        busy = []
        for r in range(args.rounds):
            for path in (('jpeg', 'device') if r % 2 == 0 else ('device', 'jpeg')):
                busy.append(busy_cpus())
                speeds[path].append(_run(args, data, path, os.path.join(tmp, f'{path}{r}')))
                print(f"round {r + 1}/{args.rounds} {path}: {speeds[path][-1]:.1f} img/s", flush=True)
    ratios = [d / j for d, j in zip(speeds['device'], speeds['jpeg'])]
    result = {
        'kind': 'timm-recal-train-data-path',
        'what': 'training images/s of `timm-recal train`, device-resident data path vs JPEG path, same config',
        'config': os.path.relpath(args.config, ROOT), 'steps_per_epoch': args.steps, 'threads': args.threads,
        'train_args': args.train_args,
        'train_images_per_class': args.subset[0],
        'img_per_s': {k: v for k, v in speeds.items()},
        'median_img_per_s': {k: statistics.median(v) for k, v in speeds.items()},
        'ratio_device_over_jpeg_per_round': ratios,
        'ratio_median': statistics.median(ratios),
        'busy_cpus_before_each_run': busy,
        'machine': machine_info(),
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    write_json(result, args.output, force=True)
    print(f"device / jpeg: {result['ratio_median']:.2f}x (median of {args.rounds} rounds); {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
