"""The pipeline's recommendation: per batch size, the fastest runtime x precision of the target model that passed
parity, with its speed-up over ONNX Runtime FP32 measured in the same bench run.

What counts as "passed parity" (each a check the pipeline ran, never assumed):

* eager FP32 (NCHW or channels_last) is the PyTorch reference itself;
* an ONNX runtime at a precision: its parity record (PyTorch vs that runtime on that file;
  ``runtimes.DEFAULT_ONNX_RUNTIME`` for records that name no runtime) passed;
* a runtime whose ``artifact`` hook picked the file bench timed (a result with a ``variant``: OpenVINO INT8, our
  QDQ file or the NNCF IR, ``bench.int8_pick``) additionally: the pick reached the 99% top-1 agreement contract
  with that runtime's FP32, and its FP32 passed parity;
* anything else (eager under autocast, a runtime without a parity record) is listed as not checked.
"""
from typing import Any, Dict, List, Optional, Tuple

from .runtimes import DEFAULT_ONNX_RUNTIME, RUNTIMES, runtime_label

__all__ = ['recommend', 'recommendation_markdown']

_REFERENCE = tuple(w for w, spec in RUNTIMES.items() if spec.reference)


def _parity_passed(record: Dict[str, Any]) -> Dict[Tuple[str, str], bool]:
    passed: Dict[Tuple[str, str], bool] = {}
    for p in record.get('parity') or []:
        if p.get('role') != 'target':
            continue
        key = (p.get('runtime') or DEFAULT_ONNX_RUNTIME, p['precision'])
        passed[key] = passed.get(key, True) and bool((p.get('result') or {}).get('passed'))
    return passed


def _check(result: Dict[str, Any], passed: Dict[Tuple[str, str], bool],
           pick: Optional[Dict[str, Any]]) -> Tuple[bool, str]:
    """``(eligible, why)`` of one bench result of the target."""
    rt, p = result['runtime'], result['precision']
    if rt in _REFERENCE:
        return (p == 'fp32', 'the PyTorch reference' if p == 'fp32' else 'autocast, not parity-checked')
    if (rt, p) not in passed:
        return False, 'no parity check'
    if not passed[(rt, p)]:
        return False, 'parity FAILED'
    if getattr(RUNTIMES.get(rt), 'artifact', None) and result.get('variant') is not None:  # its hook picked it
        if not pick or not pick.get('passed'):
            return False, (pick or {}).get('reason') or f'no {p.upper()} agreement pick'
        if not passed.get((rt, 'fp32')):
            return False, f'{runtime_label(rt)} FP32 (the {p.upper()} agreement reference) did not pass parity'
        return True, f"parity passed; {pick.get('timed')} file, top-1 agreement " \
                     f"{100 * pick['candidates'][pick['timed']]['agreement']:.2f}% with {runtime_label(rt)} FP32"
    return True, 'parity passed'


def recommend(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per batch size of the target's bench results: ``{batch, runtime, precision, variant, images_per_s,
    ort_fp32_images_per_s, speedup_vs_ort_fp32, estimator, why, considered}`` (``runtime`` None when nothing
    passed).

    The speed-up over ONNX Runtime FP32, and the order of the candidates, is bench's own ratio
    (``timing.paired_ratio``): the median of the per-repeat ratios of windows timed in the same repeat, as the
    report's ratio tables give it, so the recommendation cannot disagree with them. A record without per-repeat
    numbers (written before bench kept them) falls back to the ratio of the medians, and ``estimator`` says so.
    """
    from .timing import paired_ratio  # lazily: the report module imports this one and needs no numpy
    bench = record.get('bench') or {}
    results = [r for r in bench.get('results') or [] if r.get('role') == 'target']
    passed = _parity_passed(record)
    pick = (bench.get('int8_pick') or {}).get('target')
    out = []
    for b in sorted({r['batch'] for r in results}):
        rows = [r for r in results if r['batch'] == b]
        ort = next((r for r in rows if r['runtime'] == DEFAULT_ONNX_RUNTIME and r['precision'] == 'fp32'), None)
        ranked = sorted(((r, *(paired_ratio(r, ort) if ort and ort['images_per_s'] > 0 else (None, None)))
                         for r in rows), key=lambda t: -(t[1] if t[1] is not None else t[0]['images_per_s']))
        considered, estimators = [], []
        for r, ratio, estimator in ranked:
            ok, why = _check(r, passed, pick)
            considered.append({'runtime': r['runtime'], 'precision': r['precision'], 'variant': r.get('variant'),
                               'images_per_s': r['images_per_s'], 'speedup_vs_ort_fp32': ratio,
                               'eligible': ok, 'why': why})
            estimators.append(estimator)
        i = next((i for i, c in enumerate(considered) if c['eligible']), None)
        best = None if i is None else considered[i]
        speedup = best and best['speedup_vs_ort_fp32']
        out.append({
            'batch': b, 'runtime': best and best['runtime'], 'precision': best and best['precision'],
            'variant': best and best['variant'], 'images_per_s': best and best['images_per_s'],
            'ort_fp32_images_per_s': ort and ort['images_per_s'],
            'speedup_vs_ort_fp32': round(speedup, 3) if speedup is not None else None,
            'estimator': None if i is None else estimators[i],
            'why': best['why'] if best else 'no runtime x precision passed parity', 'considered': considered,
        })
    return out


def recommendation_markdown(recs: List[Dict[str, Any]], label=lambda w: w) -> str:
    """The report's closing section."""
    if not recs:
        return ''
    lines = ['## Recommendation', '',
             'Per batch size, the fastest runtime x precision of the target that passed parity (the bench run '
             'above; speed-up over ONNX Runtime FP32 in the same run, '
             + ('the ratio of the medians: this record holds no per-repeat numbers).'
                if any(r.get('estimator') == 'ratio of medians' for r in recs)
                else 'the median of the per-repeat ratios, as in the ratio tables).'), '',
             '| Batch | Runtime | Precision | images/s | vs ORT FP32 | Why |', '|---|---|---|---|---|---|']
    for r in recs:
        if r['runtime'] is None:
            lines.append(f"| {r['batch']} | - | - | - | - | {r['why']} |")
            continue
        variant = f" ({r['variant']})" if r.get('variant') else ''
        speed = '-' if r['speedup_vs_ort_fp32'] is None else f"{r['speedup_vs_ort_fp32']:.2f}x"
        lines.append(f"| {r['batch']} | {label(r['runtime'])} | {r['precision'].upper()}{variant} | "
                     f"{r['images_per_s']:.1f} | {speed} | {r['why']} |")
    skipped = sorted({f"{c['runtime']}/{c['precision']}: {c['why']}" for r in recs for c in r['considered']
                      if not c['eligible']})
    if skipped:
        lines += ['', 'Not recommended: ' + '; '.join(skipped) + '.']
    return '\n'.join(lines) + '\n'
