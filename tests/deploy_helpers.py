"""Shared pieces of the deploy tests: random-but-meaningful weights and the models CI covers."""
import math
import os
import re
from typing import Dict, List, Optional

import torch
from torch import nn

from conftest import SHARED_DATA as _SHARED_DATA

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = str(_SHARED_DATA)  # the conftest's location of ../shared/data (tests that need it skip without it)


@torch.no_grad()
def randomize_weights_(model: nn.Module, images: Optional[torch.Tensor] = None, seed: int = 0) -> nn.Module:
    """Random weights with every path active, so parity tests exercise the whole graph.

    timm zero-initializes the last BN of residual blocks (and some gates start constant), which would hide
    errors in those branches. Here conv/linear weights get He-scaled noise and every parameter that is not
    a conv, linear or BN one gets noise on top of its init. BN gets random affine parameters shaped like a
    trained net's, because a random BN-ReLU net is chaotic (perturbations grow layer after layer: PyTorch FP32
    itself then misses FP64 by 2e-5 relative, and no export could meet 1e-4 on the logits): small positive
    scales where timm had zeroed them, and biases around +1, so most ReLU units pass (about 1 in 6 is still
    cut). BN running statistics are estimated on ``images`` (real, preprocessed images: statistics of noise
    would not normalize them, and the mismatch compounds), floored (a dead channel would amplify round-off
    by 1/sqrt(eps)) and perturbed; the classifier is scaled to logits of standard deviation 3, a trained
    net's order of magnitude. Without ``images`` the statistics are only randomized.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t)

    done = set()
    norms = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(rand(m.weight) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(0.1 * rand(m.bias))
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            if m.weight is not None:
                if float(m.weight.abs().max()) == 0:  # timm's zero-init last BN of a residual branch
                    m.weight.copy_(0.1 + 0.2 * torch.rand(m.weight.shape, generator=gen).to(m.weight))
                    m.bias.copy_(0.2 * rand(m.bias))
                else:
                    m.weight.copy_(1.0 + 0.25 * rand(m.weight))
                    m.bias.copy_(1.0 + 0.2 * rand(m.bias))
            if m.running_mean is not None:
                norms.append(m)
        else:
            continue
        done.update(id(p) for p in m.parameters(recurse=False))
    for p in model.parameters():
        if id(p) not in done and p.is_floating_point():
            p.add_(0.1 * rand(p) * max(float(p.abs().mean()), 1.0))

    if norms and images is not None:  # estimate BN statistics (cumulative average), then perturb them
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        model(images)
        for m, mom in zip(norms, momenta):
            m.momentum = mom
            # a channel that is (almost) dead on these images would divide round-off noise by sqrt(eps)
            m.running_var.clamp_(min=0.1 * float(m.running_var.mean()) + 1e-3)
            m.running_mean.add_(0.1 * rand(m.running_mean) * m.running_var.sqrt())
            m.running_var.mul_(torch.exp(0.2 * rand(m.running_var)))
    else:
        for m in norms:
            m.running_mean.copy_(0.2 * rand(m.running_mean))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen).to(m.running_var))
    model.eval()
    head = model.get_classifier() if hasattr(model, 'get_classifier') else None
    if images is not None and isinstance(head, nn.Linear):  # logits of a trained-like scale (std 3)
        std = float(model(images).std())
        head.weight.mul_(3.0 / std)
        if head.bias is not None:
            head.bias.mul_(3.0 / std)
    return model.eval()


def sample_batch(name: str, img_size: int, n: int = 12) -> torch.Tensor:
    """``n`` bundled sample images through the model's preprocessing at ``img_size``."""
    import timm
    from timm_recal_deploy.images import make_loader
    from timm_recal_deploy.model_io import data_config_of
    with torch.device('meta'):
        cfg = data_config_of(timm.create_model(name), img_size)
    return next(iter(make_loader(None, cfg, n, limit=n)))[0]


def run_cli(capsys, *argv):
    """``timm-recal ARGV`` in this process: (exit code, stdout, stderr). A traceback on stderr fails the test, since
    every error a user can cause must be a one-line message."""
    from timm_recal.cli import main
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert 'Traceback' not in err, err
    return rc, out, err


def saved_and_exported(name: str, folder, onnx_name: str = 'model.onnx', seed: int = 0):
    """``(model, checkpoint, onnx path)``: a randomized ``name`` saved as a state dict in ``folder`` and exported
    from that checkpoint by ``timm-recal export`` (legacy exporter, the fastest)."""
    import timm
    from timm_recal.cli import main
    model = randomize_weights_(timm.create_model(name), sample_batch(name, 32), seed=seed)
    ckpt = folder / f'weights{seed or ""}.pth'
    torch.save(model.state_dict(), ckpt)
    onnx_path = folder / onnx_name
    assert main(['export', name, '--checkpoint', str(ckpt), '-o', str(onnx_path), '--exporter', 'legacy']) == 0
    return model, ckpt, onnx_path


def cifar_samples() -> str:
    """The package's bundled 32x32 sample images (an ImageFolder with CIFAR-10's class names)."""
    from timm_recal_deploy.images import bundled_samples_dir
    return bundled_samples_dir({'input_size': (3, 32, 32)})


def gate_of(name: str) -> str:
    """Gate prefix of a registered name ('' for the plain base network)."""
    from timm_recal.registry import _GATE_PAPERS
    for prefix, _ in _GATE_PAPERS:
        if name.startswith(prefix):
            return prefix.rstrip('_')
    return ''


#: name tokens that are the same network family (same model class and blocks) as another
_SAME_FAMILY = {'resnext': 'resnet', 'wide': 'resnet'}


def _split_base(name: str):
    gate = gate_of(name)
    base = name[len(gate) + 1:] if gate else name
    token = re.match(r'[a-z]*?(?:v\d+|(?=\d|_|$))', base).group(0)
    return base, token


def family_of(name: str) -> str:
    """Base family of a registered name: 'shufflenetv2', 'shufflenetv2_cifar', 'resnet', 'resnet_cifar', ..."""
    base, token = _split_base(name)
    return _SAME_FAMILY.get(token, token) + ('_cifar' if '_cifar' in base else '')


def size_key(name: str):
    """Orders a family's variants small to large by the numbers in the name (depth, width);
    names without numbers (aliases such as ``shufflenetv2`` for x1_0) come last."""
    base, token = _split_base(name)
    nums = [float(n.replace('_', '.')) for n in re.findall(r'\d+(?:_\d+)?', base[len(token):])]
    return (0 if nums else 1, nums, name)


def ci_models() -> List[str]:
    """One model per (gate prefix, family) registered right now, the smallest; families that other modules
    register later are covered without editing the tests."""
    from timm_recal.registry import recal_models
    groups: Dict[tuple, List[str]] = {}
    for name in recal_models():
        groups.setdefault((gate_of(name), family_of(name)), []).append(name)
    return sorted(min(names, key=size_key) for names in groups.values())


def ci_img_size(name: str) -> int:
    """Small test input: 32 px for models made for 32x32 images, 64 px otherwise."""
    from timm.models import get_pretrained_cfg
    native = get_pretrained_cfg(name).input_size[-1]
    return 32 if native <= 32 else 64


def assert_runner_contract(runner, word: str, batches=(1, 2)) -> None:
    """What every runtime's runner must do (``timm_recal_deploy.runtimes``): a name, a precision, float32 logits
    for a float32 NCHW batch, a JSON-able ``describe()``, and ``prepare(batch)`` giving a zero-argument call."""
    import json
    import numpy as np
    from timm_recal_deploy.runtimes import EAGER_PRECISIONS, PRECISIONS, bench_input
    assert runner.name == word and runner.precision in PRECISIONS + EAGER_PRECISIONS
    assert len(runner.input_size) == 3
    for b in batches:
        out = runner(bench_input(b, runner.input_size))
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 2 and out.shape[0] == b
        call = runner.prepare(b)
        call()
    desc = runner.describe()
    assert desc['runtime'] == word and desc['precision'] == runner.precision
    json.dumps(desc)  # JSON-able


#: folders a published file must never name (``timm_recal.outputs.public_paths``)
PRIVATE_FOLDERS = ('/tmp', '/root', '/home', '/work', '/var/folders')


def local_paths_in(folder: str) -> List[str]:
    """``'file: key = value'`` for every absolute local path (temp, home, the working folder) recorded in the JSON
    files and ONNX metadata under ``folder``; empty when the folder is fit to publish."""
    import json
    import onnx
    private = PRIVATE_FOLDERS + (os.getcwd(), os.path.realpath(folder), os.path.expanduser('~'))

    def found(value, where, out):
        if isinstance(value, dict):
            for k, v in value.items():
                found(v, f'{where}.{k}', out)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                found(v, f'{where}[{i}]', out)
        elif isinstance(value, str) and any(p in value for p in private):
            out.append(f'{where} = {value[:200]}')

    hits: List[str] = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if name.endswith('.json'):
                with open(path) as f:
                    found(json.load(f), rel, hits)
            elif name.endswith('.onnx'):
                for prop in onnx.load(path, load_external_data=False).metadata_props:
                    try:
                        value = json.loads(prop.value)
                    except ValueError:
                        value = prop.value
                    found(value, f'{rel}:{prop.key}', hits)
    return hits


def private_roots() -> List[bytes]:
    """Byte strings no written file may contain: the working, home, temp, repository and Python folders (the
    prefix, the base prefix and torch's site-packages; each with its separator, so a file name such as ``work``
    alone does not count), as given and resolved."""
    import sys
    import tempfile
    roots = {os.getcwd(), os.path.expanduser('~'), tempfile.gettempdir(), REPO, sys.prefix, sys.base_prefix,
             os.path.dirname(os.path.dirname(torch.__file__))}  # site-packages: the exporter's stack traces
    roots |= {os.path.realpath(r) for r in roots}
    return sorted({(r.rstrip(os.sep) + os.sep).encode() for r in roots if r.strip(os.sep)})


def leaks_in(where) -> List[str]:
    """``'file: root'`` for every private root found anywhere in the bytes of ``where`` (a file, or every file of
    a folder), and inside every member of a ``.pt2`` (zip) package: a compressed member would hide it otherwise."""
    import zipfile
    from pathlib import Path
    where = Path(where)
    roots = private_roots()
    files = [where] if where.is_file() else sorted(p for p in where.rglob('*') if p.is_file())
    hits = []
    for path in files:
        name = path.name if path == where else path.relative_to(where)
        blobs = [(f'{name}', path.read_bytes())]
        if path.suffix == '.pt2':
            with zipfile.ZipFile(path) as z:
                blobs += [(f'{name}!{member}', z.read(member)) for member in z.namelist()]
        hits += [f'{label}: {r.decode()}' for label, data in blobs for r in roots if r in data]
    return hits
