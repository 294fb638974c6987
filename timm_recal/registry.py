"""The table of timm-recal models (name, paper, params, GMACs), for ``timm-recal models`` and the README."""
import fnmatch
from typing import Dict, List, Optional, Sequence

import timm

__all__ = ['recal_models', 'model_paper', 'model_table']

_GATE_PAPERS = [  # longest prefix first
    ('se_pre_', 'Hu et al. 2018 (SE-PRE)'), ('se_post_', 'Hu et al. 2018 (SE-POST)'),
    ('se_id_', 'Hu et al. 2018 (SE-Identity)'), ('se3x3_', 'Hu et al. 2018 (SE-3x3)'),
    ('nosqueeze_', 'Hu et al. 2018 (NoSqueeze)'), ('slowsqex_', 'Mahendran (slow squeeze + slow excite)'),
    ('slowsq_', 'Mahendran (slow squeeze)'), ('slowex_', 'Mahendran (slow excite)'), ('bump_', 'Mahendran (bump)'),
    ('abplus_', 'Singh et al. (AB-Plus)'), ('ab_', 'Singh et al. (AB)'), ('sle_', 'Wang & Yuan (SLE)'),
    ('se_', 'Hu et al. 2018 (SE)'),
]
_BASE_PAPERS = [
    ('shufflenetv2', 'Ma et al. 2018 (ShuffleNetV2)'), ('wrn', 'Zagoruyko & Komodakis 2016 (WRN)'),
    ('cnn3', 'Mahendran (3-layer CNN)'), ('resnet', 'He et al. 2016'),
]


def recal_models(filters: Optional[Sequence[str]] = None) -> List[str]:
    """Every model registered by timm_recal (optionally filtered by wildcards), in sorted order."""
    import timm_recal  # noqa: F401
    from timm.models import get_arch_name
    from timm.models._registry import _model_to_module
    names = sorted(n for n, mod in _model_to_module.items() if mod in _recal_modules())
    if filters:
        names = [n for n in names if any(fnmatch.fnmatch(n, f) for f in filters)]
    return names


def _recal_modules() -> set:
    import sys
    return {m.split('.')[-1] for m in sys.modules if m.startswith('timm_recal.models.') and not m.split('.')[-1].startswith('_')}


def model_paper(name: str) -> str:
    for prefix, paper in _GATE_PAPERS:
        if name.startswith(prefix):
            return paper
    for key, paper in _BASE_PAPERS:
        if key in name:
            return paper
    return ''


def model_stats(name: str) -> Dict[str, object]:
    """Params and GMACs (ptflops, pytorch backend) at the model's default input size."""
    import torch
    model = timm.create_model(name).eval()
    input_size = tuple(model.pretrained_cfg['input_size'])
    params = sum(p.numel() for p in model.parameters())
    from ptflops import get_model_complexity_info
    macs, _ = get_model_complexity_info(
        model, input_size, as_strings=False, print_per_layer_stat=False, verbose=False, backend='pytorch',
        backend_specific_config={'count_functional': False})
    return {'params': params, 'gmacs': round(macs / 1e9, 4), 'input': 'x'.join(map(str, input_size[1:]))}


def model_table(filters: Optional[Sequence[str]] = None, stats: bool = False) -> List[Dict[str, object]]:
    rows = []
    for name in recal_models(filters):
        row = {'name': name, 'paper': model_paper(name)}
        if stats:
            row.update(model_stats(name))
        rows.append(row)
    return rows
