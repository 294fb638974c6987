"""Excitation statistics of a gated network (Hu et al., SENet, Section 7.2, Figs. 6-7).

Input: per gate, the gate value of every image and channel (``[N, C]``, spatial positions averaged) and the
images' class indices. Per gate it gives the mean gate value per channel over all images and per class, the
within-class mean and standard deviation, and the two numbers the paper reasons from:

* ``class_spread``: how class-specific the gate is. For each channel, the standard deviation across classes of
  the class means; averaged over channels. ``class_ratio`` divides it by the mean within-class standard deviation
  (a between/within ratio, an F-statistic's square root up to constants): 0 when the classes excite every channel
  alike, large when the class decides the gate value.
* ``saturation``: the share of (image, channel) gate values above ``SATURATED`` (0.99), i.e. gates that pass the
  channel unchanged. Hu et al. report the last stage's gates saturated at 1 (an identity), early ones not.
  ``mean`` and ``mean_distance_to_1`` describe the same from the other side.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ['SATURATED', 'PLOT_CHANNELS', 'excitation_stats', 'excitation_plot']

#: a gate value above this counts as saturated (passes its channel unchanged)
SATURATED = 0.99
#: channels per panel in the plot and the JSON's per-class means (the paper's figures show the first 64)
PLOT_CHANNELS = 64


def _per_class(values: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    return np.stack([values[labels == c].mean(0) for c in classes])


def excitation_stats(values: Dict[str, np.ndarray], labels: np.ndarray, class_names: Dict[int, str],
                     order: Sequence[str], channels: int = PLOT_CHANNELS) -> List[Dict[str, Any]]:
    """One record per gate in ``order`` (earliest to deepest); see the module docstring for the fields."""
    classes = sorted(c for c in set(labels.tolist()) if c >= 0)
    out = []
    for depth, name in enumerate(order):
        v = values[name].astype(np.float64)
        rec: Dict[str, Any] = {'gate': name, 'depth': depth, 'channels': int(v.shape[1]), 'n_images': int(len(v)),
                               'mean': float(v.mean()), 'std': float(v.std()),
                               'mean_distance_to_1': float((1.0 - v).mean()),
                               'saturation': float((v > SATURATED).mean())}
        shown = min(channels, v.shape[1])
        rec['channel_mean'] = v.mean(0)[:shown].round(5).tolist()
        if len(classes) > 1:
            means = _per_class(v, labels, classes)                               # [K, C]
            within = np.stack([v[labels == c].std(0) for c in classes])          # [K, C]
            spread = means.std(0)                                                # [C]
            rec.update(class_spread=float(spread.mean()),
                       class_ratio=float(spread.mean() / max(float(within.mean()), 1e-12)),
                       within_class_std=float(within.mean()),
                       per_class={class_names.get(c, str(c)): {'mean': float(means[i].mean()),
                                                               'std': float(within[i].mean()),
                                                               'channel_mean': means[i, :shown].round(5).tolist()}
                                  for i, c in enumerate(classes)})
        else:
            rec.update(class_spread=None, class_ratio=None, within_class_std=float(v.std(0).mean()), per_class={})
        out.append(rec)
    return out


def excitation_plot(stats: List[Dict[str, Any]], path: str, title: str, classes: Optional[Sequence[str]] = None) -> str:
    """PNG grid, one panel per gate (earliest to deepest): mean gate value of the first channels, one thin line
    per class and the mean over all images in black (the layout of Hu et al.'s Fig. 6)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(stats)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), dpi=90, squeeze=False)
    palette = plt.get_cmap('tab10').colors
    names = list(classes or sorted({k for s in stats for k in s['per_class']}))
    for ax, s in zip(axes.flat, stats):
        for i, cls in enumerate(names):
            pc = s['per_class'].get(cls)
            if pc:
                ax.plot(pc['channel_mean'], color=palette[i % len(palette)], linewidth=0.8, alpha=0.85)
        ax.plot(s['channel_mean'], color='black', linewidth=1.6)
        spread = '-' if s['class_ratio'] is None else f"{s['class_ratio']:.2f}"
        ax.set_title(f"{s['gate']}\nsat {100 * s['saturation']:.0f}%, between/within {spread}", fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=6)
        ax.set_xlabel('channel', fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis('off')
    if names:
        handles = [plt.Line2D([], [], color=palette[i % len(palette)], label=c) for i, c in enumerate(names)]
        handles.append(plt.Line2D([], [], color='black', linewidth=1.6, label='all'))
        fig.legend(handles=handles, loc='lower center', ncol=min(len(handles), 11), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05 if names else 0, 1, 0.97))
    fig.savefig(path, format='png')
    plt.close(fig)
    return path
