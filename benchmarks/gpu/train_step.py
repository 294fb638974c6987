"""Training images/s of the step variants `timm-recal train` offers, on the device data path: which to use.

Each variant trains the model on a DeviceImageLoader over random uint8 images held on the device (the data path
the table uses), ``--warmup`` steps untimed (compilation, CUDA graph capture) and ``--steps`` timed, all in one
process, variants interleaved over ``--rounds``. Variants: eager fp32, eager AMP (bf16; fp16 with loss scaling),
torch.compile (inductor) with bf16, and with CUDA graphs (mode reduce-overhead; CUDA only: skipped on the CPU, with
the reason in the JSON).

    python benchmarks/gpu/train_step.py --device cuda -o $OUT/train_step.json
    python benchmarks/gpu/train_step.py --device cpu --steps 2 --warmup 1 --batch 16 --variants eager-fp32  # dry
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

VARIANTS = {  # name -> (amp dtype or None, torchcompile mode or None / 'eager')
    'eager-fp32': (None, 'eager'), 'eager-bf16': ('bfloat16', 'eager'), 'eager-fp16': ('float16', 'eager'),
    'compile-bf16': ('bfloat16', 'default'), 'cudagraphs-bf16': ('bfloat16', 'reduce-overhead'),
}


def _run(model_name: str, batch: int, variant: str, args, images, labels) -> float:
    import timm
    import torch
    import timm_recal  # noqa: F401
    from timm.utils import NativeScaler
    from timm_recal.training.config import TrainConfig
    from timm_recal.training.device_loader import DeviceImageLoader
    from timm_recal.training.trainer import _autocast, compiled_step_model
    amp, mode = VARIANTS[variant]
    cfg = TrainConfig(model=model_name, device=args.device, channels_last=True, amp=amp is not None,
                      amp_dtype=amp or '', torchcompile=None if mode == 'eager' else 'inductor',
                      torchcompile_mode=None if mode in ('eager', 'default') else mode)
    torch.manual_seed(0)
    model = timm.create_model(model_name).to(args.device).to(memory_format=torch.channels_last).train()
    step_model = compiled_step_model(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scaler = NativeScaler(device='cuda') if amp == 'float16' and args.device == 'cuda' else None
    loader = DeviceImageLoader(images, labels, batch, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), train=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    it = iter(loader)

    def step():
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        with _autocast(cfg):
            loss = loss_fn(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler(loss, opt)
        else:
            loss.backward()
            opt.step()
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return args.steps * batch / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda', choices=['cpu', 'cuda'])
    p.add_argument('--models', nargs='+', default=['shufflenetv2_x1_0_cifar', 'se_shufflenetv2_x1_0_cifar'])
    p.add_argument('--batch', type=int, nargs='+', default=[64, 256])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--images', type=int, default=50_000, help='random 32x32 images held on the device')
    p.add_argument('--warmup', type=int, default=30)
    p.add_argument('--steps', type=int, default=200)
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('-o', '--output', required=True)
    args = p.parse_args()
    import torch
    from deploy.timing import machine_info
    from timm_recal.outputs import write_json
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('train_step: --device cuda but CUDA is not available here')
    torch.backends.cudnn.benchmark = True
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 32, 32, 3), dtype=torch.uint8, generator=gen).to(args.device)
    labels = torch.randint(0, 10, (args.images,), generator=gen).to(args.device)
    results, skipped = [], {}
    for variant in args.variants:
        if VARIANTS[variant][1] == 'reduce-overhead' and args.device != 'cuda':
            skipped[variant] = 'CUDA graphs need a CUDA device'
    for r in range(args.rounds):
        for model in args.models:
            for batch in args.batch:
                for variant in (v for v in args.variants if v not in skipped):
                    t = time.perf_counter()
                    speed = _run(model, batch, variant, args, images, labels)
                    results.append({'round': r, 'model': model, 'batch': batch, 'variant': variant,
                                    'img_per_s': speed, 'seconds_with_warmup': time.perf_counter() - t})
                    print(f"{model} b{batch} {variant}: {speed:,.0f} img/s", flush=True)
    best = {}
    for row in results:
        key = f"{row['model']} b{row['batch']}"
        speeds = [x['img_per_s'] for x in results if (x['model'], x['batch'], x['variant']) ==
                  (row['model'], row['batch'], row['variant'])]
        best.setdefault(key, {})[row['variant']] = statistics.median(speeds)
    write_json({'kind': 'timm-recal-train-step', 'device': args.device, 'steps': args.steps, 'warmup': args.warmup,
                'results': results, 'median_img_per_s': best, 'skipped': skipped,
                'torch': torch.__version__, 'machine': machine_info()}, args.output, force=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
