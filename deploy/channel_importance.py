"""Channel importance by zeroing (Singh et al., Accuracy Booster, Table 16).

In every gate, the x% of channels with the highest (then the lowest) average gate value over the measured images
are zeroed (their gate value set to 0, so the map's channel is multiplied by 0), and top-1 is measured again. If
the gates rank channels by importance, zeroing the highest-ranked ones costs far more accuracy than zeroing the
lowest-ranked ones.
"""
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch

from .gate_probe import GateSite

__all__ = ['ZERO_FRACTIONS', 'channel_masks', 'importance_curves', 'importance_plot']

#: the fractions of Singh et al.'s Table 16
ZERO_FRACTIONS = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25)


def channel_masks(sites: Sequence[GateSite], channel_means: Dict[str, np.ndarray], fraction: float,
                  highest: bool) -> Dict[str, torch.Tensor]:
    """Per gate, a 0/1 mask that zeroes ``round(fraction * C)`` channels of highest (or lowest) mean value."""
    masks = {}
    for s in sites:
        means = channel_means[s.name]
        k = int(round(fraction * len(means)))
        mask = torch.ones(len(means))
        if k:
            order = np.argsort(-means if highest else means, kind='stable')
            mask[torch.as_tensor(order[:k].copy())] = 0.0
        masks[s.name] = mask
    return masks


def importance_curves(sites: Sequence[GateSite], channel_means: Dict[str, np.ndarray],
                      top1_with: Callable[[Dict[str, torch.Tensor]], float],
                      fractions: Sequence[float] = ZERO_FRACTIONS) -> List[Dict[str, Any]]:
    """``[{'fraction', 'zeroed_channels', 'top1_highest_zeroed', 'top1_lowest_zeroed'}]``; ``top1_with(masks)``
    measures top-1 (percent) with those masks applied."""
    rows = []
    baseline = None
    for f in fractions:
        row: Dict[str, Any] = {'fraction': f}
        if f == 0:
            baseline = baseline if baseline is not None else top1_with({})
            row.update(top1_highest_zeroed=baseline, top1_lowest_zeroed=baseline, zeroed_channels=0)
        else:
            high = channel_masks(sites, channel_means, f, True)
            row['zeroed_channels'] = int(sum(int((m == 0).sum()) for m in high.values()))
            row['top1_highest_zeroed'] = top1_with(high)
            row['top1_lowest_zeroed'] = top1_with(channel_masks(sites, channel_means, f, False))
        rows.append(row)
    return rows


def importance_plot(rows: List[Dict[str, Any]], path: str, title: str) -> str:
    """PNG: top-1 against the zeroed fraction, highest-value and lowest-value channels zeroed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    xs = [100 * r['fraction'] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    ax.plot(xs, [r['top1_highest_zeroed'] for r in rows], 'o-', color='tab:red',
            label='highest average gate value zeroed')
    ax.plot(xs, [r['top1_lowest_zeroed'] for r in rows], 's--', color='tab:blue',
            label='lowest average gate value zeroed')
    ax.set_xlabel('channels zeroed in every gate (%)')
    ax.set_ylabel('top-1 (%)')
    ax.set_xticks(xs)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format='png')
    plt.close(fig)
    return path
