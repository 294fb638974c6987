"""Paired statistics of two classifiers scored on the same images: McNemar's exact test and a bootstrap
confidence interval of the top-1 difference.

Two models measured on one test set are not independent samples: most images are right (or wrong) for both,
and only the discordant ones (right for one model, wrong for the other) say which is better. McNemar's exact
test asks whether the discordant images split evenly (``b`` right only for the first model, ``c`` only for the
second; under the null hypothesis ``b ~ Binomial(b + c, 1/2)``). The bootstrap resamples images, keeping each
image's pair of outcomes together, for an interval of the accuracy difference in points.

Pure Python and numpy (scipy is not a dependency of the package); the binomial tail is summed exactly in
integers, so p-values stay exact for any number of discordant images.
"""
from typing import Tuple

import numpy as np

__all__ = ['discordant_counts', 'mcnemar_exact', 'bootstrap_difference_ci']


def discordant_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> Tuple[int, int]:
    """``(b, c)``: images right only for the first model, and right only for the second."""
    a, b = _paired(correct_a, correct_b)
    return int((a & ~b).sum()), int((~a & b).sum())


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``2 * P(X <= min(b, c))`` for ``X ~ Binomial(b + c, 1/2)``, at most 1.

    For p = 1/2 the binomial is symmetric, so this equals the two-sided test that sums every outcome at most
    as likely as the observed one (``scipy.stats.binomtest(b, b + c).pvalue``). The tail is an integer sum of
    binomial coefficients divided by ``2 ** (n - 1)``; Python divides big integers with correct rounding, so
    the result is the float nearest the exact p-value (underflowing to 0.0 only below ~1e-308).
    """
    if b < 0 or c < 0:
        raise ValueError(f'discordant counts must be >= 0, got b={b}, c={c}')
    n = b + c
    if n == 0:
        return 1.0
    term = tail = 1  # C(n, 0)
    for k in range(min(b, c)):
        term = term * (n - k) // (k + 1)  # C(n, k + 1), exact
        tail += term
    return min(1.0, tail / (1 << (n - 1)))


def bootstrap_difference_ci(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 10_000,
                            seed: int = 0, confidence: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of ``mean(correct_a) - mean(correct_b)`` (fractions, not percent), images
    resampled with replacement as pairs.

    A resample's difference depends only on how many drawn images are discordant each way, so instead of
    drawing ``resamples x n`` image indices (10,000 x 50,000 would be 4 GB) it draws those counts from their
    exact joint law, ``Multinomial(n, (b/n, c/n, 1 - (b+c)/n))``: the same distribution as resampling indices,
    in O(resamples) time and memory. Seeded: one ``seed`` gives one interval.
    """
    if resamples < 1:
        raise ValueError(f'resamples must be >= 1, got {resamples}')
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}')
    a, _ = _paired(correct_a, correct_b)
    n = a.size
    b, c = discordant_counts(correct_a, correct_b)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, c / n, max(0.0, 1.0 - (b + c) / n)], size=resamples)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return float(low), float(high)


def _paired(correct_a: np.ndarray, correct_b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool).ravel(), np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f'paired outcomes need one entry per image for both models, got {a.size} and {b.size}')
    if a.size == 0:
        raise ValueError('no images to compare')
    return a, b
