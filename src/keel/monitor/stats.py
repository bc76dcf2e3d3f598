"""The tests a monitor compares a window with its reference by, written out (numpy and math) and
checked against scipy on known distributions in the test suite:

- rates: the two-proportion z test, or Fisher's exact test when an expected cell is under 5;
- scores: Mann–Whitney U (normal approximation, tie- and continuity-corrected) for whether the
  distribution moved, and the Wasserstein-1 distance for how far (a large sample makes any tiny
  shift significant, so a verdict also needs the distance over a threshold);
- categories: the population stability index (0.1 moderate, 0.2 significant) with a chi-square
  test of homogeneity for its p-value;
- embeddings: the distance between centroids, and a classifier two-sample test (a logistic
  regression told window from reference, out of fold: ROC AUC near 0.5 means no shift);
- Benjamini–Hochberg across the signals of one feature, so twenty signals are not a weekly false alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from keel.stats import auc

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2
PSI_FLOOR = 1e-4  # a category absent on one side counts as this share (PSI is infinite otherwise)


@dataclass(frozen=True, slots=True)
class Test:
    name: str  # "z", "fisher", "mann-whitney", "psi", "classifier"
    statistic: float
    p: float


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion(s1: int, n1: int, s2: int, n2: int) -> Test:
    """Whether two rates differ (two-sided): the pooled z test, or Fisher's exact test when any
    expected count is under 5 (where the normal approximation is poor)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both groups need at least one observation")
    pooled = (s1 + s2) / (n1 + n2)
    expected = min(n * q for n in (n1, n2) for q in (pooled, 1 - pooled))
    if expected < 5:
        return Test("fisher", s2 / n2 - s1 / n1, fisher_exact(s1, n1 - s1, s2, n2 - s2))
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return Test("z", 0.0, 1.0)
    z = (s2 / n2 - s1 / n1) / se
    return Test("z", z, min(1.0, 2 * normal_sf(abs(z))))


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """The two-sided p of Fisher's exact test on the table [[a, b], [c, d]]: the probability of every
    table with the same margins no likelier than this one."""
    row, col, n = a + b, a + c, a + b + c + d

    def logp(x: int) -> float:
        return _log_comb(col, x) + _log_comb(n - col, row - x) - _log_comb(n, row)

    low, high = max(0, row + col - n), min(row, col)
    observed = logp(a)
    total = 0.0
    for x in range(low, high + 1):
        lp = logp(x)
        if lp <= observed + 1e-7 * abs(observed) + 1e-12:  # scipy's relative tolerance for ties
            total += math.exp(lp)
    return min(1.0, total)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def mann_whitney(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray) -> Test:
    """Whether ``second`` tends to sit above or below ``first`` (two-sided). The statistic is the
    common-language effect size: P(second > first), ties counting half (0.5 = no shift)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both groups need at least one observation")
    both = np.concatenate([a, b])
    ranks = _ranks(both)
    u2 = float(ranks[n1:].sum()) - n2 * (n2 + 1) / 2
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    ties = float((counts**3 - counts).sum())
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    effect = u2 / (n1 * n2)
    if var <= 0:
        return Test("mann-whitney", effect, 1.0)
    mean = n1 * n2 / 2
    z = (abs(u2 - mean) - 0.5) / math.sqrt(var)  # continuity-corrected
    return Test("mann-whitney", effect, min(1.0, 2 * normal_sf(max(z, 0.0))))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=float)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks


def wasserstein(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray) -> float:
    """The Wasserstein-1 (earth mover's) distance between two samples: the area between their CDFs."""
    a, b = np.sort(np.asarray(first, dtype=float)), np.sort(np.asarray(second, dtype=float))
    if not len(a) or not len(b):
        raise ValueError("both groups need at least one observation")
    grid = np.sort(np.concatenate([a, b]))
    widths = np.diff(grid)
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def psi(reference: Mapping[str, int], current: Mapping[str, int]) -> Test:
    """The population stability index of a categorical distribution, Σ (c − r)·ln(c / r) over the
    shares, with the chi-square test of homogeneity's p beside it."""
    names = sorted(set(reference) | set(current))
    r = np.array([reference.get(k, 0) for k in names], dtype=float)
    c = np.array([current.get(k, 0) for k in names], dtype=float)
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError("both groups need at least one observation")
    rs, cs = np.maximum(r / r.sum(), PSI_FLOOR), np.maximum(c / c.sum(), PSI_FLOOR)
    index = float(np.sum((cs - rs) * np.log(cs / rs)))
    return Test("psi", index, chi_square_homogeneity(r, c))


def chi_square_homogeneity(first: np.ndarray, second: np.ndarray) -> float:
    """The p of Pearson's chi-square test that two count vectors share one distribution."""
    table = np.vstack([first, second])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return chi2_sf(stat, table.shape[1] - 1)


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for chi-square with ``dof`` degrees of freedom: the regularised upper gamma Q(dof/2, x/2)."""
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2, x / 2)


def _gamma_q(a: float, x: float) -> float:
    if x < a + 1:  # the series for P converges fast here
        term = total = 1.0 / a
        k = a
        while abs(term) > abs(total) * 1e-15:
            k += 1
            term *= x / k
            total += term
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    # Lentz's continued fraction for Q
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)


def centroid_distance(first: np.ndarray, second: np.ndarray) -> float:
    """1 − the cosine between the two samples' mean vectors (0: the same centre)."""
    a, b = np.asarray(first, dtype=float).mean(axis=0), np.asarray(second, dtype=float).mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if denom == 0 else float(1 - np.dot(a, b) / denom)


def classifier_test(first: np.ndarray, second: np.ndarray, *, seed: int = 0) -> Test:
    """A classifier two-sample test: a logistic regression learns to tell ``second`` from ``first``
    on one half of each and is scored on the other half, then the halves swap. Each held-out AUC
    has the Mann–Whitney null (a model scored on data it never saw), so each gives a p; the smaller,
    doubled, is the test's (Bonferroni). The statistic is the mean held-out AUC (0.5: indistinguishable). Pooling
    out-of-fold scores from different models instead, as cross_val_predict does, mixes their scales
    and is not calibrated: it alarmed on stable traffic in the bench."""
    from sklearn.linear_model import LogisticRegression

    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 4 or len(b) < 4:
        raise ValueError("a classifier test needs at least four observations on each side")
    rng = np.random.default_rng(seed)
    ia, ib = rng.permutation(len(a)), rng.permutation(len(b))
    halves = [(ia[: len(a) // 2], ia[len(a) // 2 :]), (ib[: len(b) // 2], ib[len(b) // 2 :])]
    areas: list[float] = []
    zs: list[float] = []
    for fold in (0, 1):
        train_a, test_a = halves[0][fold], halves[0][1 - fold]
        train_b, test_b = halves[1][fold], halves[1][1 - fold]
        x = np.vstack([a[train_a], b[train_b]])
        y = np.r_[np.zeros(len(train_a)), np.ones(len(train_b))]
        model = LogisticRegression(C=1.0, max_iter=500, class_weight="balanced").fit(x, y)
        scores = model.decision_function(np.vstack([a[test_a], b[test_b]]))
        n1, n2 = len(test_a), len(test_b)
        area = auc(scores.tolist(), [False] * n1 + [True] * n2)
        areas.append(area)
        zs.append((area - 0.5) / math.sqrt((n1 + n2 + 1) / (12 * n1 * n2)))
    # the halves' models see each other's test data, so their z's are not independent: Bonferroni,
    # which holds whatever their dependence (Stouffer's sum was anti-conservative on stable traffic)
    p = min(1.0, 2 * min(normal_sf(z) for z in zs))  # one-sided: only AUC > 0.5 is a shift
    return Test("classifier", float(np.mean(areas)), p)


def benjamini_hochberg(pvalues: Sequence[float], q: float = 0.05) -> list[bool]:
    """Which of ``pvalues`` are discoveries at false discovery rate ``q`` (Benjamini–Hochberg)."""
    m = len(pvalues)
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: pvalues[i])
    cutoff = -1
    for rank, i in enumerate(order, start=1):
        if pvalues[i] <= q * rank / m:
            cutoff = rank
    found = [False] * m
    for rank, i in enumerate(order, start=1):
        found[i] = rank <= cutoff
    return found


def adjusted(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (a discovery at q when the adjusted p ≤ q)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    out = [1.0] * m
    best = 1.0
    for k, i in enumerate(order):
        rank = m - k
        best = min(best, pvalues[i] * m / rank)
        out[i] = min(1.0, best)
    return out
