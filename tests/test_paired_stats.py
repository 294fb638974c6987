"""McNemar's exact test and the paired bootstrap of ``deploy/paired_stats.py`` against exact hand-computed values,
a brute-force bootstrap over image indices, the normal approximation and (where installed) scipy."""
import math

import numpy as np
import pytest

from timm_recal_deploy.paired_stats import bootstrap_difference_ci, discordant_counts, mcnemar_exact
from timm_recal_deploy.validate import paired_top1


def _outcomes(both: int, only_a: int, only_b: int, neither: int, seed: int = 0):
    """Per-image correctness of two models with the given joint counts, images in a shuffled order."""
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, dtype=bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, dtype=bool)
    order = np.random.default_rng(seed).permutation(a.size)
    return a[order], b[order]


@pytest.mark.parametrize('b, c, exact', [
    (10, 2, 2 * (1 + 12 + 66) / 2 ** 12),   # 0.0386: the textbook example
    (2, 10, 2 * (1 + 12 + 66) / 2 ** 12),   # two-sided: symmetric in b and c
    (1, 5, 2 * (1 + 6) / 2 ** 6),           # 0.21875
    (0, 30, 2 / 2 ** 30),
    (0, 1000, 2.0 ** -999),                 # far in the tail: still exact (no log-space rounding)
    (0, 2000, 0.0),                         # below the smallest float
    (5, 5, 1.0), (7, 6, 1.0), (0, 0, 1.0),  # an even split, and no discordant image at all
])
def test_mcnemar_exact_known_values(b, c, exact):
    assert mcnemar_exact(b, c) == exact


def test_mcnemar_exact_matches_scipy_binomtest():
    stats = pytest.importorskip('scipy.stats')
    for b, c in [(10, 2), (3, 17), (40, 25), (300, 250), (251, 250), (4000, 3800), (1, 60)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-12), (b, c)


def test_mcnemar_exact_rejects_negative_counts():
    with pytest.raises(ValueError, match='>= 0'):
        mcnemar_exact(-1, 3)


def test_discordant_counts_and_pairing_checks():
    a, b = _outcomes(70, 6, 2, 22)
    assert discordant_counts(a, b) == (6, 2) and discordant_counts(b, a) == (2, 6)
    with pytest.raises(ValueError, match='one entry per image'):
        discordant_counts(a, b[:-1])
    with pytest.raises(ValueError, match='no images'):
        discordant_counts([], [])


def _index_bootstrap(a, b, resamples, seed, confidence=0.95):
    """The textbook paired bootstrap: resample image indices, keep each image's two outcomes together."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(resamples, a.size))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    tail = (1 - confidence) / 2
    return tuple(np.quantile(diffs, [tail, 1 - tail]))


def test_bootstrap_matches_index_resampling_and_normal_approximation():
    # 1000 images, 60 right only for A, 30 only for B: difference +3 points
    a, b = _outcomes(700, 60, 30, 210)
    low, high = bootstrap_difference_ci(a, b, resamples=10_000, seed=0)
    # the normal approximation of the paired difference: sd = sqrt((b + c)/n - d^2) / sqrt(n)
    sd = math.sqrt((90 / 1000 - 0.03 ** 2) / 1000)
    assert low == pytest.approx(0.03 - 1.959964 * sd, abs=0.002) and high == pytest.approx(0.03 + 1.959964 * sd, abs=0.002)
    ref_low, ref_high = _index_bootstrap(a, b, 4000, seed=1)
    assert low == pytest.approx(ref_low, abs=0.002) and high == pytest.approx(ref_high, abs=0.002)
    assert low < 0.03 < high and low > 0  # this difference is significant; McNemar agrees
    assert mcnemar_exact(60, 30) < 0.05


def test_bootstrap_matches_scipy_paired_bootstrap():
    stats = pytest.importorskip('scipy.stats')
    a, b = _outcomes(300, 25, 40, 135)
    ours = bootstrap_difference_ci(a, b, resamples=10_000, seed=0)
    ref = stats.bootstrap((a.astype(float), b.astype(float)), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                          paired=True, vectorized=True, method='percentile', n_resamples=10_000,
                          random_state=0).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.004)


def test_bootstrap_is_seeded_and_degenerate_cases_are_exact():
    a, b = _outcomes(7000, 600, 300, 2100)  # 10,000 images: steps of 0.0001, finer than the seed's wobble
    assert bootstrap_difference_ci(a, b, 1000, seed=3) == bootstrap_difference_ci(a, b, 1000, seed=3)
    assert bootstrap_difference_ci(a, b, 1000, seed=3) != bootstrap_difference_ci(a, b, 1000, seed=4)
    assert bootstrap_difference_ci(a, a) == (0.0, 0.0)          # no discordant image: no uncertainty
    only_a, _ = _outcomes(0, 50, 0, 0)
    assert bootstrap_difference_ci(only_a, ~only_a) == (1.0, 1.0)
    with pytest.raises(ValueError, match='resamples'):
        bootstrap_difference_ci(a, b, resamples=0)


def test_paired_top1_record():
    a, b = _outcomes(5, 3, 1, 1, seed=2)
    paths = [f'/data/cls{i % 2}/{i}.jpg' for i in range(a.size)]
    p = paired_top1(a, b, paths, '/data', resamples=2000, seed=0)
    assert (p.n_images, p.both_correct, p.only_model, p.only_compare, p.both_wrong) == (10, 5, 3, 1, 1)
    assert (p.model_top1, p.compare_top1, p.difference) == (80.0, 60.0, 20.0)
    assert p.mcnemar_p == mcnemar_exact(3, 1) == 0.625
    assert p.ci_low <= p.difference <= p.ci_high and p.resamples == 2000
    assert p.only_model_images == [f'cls{i % 2}/{i}.jpg' for i in np.flatnonzero(a & ~b)]
    assert p.only_compare_images == [f'cls{i % 2}/{i}.jpg' for i in np.flatnonzero(~a & b)]
    assert p.to_dict()['only_model'] == 3
