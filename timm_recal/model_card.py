"""Model cards of Hub folders: ``huggingface_hub.ModelCard`` with ``ModelCardData`` metadata and a Markdown body.

The metadata carries what the Hub indexes (``library_name: timm``, tags, data set, license, base model) and a
``model-index`` with the top-1/top-5 results, so the Hub shows them. The body (``model_cards/card.md``) says what
the model is, how it was trained, how to use it (``import timm_recal`` first) and, given a ``timm-recal pipeline``
report, the deploy numbers measured on it. ``huggingface_hub`` is imported only when a card is built.
"""
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ['DATASETS', 'CardInfo', 'dataset_for_tag', 'build_card', 'deploy_markdown', 'describe_arch',
           'training_text']

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

#: data sets a pretrained tag can name: Hub data set id, display name, evaluation split and size, class count,
#: label names
DATASETS: Dict[str, Dict[str, Any]] = {
    'cifar10': dict(hub_id='cifar10', name='CIFAR-10', split='test', n_images=10000, num_classes=10,
                    labels=CIFAR10_CLASSES, text='cifar10.md'),
    'cifar100': dict(hub_id='cifar100', name='CIFAR-100', split='test', n_images=10000, num_classes=100),
    'svhn': dict(hub_id='svhn', name='SVHN', split='test', n_images=26032, num_classes=10),
    'imagenet-1k': dict(hub_id='imagenet-1k', name='ImageNet-1k', split='validation', n_images=50000,
                        num_classes=1000),
}

_GATES = [  # name prefix -> (gate, Hub tag); longest prefix first
    ('abplus_', 'AB-Plus gates', 'accuracy-booster'),
    ('ab_', 'Accuracy Booster gates', 'accuracy-booster'),
    ('sle_', 'Skip-Layer Excitation', 'skip-layer-excitation'),
    ('se_pre_', 'SE-PRE gates', 'squeeze-and-excitation'),
    ('se_post_', 'SE-POST gates', 'squeeze-and-excitation'),
    ('se_id_', 'SE-Identity gates', 'squeeze-and-excitation'),
    ('se3x3_', 'SE-3x3 gates', 'squeeze-and-excitation'),
    ('se_', 'Squeeze-and-Excitation gates', 'squeeze-and-excitation'),
    ('nosqueeze_', 'NoSqueeze gates', 'squeeze-and-excitation'),
    ('slowsqex_', 'slow-squeeze + slow-excite gates', 'squeeze-and-excitation'),
    ('slowsq_', 'slow-squeeze gates', 'squeeze-and-excitation'),
    ('slowex_', 'slow-excite gates', 'squeeze-and-excitation'),
    ('bump_', 'bump gates', 'squeeze-and-excitation'),
]
_BASES = [('shufflenetv2', 'ShuffleNetV2'), ('wrn', 'WideResNet (CIFAR)'), ('cifar', 'ResNet (CIFAR)'),
          ('cnn3', '3-layer CNN'), ('resnext', 'ResNeXt'), ('resnet', 'ResNet')]
#: Wang & Yuan, Table 1: ShuffleNetV2 1.0x on CIFAR-10, Adam 1e-3, batch 64, 100 epochs
_PAPER_TOP1_CIFAR10 = {'': 89.97, 'se_': 90.26, 'sle_': 90.19}


def _runtime_labels() -> Dict[str, str]:
    """Runtime word -> name, in the deploy stage's table order (its one runtime table)."""
    from timm_recal_deploy.runtimes import RUNTIMES
    return {word: spec.label for word, spec in RUNTIMES.items()}


def dataset_for_tag(tag: str) -> Optional[str]:
    """The ``DATASETS`` key a pretrained tag names (``cifar10``, ``a1_in1k_warm`` -> ``imagenet-1k``), or None."""
    tag = (tag or '').lower()
    for key in ('cifar100', 'cifar10', 'svhn'):
        if tag == key or tag.startswith(key + '_'):
            return key
    if 'in1k' in tag or 'imagenet' in tag:
        return 'imagenet-1k'
    return None


def _gate(arch: str) -> Tuple[str, str, Optional[str]]:
    for prefix, name, hub_tag in _GATES:
        if arch.startswith(prefix):
            return prefix, name, hub_tag
    return '', '', None


def describe_arch(arch: str) -> str:
    """One phrase for the architecture: base network and gate (``ShuffleNetV2 with Skip-Layer Excitation``)."""
    _, gate, _ = _gate(arch)
    base = next((name for key, name in _BASES if key in arch), arch)
    return f'{base} with {gate}' if gate else base


def training_text(training: Optional[Dict[str, Any]]) -> str:
    """The training recipe in one line, from the run's (train.py) options; '' when unknown."""
    if not training:
        return ''
    t = training
    cycles = int(t.get('lr_cycle_limit') or 1)
    parts = [f"{t['epochs']} epochs" if t.get('epochs') else None,
             f"{t['opt']}" + (f" (momentum {t['momentum']})" if t.get('momentum') is not None and
                              str(t.get('opt', '')).lower() in ('sgd', 'nesterov', 'momentum') else '')
             if t.get('opt') else None,
             f"lr {t['lr']}" if t.get('lr') is not None else None,
             f"batch {t['batch_size']}" if t.get('batch_size') else None,
             f"weight decay {t['weight_decay']}" if t.get('weight_decay') is not None else None]
    sched = t.get('sched')
    if sched:
        s = f'{sched} schedule'
        if cycles > 1:
            s += f" in {cycles} cycles (each restart at x{t.get('lr_cycle_decay', 0.5)} the peak lr)"
        if t.get('warmup_epochs'):
            s += f" with {t['warmup_epochs']} warm-up epoch(s)"
        parts.append(s)
    if t.get('augmentation'):
        parts.append(str(t['augmentation']))
    if t.get('config'):
        parts.append(f"config `{t['config']}`")
    if t.get('trainer'):
        parts.append(str(t['trainer']))
    return ', '.join(p for p in parts if p)


@dataclass
class CardInfo:
    """Everything a card says; built by ``timm_recal.publish`` from the weights' source."""
    repo_id: str
    arch: str
    tag: str = ''
    license: str = 'apache-2.0'
    params: int = 0
    gmacs: Optional[float] = None
    input_size: Sequence[int] = (3, 224, 224)
    dataset: Optional[str] = None
    metrics: Optional[Dict[str, Any]] = None
    training: Optional[Dict[str, Any]] = None
    weights: str = ''
    base_model: Optional[str] = None
    report: Optional[Dict[str, Any]] = None
    onnx_files: List[Tuple[str, str]] = field(default_factory=list)
    usage_name: str = ''


def _results_markdown(info: CardInfo, ds: Dict[str, Any]) -> str:
    m = info.metrics
    if not m or m.get('top1') is None:
        return ''
    where = ds.get('name') or info.dataset or 'evaluation data'
    split = m.get('split') or ds.get('split')
    n = m.get('n_images') or ds.get('n_images')
    head = f"## Results ({where}{' ' + split if split else ''}{f', {n:,} images' if n else ''})"
    top5 = f"{float(m['top5']):.2f}" if m.get('top5') is not None else 'n/a'
    text = f"\n{head}\n| top-1 | top-5 |\n|---:|---:|\n| {float(m['top1']):.2f} | {top5} |\n"
    if m.get('source'):
        text += f"\nMeasured by: {m['source']}.\n"
    prefix, _, _ = _gate(info.arch)
    paper = _PAPER_TOP1_CIFAR10.get(prefix) if info.dataset == 'cifar10' and 'shufflenetv2' in info.arch else None
    if paper is not None:
        epochs = (info.training or {}).get('epochs') or m.get('epochs')
        text += (f"\nFor reference, Wang & Yuan (Table 1) report {paper:.2f}% for the 1.0x model after 100 epochs "
                 f"of Adam on the original CIFAR-10; this model is {'the 0.5x' if 'x0_5' in info.arch else 'a'} "
                 f"network{f' trained {epochs} epochs' if epochs else ''}, so expect a lower number.\n")
    return text


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return 'n/a'
    v = float(v)
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        return f'{v:.2e}'
    return f'{v:,.{digits}g}' if abs(v) < 1000 else f'{v:,.0f}'


def _pct(v: Any) -> str:
    return 'n/a' if v is None else f'{float(v):.2f}'


def _data_name(result: Dict[str, Any]) -> str:
    """The images a stage measured, without local paths: the bundled samples or the folder's last two parts."""
    if result.get('bundled_data'):
        return 'the bundled sample images'
    data = str(result.get('data') or '')
    tail = '/'.join(p for p in data.replace('\\', '/').rstrip('/').split('/')[-2:] if p)
    return f'`{tail}`' if tail else 'the pipeline images'


def deploy_markdown(report: Dict[str, Any], png_name: Optional[str] = 'throughput.png') -> str:
    """The deploy numbers of a ``timm-recal pipeline`` report: parity per precision, agreement, accuracy per
    runtime, throughput per runtime and batch, and the machine they were measured on."""
    lines = ['', '## Deployment (ONNX), measured by `timm-recal pipeline`', '']
    parity = [p for p in report.get('parity') or [] if p.get('role', 'target') == 'target' and p.get('result')]
    if parity:
        res0 = parity[0]['result']
        lines += [f"Parity of each ONNX file with PyTorch on {_data_name(res0)}{_int8_settings(report)}:", '',
                  '| precision | result | images | top-1 agreement | top-5 overlap | max abs err | max rel err |',
                  '|---|---|---:|---:|---:|---:|---:|']
        for p in parity:
            r = p['result']
            agree = r.get('top1_agreement')
            top5 = r.get('top5_agreement')
            runtime = f" ({p['runtime']})" if p.get('runtime') not in (None, 'ort') else ''  # OpenVINO rows
            lines.append(f"| {p.get('precision') or r.get('precision')}{runtime} | {'pass' if r.get('passed') else 'FAIL'} "
                         f"| {r.get('n_images', 'n/a')} | {f'{100 * agree:.2f}%' if agree is not None else 'n/a'} "
                         f"| {f'{100 * top5:.2f}%' if top5 is not None else 'n/a'} | {_fmt(r.get('max_abs_err'))} "
                         f"| {_fmt(r.get('max_rel_err'))} |")
        lines.append('')
    validate = [v for v in report.get('validate') or [] if v.get('role', 'target') == 'target' and v.get('result')]
    if validate:
        lines += [f"Accuracy on {_data_name(validate[0]['result'])}:", '',
                  '| runtime / precision | images | top-1 % | top-5 % |', '|---|---:|---:|---:|']
        for v in validate:
            r = v['result']
            lines.append(f"| {v.get('precision')} | {r.get('n_images', 'n/a')} | {_pct(r.get('top1'))} "
                         f"| {_pct(r.get('top5'))} |")
        lines.append('')
    bench = report.get('bench') or {}
    results = [r for r in bench.get('results') or [] if r.get('role', 'target') == 'target']
    if results:
        batches = sorted({int(r['batch']) for r in results})
        rows: Dict[Tuple[str, str], Dict[int, float]] = {}
        for r in results:
            rows.setdefault((r['runtime'], r['precision']), {})[int(r['batch'])] = r.get('images_per_s')
        lines += ['Throughput (images/s, median over interleaved timing windows):', '',
                  '| runtime | precision | ' + ' | '.join(f'b{b}' for b in batches) + ' |',
                  '|---|---|' + '---:|' * len(batches)]
        labels = _runtime_labels()
        order = list(labels)
        for (rt, prec), by_batch in sorted(rows.items(), key=lambda kv: (
                order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0])):
            lines.append(f'| {labels.get(rt, rt)} | {prec} | '
                         + ' | '.join(_fmt(by_batch.get(b), 4) for b in batches) + ' |')
        ratios = [r for r in bench.get('ratios') or [] if r.get('role', 'target') == 'target']
        if ratios:
            kinds = sorted({r['kind'] for r in ratios})
            lines += ['', '| ratio (same run) | ' + ' | '.join(f'b{b}' for b in batches) + ' |',
                      '|---|' + '---:|' * len(batches)]
            for kind in kinds:
                by_batch = {int(r['batch']): r.get('value') for r in ratios if r['kind'] == kind}
                lines.append(f"| {kind.replace('_vs_', ' / ').replace('_', ' ')} | "
                             + ' | '.join(f'{by_batch[b]:.2f}x' if by_batch.get(b) else 'n/a' for b in batches)
                             + ' |')
        lines += ['', _machine_line(bench)]
        for note in bench.get('notes') or []:  # e.g. a busy machine: the numbers say less than they seem to
            lines += ['', f'**Note:** {note}.']
        if png_name:
            lines += ['', f'![throughput vs batch size]({png_name})']
    else:  # a run without its bench stage: say so rather than leave the reader guessing
        lines += ['Throughput was not measured in this run (the pipeline ran without its bench stage); '
                  '`timm-recal bench MODEL` measures it on your machine.']
    return '\n'.join(lines) + '\n'


def _int8_settings(report: Dict[str, Any]) -> str:
    """How the pipeline made its INT8 file (calibration method, images, float nodes), for the parity line."""
    settings = report.get('settings') or {}
    if 'int8' not in (settings.get('precisions') or []):
        return ''
    opts = settings.get('int8_options') or {}
    calib = settings.get('calib_data')
    where = ('a split of the measured images' if not calib or str(calib).startswith('split')
             else f"`{'/'.join(str(calib).replace(chr(92), '/').rstrip('/').split('/')[-2:])}`")
    text = f"; INT8 (ONNX Runtime QDQ) calibrated on {settings.get('calib_images', '?')} images of {where}"
    method = opts.get('calib_method') or opts.get('calibrate_method')  # the pipeline's key; older reports' key
    if method:
        text += f", {method} ranges"
    if opts.get('fp32_layers'):
        text += f", {opts['fp32_layers']} most sensitive nodes kept in float"
    return text


def _machine_line(bench: Dict[str, Any]) -> str:
    m = bench.get('machine') or {}
    s = bench.get('settings') or {}
    th = bench.get('threads') or {}
    v = m.get('versions') or {}
    flags = ', '.join(m.get('cpu_flags') or [])
    cpu = (f"{m.get('cpu_model', 'unknown CPU')}{f' ({flags})' if flags else ''}, "
           f"{m.get('usable_cpus', '?')} usable CPUs")
    if m.get('cuda'):
        cpu += f", CUDA: {m['cuda'] if isinstance(m['cuda'], str) else m['cuda'].get('name', m['cuda'])}"
    threads = ', '.join(f'{k} {val}' for k, val in th.items())
    versions = ', '.join(f'{k} {v[k]}' for k in ('torch', 'onnxruntime', 'timm', 'timm_recal') if v.get(k))
    timing = (f"warm-up {s.get('warmup')} calls, {s.get('repeats')} interleaved repeats of at least "
              f"{s.get('min_time_s')} s" if s else '')
    busy = m.get('busy_cpus_at_start')
    return (f"Machine: {cpu}; threads: {threads or 'default'}; {versions}. Timing: {timing}"
            f"{f'; CPUs busy with other work at start: {busy}' if busy is not None else ''}.")


def _onnx_markdown(files: Sequence[Tuple[str, str]]) -> str:
    if not files:
        return ''
    rows = '\n'.join(f'| `{name}` | {what} |' for name, what in files)
    return ('\n## ONNX files\n| file | what |\n|---|---|\n' + rows + '\n\nEach file carries its preprocessing '
            '(input size, mean/std, crop) and provenance in its ONNX metadata; `timm-recal info FILE` shows it, '
            '`timm-recal validate FILE --data DIR` and `timm-recal bench FILE` run it.\n')


def build_card(info: CardInfo):
    """The ``huggingface_hub.ModelCard`` of ``info`` (metadata from ``ModelCardData``, body from card.md)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData
    from .hub import render_card
    from .registry import model_paper
    ds = DATASETS.get(info.dataset or '', {})
    eval_results = None
    m = info.metrics or {}
    if m.get('top1') is not None and info.dataset:
        common = dict(task_type='image-classification', task_name='Image Classification',
                      dataset_type=ds.get('hub_id', info.dataset), dataset_name=ds.get('name', info.dataset),
                      dataset_split=m.get('split') or ds.get('split'))
        eval_results = [EvalResult(metric_type='accuracy', metric_name='top-1 accuracy',
                                   metric_value=round(float(m['top1']), 2), **common)]
        if m.get('top5') is not None:
            eval_results.append(EvalResult(metric_type='top-5-accuracy', metric_name='top-5 accuracy',
                                           metric_value=round(float(m['top5']), 2), **common))
    _, _, gate_tag = _gate(info.arch)
    tags = ['image-classification', 'timm', 'timm-recal'] + ([gate_tag] if gate_tag else [])
    if info.onnx_files:
        tags.append('onnx')
    data = ModelCardData(
        library_name='timm', pipeline_tag='image-classification', license=info.license, tags=tags,
        datasets=[ds.get('hub_id', info.dataset)] if info.dataset else None, base_model=info.base_model,
        metrics=['accuracy'] if eval_results else None, model_name=info.repo_id if eval_results else None,
        eval_results=eval_results)
    what = describe_arch(info.arch)
    trained = (f", trained on {ds.get('name', info.dataset)} by the timm-recal project" if info.dataset and m
               else '')
    dataset_text = ''
    if ds.get('text'):
        text = resources.files('timm_recal.model_cards').joinpath(ds['text']).read_text()
        dataset_text = text.strip().replace('\n', ' ')
    elif info.dataset:
        dataset_text = ds.get('name', info.dataset)
    input_size = 'x'.join(str(int(v)) for v in tuple(info.input_size)[1:])
    body = render_card('card.md', dict(
        repo_id=info.repo_id, arch=info.arch, description=f'{what}{trained}.',
        paper=f'architecture from {model_paper(info.arch)}' if model_paper(info.arch) else 'a timm-recal model',
        params_m=f'{info.params / 1e6:.3f}', gmacs=f'{info.gmacs:.4f}' if info.gmacs is not None else 'n/a',
        input_size=input_size, dataset=dataset_text or 'not stated', training=training_text(info.training)
        or 'not stated', weights=info.weights or 'n/a', results=_results_markdown(info, ds),
        deploy=deploy_markdown(info.report) if info.report else '', onnx=_onnx_markdown(info.onnx_files),
        usage_name=info.usage_name or f'hf-hub:{info.repo_id}',
        limitations=_limitations(info, ds)))
    return ModelCard(f'---\n{data.to_yaml()}\n---\n\n{body}')


def _limitations(info: CardInfo, ds: Dict[str, Any]) -> str:
    text = 'Not calibrated, not robustness-tested.'
    if ds.get('labels'):
        text += f" {ds['name']}'s {len(ds['labels'])} classes only."
    epochs = (info.training or {}).get('epochs')
    if epochs and int(epochs) < 100:
        text = (f'Trained {epochs} epochs, a short schedule; the papers\' recipes (`train_configs/` of timm-recal) '
                'train longer and reach higher accuracy. ' + text)
    return text


def report_dir_files(report_dir: str) -> List[str]:
    """The files of a pipeline report folder that a Hub folder takes (the plot), if present."""
    return [n for n in ('throughput.png',) if os.path.isfile(os.path.join(report_dir, n))]
