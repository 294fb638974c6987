"""Gate cost in torch.compile: images/s of gated nets against their base, unfused and ``fuse_gates``-rewritten,
side by side in one interleaved run.

Every (model, form, precision) is compiled (``fullgraph=True``, inductor freezing, one static graph per batch
size, compile time recorded apart) and then timed interleaved with the others at the same batch size
(``timing.time_interleaved``: alternating order, one window per runner per repeat), so a shared machine hits
all alike; ratios are of the medians, to the base model's unfused form at the same precision and batch.
Random weights (speed only). Writes one JSON document (machine, settings, per batch images/s and ratios).

    python benchmarks/compiled/gate_cost.py --base resnet50 resnet50 seresnet50 ab_resnet50 \
        --batches 1,16 --precisions fp32,bf16 -o benchmarks/compiled/resnet50_trio.json
"""
import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import torch

import timm
import timm_recal  # noqa: F401  (registers the gated models)
from timm_recal.outputs import resolve_output, write_json
from timm_recal_deploy.compile_fusion import fuse_gates
from timm_recal_deploy.timing import machine_info, summarize_times, time_interleaved

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def _compiled(name: str, form: str, dtype: torch.dtype, batch: int, log) -> Tuple[Callable[[], Any], Dict]:
    model = timm.create_model(name).eval().to(dtype)
    gates = fuse_gates(model) if form == 'fused' else 0
    size = model.pretrained_cfg.get('input_size', (3, 224, 224))
    x = torch.randn(batch, *size, dtype=dtype)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled(x)
    seconds = time.perf_counter() - t0
    log(f'  compiled {name} {form} {dtype} b{batch} in {seconds:.0f} s ({gates} gates fused)')

    def call():
        with torch.no_grad():
            return compiled(x)
    return call, {'compile_s': round(seconds, 1), 'gates_fused': gates}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('models', nargs='+', help='timm model names (the base among them)')
    p.add_argument('--base', required=True, help='the base model the ratios are to')
    p.add_argument('--batches', default='1,16')
    p.add_argument('--precisions', default='fp32', help='fp32 and/or bf16 (weights and input in bf16)')
    p.add_argument('--forms', default='unfused,fused')
    p.add_argument('--threads', type=int, default=1,
                   help='intra-op threads, set before compiling (inductor writes the count into its C++ loops); '
                        'on a machine busier than its cores, OpenMP threads stall at every barrier: use 1 there')
    p.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                   help="'cpu': the process's CPU time per call (with one thread, the work done: on a machine "
                        "shared past its cores, wall time also counts the waits for a core)")
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--min-time', type=float, default=1.0)
    p.add_argument('-o', '--output', required=True, help='JSON file to write')
    p.add_argument('--force', action='store_true')
    args = p.parse_args(argv)
    if args.base not in args.models:
        p.error(f'--base {args.base} is not among the models')
    precisions = args.precisions.split(',')
    if set(precisions) - set(DTYPES):
        p.error(f'--precisions takes {",".join(DTYPES)}')
    forms = args.forms.split(',')
    output = resolve_output(args.output, args.force)  # refuse an existing file before the slow part
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    torch._dynamo.config.cache_size_limit = 256
    torch.set_num_threads(args.threads)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    out: Dict[str, Any] = {'machine': machine_info(), 'torch': torch.__version__, 'timm': timm.__version__,
                           'settings': {'fullgraph': True, 'freezing': True, 'dynamic': False,
                                        'threads': args.threads, 'clock': args.clock, 'repeats': args.repeats,
                                        'min_time_s': args.min_time, 'base': args.base},
                           'results': {}}
    batches = [int(b) for b in args.batches.split(',')]
    for batch in batches:
        calls: List[Tuple[str, Callable[[], Any]]] = []
        info: Dict[str, Dict] = {}
        for prec in precisions:
            for name in args.models:
                for form in forms:
                    if name == args.base and form != forms[0]:
                        continue  # a base has no gates: its forms are the same graph
                    key = f'{name}/{form}/{prec}'
                    fn, info[key] = _compiled(name, form, DTYPES[prec], batch, log)
                    calls.append((key, fn))
        log(f'batch {batch}: timing {len(calls)} runners interleaved')
        clock = time.process_time if args.clock == 'cpu' else time.perf_counter
        windows = time_interleaved(calls, warmup=3, repeats=args.repeats, min_time_s=args.min_time, clock=clock)
        rows = {}
        for key, ws in windows.items():
            name, form, prec = key.split('/')
            stats = summarize_times(ws, batch)
            rows[key] = {**info[key], 'images_per_s': round(stats['images_per_s'], 2),
                         'images_per_s_repeats': [round(v, 2) for v in stats['images_per_s_repeats']]}
        for key, row in rows.items():
            name, form, prec = key.split('/')
            base = rows[f'{args.base}/{forms[0]}/{prec}']['images_per_s']
            row['ratio_to_base'] = round(row['images_per_s'] / base, 3)
            log(f'  {key:45s} {row["images_per_s"]:8.2f} img/s  x{row["ratio_to_base"]}')
        out['results'][str(batch)] = rows
        out['load_avg_1m_after'] = machine_info().get('load_avg_1m')
        write_json(out, output, force=args.force or batch != batches[0])  # whole, after every batch size
    return 0


if __name__ == '__main__':
    sys.exit(main())
