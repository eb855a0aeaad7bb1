"""Two-sample statistics and the distribution functions behind their p-values.

numpy and the standard library only: scipy is a development dependency (the tests
cross-check these functions against it), so the workers do not pull it in.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Continued fractions and series below stop once a term changes the sum by less than this.
_EPSILON = 1e-15
_MAX_TERMS = 10_000


def merged_cdfs(
    reference: FloatArray, current: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Both sorted samples merged in order, and each one's empirical CDF at every merged value.

    Each CDF equals ``np.searchsorted(sample, merged, side="right") / sample.size``, the
    same integer counts divided alike, without a binary search per value: a stable sort
    merges the two sorted runs in linear time, and the count of each sample up to a value
    is its running count at the last of that value's ties.
    """
    values = np.concatenate([reference, current])
    order = np.argsort(values, kind="stable")
    merged = values[order]
    below_reference = np.cumsum(order < reference.size)
    below_current = np.arange(1, merged.size + 1) - below_reference
    last_of_ties = np.flatnonzero(np.append(merged[1:] != merged[:-1], True))
    if last_of_ties.size < merged.size:
        # Every value of a run of ties takes the counts at its last.
        at = np.repeat(last_of_ties, np.diff(last_of_ties, prepend=-1))
        below_reference, below_current = below_reference[at], below_current[at]
    return merged, below_reference / reference.size, below_current / current.size


def ks_statistic(reference: FloatArray, current: FloatArray) -> float:
    """Largest distance between the two empirical CDFs; both inputs sorted."""
    _, cdf_reference, cdf_current = merged_cdfs(reference, current)
    return float(np.max(np.abs(cdf_reference - cdf_current)))


def wasserstein_1(reference: FloatArray, current: FloatArray) -> float:
    """Area between the two empirical CDFs (earth mover's distance); both inputs sorted."""
    points, cdf_reference, cdf_current = merged_cdfs(reference, current)
    widths = np.diff(points)
    return float(np.sum(np.abs(cdf_reference[:-1] - cdf_current[:-1]) * widths))


def kolmogorov_sf(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided p-value of the two-sample KS statistic.

    Uses the Kolmogorov distribution at the effective sample size with Stephens' small
    sample correction; conservative when the data have ties.
    """
    n_effective = n_reference * n_current / (n_reference + n_current)
    root = math.sqrt(n_effective)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam < 1e-3:
        return 1.0
    if lam < 1.18:
        # The theta-function form converges fast for small arguments.
        total = sum(
            math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * lam * lam)) for k in range(1, 8)
        )
        return float(min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / lam * total)))
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


def chi_square_sf(statistic: float, dof: int) -> float:
    """Survival function of the chi-square distribution: the regularized upper gamma Q."""
    if dof <= 0 or statistic <= 0.0:
        return 1.0
    a = dof / 2.0
    x = statistic / 2.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # Series for the lower function P, then Q = 1 - P.
        term = 1.0 / a
        total = term
        for n in range(1, _MAX_TERMS):
            term *= x / (a + n)
            total += term
            if term < total * _EPSILON:
                break
        return float(max(0.0, 1.0 - total * math.exp(log_prefix)))
    # Lentz's continued fraction for Q.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for n in range(1, _MAX_TERMS):
        an = -n * (n - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPSILON:
            break
    return float(min(1.0, math.exp(log_prefix) * h))


def contingency_chi_square(reference: FloatArray, current: FloatArray) -> tuple[float, int]:
    """Pearson's chi-square test of homogeneity for two rows of counts.

    Columns whose expected count is below 5 in either row are pooled into one column, the
    usual condition for the chi-square approximation. Returns the statistic and the degrees
    of freedom.
    """
    totals = reference + current
    keep = totals > 0
    reference, current, totals = reference[keep], current[keep], totals[keep]
    grand = totals.sum()
    smaller_row = min(reference.sum(), current.sum())
    small = totals * smaller_row / grand < 5.0
    if small.any():
        reference = np.append(reference[~small], reference[small].sum())
        current = np.append(current[~small], current[small].sum())
        totals = reference + current
    if totals.size < 2:
        return 0.0, 0
    table = np.vstack([reference, current])
    expected = np.outer(table.sum(axis=1), totals) / grand
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, totals.size - 1


def smoothed_shares(counts: FloatArray) -> FloatArray:
    """Shares with half a count added to every cell, so empty cells keep a finite log."""
    smoothed = counts + 0.5
    return np.asarray(smoothed / smoothed.sum(), dtype=np.float64)


def population_stability_index(reference: FloatArray, current: FloatArray) -> float:
    """PSI of two count vectors over the same cells: sum of (q - p) * ln(q / p)."""
    p = smoothed_shares(reference)
    q = smoothed_shares(current)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_p_value(reference: FloatArray, current: FloatArray) -> float:
    """The chance that two samples of one distribution, of the sizes of the count vectors
    ``reference`` and ``current``, give a PSI over the cells either fills at least as high
    as theirs.

    Such a PSI is close to ``1/n + 1/m`` times a chi-square with one degree of freedom
    fewer than those cells (n, m: the samples' sizes): at a window of 50 values the
    customary 0.2 is what chance gives in most windows, at 1,000 almost never. Cells both
    leave empty are left out of the index too: their half counts would add a fixed amount
    to it wherever n and m differ (an unseen category's cell against a large reference).
    """
    filled = (reference + current) > 0
    statistic = population_stability_index(reference[filled], current[filled])
    scale = 1.0 / reference.sum() + 1.0 / current.sum()
    return chi_square_sf(statistic / scale, int(np.count_nonzero(filled)) - 1)


def psi_alarms(
    statistic: float, reference: FloatArray, current: FloatArray, threshold: float, alpha: float
) -> bool:
    """Whether the PSI ``statistic`` of these count vectors is an alarm: above
    ``threshold``, and where chance alone gives such an index with probability below
    ``alpha`` (``psi_p_value``, computed only past the threshold)."""
    return statistic > threshold and psi_p_value(reference, current) < alpha


def jensen_shannon(reference: FloatArray, current: FloatArray) -> float:
    """Jensen-Shannon divergence in bits (0 to 1) of two count vectors over the same cells."""
    p = reference / reference.sum()
    q = current / current.sum()
    m = (p + q) / 2.0
    return float(0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m))


def _kl_bits(p: FloatArray, m: FloatArray) -> float:
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log2(p[nonzero] / m[nonzero])))
