"""The monitor's tests, each against scipy's on known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from keel.monitor import stats


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), [(90, 100, 78, 100), (410, 500, 370, 480), (50, 60, 50, 60)])
def test_two_proportion_z_matches_the_chi_square_test(s1: int, n1: int, s2: int, n2: int) -> None:
    ours = stats.two_proportion(s1, n1, s2, n2)
    assert ours.name == "z"
    # the two-sided pooled z test is the chi-square test on the 2×2 table without Yates' correction
    expected = sp.chi2_contingency([[s1, n1 - s1], [s2, n2 - s2]], correction=False).pvalue
    assert ours.p == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("table", [(1, 9, 6, 4), (0, 20, 4, 16), (3, 3, 3, 3), (0, 5, 0, 5), (2, 98, 12, 88)])
def test_fisher_exact_matches_scipy(table: tuple[int, int, int, int]) -> None:
    a, b, c, d = table
    assert stats.fisher_exact(a, b, c, d) == pytest.approx(sp.fisher_exact([[a, b], [c, d]]).pvalue, rel=1e-9)


def test_small_expected_counts_switch_to_fisher() -> None:
    assert stats.two_proportion(1, 10, 6, 10).name == "fisher"
    with pytest.raises(ValueError, match="at least one"):
        stats.two_proportion(0, 0, 1, 2)


@pytest.mark.parametrize("seed", range(4))
def test_mann_whitney_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(0.8, 0.1, 300), 2)  # rounded: many ties, as guard scores have
    b = np.round(rng.normal(0.78 + 0.01 * seed, 0.12, 250), 2)
    ours = stats.mann_whitney(a, b)
    theirs = sp.mannwhitneyu(b, a, method="asymptotic", use_continuity=True)
    assert ours.p == pytest.approx(theirs.pvalue, rel=1e-9)
    assert ours.statistic == pytest.approx(theirs.statistic / (len(a) * len(b)))


def test_mann_whitney_of_identical_constants_is_no_shift() -> None:
    assert stats.mann_whitney([1.0] * 5, [1.0] * 7).p == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_wasserstein_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.exponential(1.0, 400), rng.exponential(1.3, 333)
    assert stats.wasserstein(a, b) == pytest.approx(sp.wasserstein_distance(a, b), rel=1e-9)


def test_psi_reads_as_evidently_does() -> None:
    same = stats.psi({"billing": 500, "tech": 300, "other": 200}, {"billing": 510, "tech": 290, "other": 200})
    assert same.statistic < stats.PSI_MODERATE and same.p > 0.5
    moved = stats.psi({"billing": 500, "tech": 300, "other": 200}, {"billing": 250, "tech": 550, "other": 200})
    assert moved.statistic > stats.PSI_SIGNIFICANT and moved.p < 1e-6
    new = stats.psi({"a": 100}, {"a": 90, "b": 10})  # a category the reference never had stays finite
    assert math.isfinite(new.statistic)


def test_chi_square_matches_scipy() -> None:
    r, c = np.array([500.0, 300, 200]), np.array([470.0, 340, 190])
    expected = sp.chi2_contingency(np.vstack([r, c]), correction=False).pvalue
    assert stats.chi_square_homogeneity(r, c) == pytest.approx(expected, rel=1e-9)
    for x, dof in [(0.5, 1), (3.0, 2), (30.0, 4), (120.0, 10), (7.7, 7)]:
        assert stats.chi2_sf(x, dof) == pytest.approx(sp.chi2.sf(x, dof), rel=1e-9)


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    p = np.r_[rng.uniform(size=17), [1e-4, 0.003, 0.01]].tolist()
    assert stats.adjusted(p) == pytest.approx(sp.false_discovery_control(p).tolist(), rel=1e-12)
    found = stats.benjamini_hochberg(p, 0.05)
    assert found == [a <= 0.05 for a in sp.false_discovery_control(p)]
    assert stats.benjamini_hochberg([]) == []


def test_classifier_test_sees_a_shift_and_no_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (300, 8))
    same = stats.classifier_test(ref, rng.normal(0, 1, (300, 8)))
    shifted = stats.classifier_test(ref, rng.normal(0, 1, (300, 8)) + np.r_[0.6, np.zeros(7)])
    assert same.p > 0.01 and abs(same.statistic - 0.5) < 0.08
    assert shifted.p < 0.001 and shifted.statistic > 0.6  # theory: Φ(0.6/√2) = 0.66
    assert stats.centroid_distance(ref + 5, ref + 5) == pytest.approx(0.0, abs=1e-12)


def test_classifier_test_is_calibrated_under_the_null() -> None:
    """Stable traffic must not alarm: under the null the p-values are close to uniform (pooling
    out-of-fold scores of different models, as cross_val_predict does, is not)."""
    rng = np.random.default_rng(7)
    pool = rng.normal(0, 1, (80, 16))  # drawn with replacement, as a replay of real runs is
    p = [stats.classifier_test(pool[rng.integers(0, 80, 300)], pool[rng.integers(0, 80, 60)], seed=i).p
         for i in range(120)]  # fmt: skip
    assert np.mean(np.asarray(p) < 0.1) <= 0.12
    assert np.mean(np.asarray(p) < 0.01) <= 0.02
