"""Seeded short series with annotated change points, in the shapes real series have.

Each series has 100 to 800 points and one shape family:

- ``trend``: a linear trend (a rise of 2 to 6 noise standard deviations over the series)
  plus Gaussian noise;
- ``seasonal``: a sine of period 7, 12, 24 or 52 and amplitude 1 to 2 plus Gaussian noise;
- ``ar1``: an AR(1) process with phi drawn from 0.3 to 0.9, scaled to a marginal standard
  deviation of 1;
- ``heavy_tailed``: Student t noise with 2.5 to 5 degrees of freedom (outliers);
- ``skewed``: centred gamma noise of shape 1.5 to 4 (a long right tail).

Changes (0 to 5 per series, a fifth of the series have none) fall at least ``MIN_SEGMENT``
points apart and from either end, so that each segment is long enough for a person to
see it. Each is one of:

- ``level``: the level jumps by 2 to 4 noise standard deviations, up or down;
- ``variance``: the noise standard deviation is multiplied or divided by 2.5 to 4;
- ``slope``: the slope changes by enough to rise 3 to 6 noise standard deviations over the
  next ``MIN_SEGMENT`` points, with no jump.

The sizes are those of a clear, human-annotated change (as in the TCPD benchmark's
series), fixed before any detector was tuned on them. The annotation of a change is the
index of its first changed value.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

FAMILIES = ("trend", "seasonal", "ar1", "heavy_tailed", "skewed")
CHANGE_KINDS = ("level", "variance", "slope")
MIN_LENGTH = 100
MAX_LENGTH = 800
MAX_CHANGES = 5
MIN_SEGMENT = 40
NO_CHANGE_SHARE = 0.2


@dataclasses.dataclass(frozen=True)
class Series:
    """One generated series, its shape family, and where and what its changes are."""

    seed: int
    family: str
    values: np.ndarray
    changes: tuple[int, ...]
    kinds: tuple[str, ...]


def series(seed: int) -> Series:
    """The series of ``seed``: same seed, same series."""
    rng = np.random.default_rng(seed)
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    n = int(rng.integers(MIN_LENGTH, MAX_LENGTH + 1))
    changes = _change_points(rng, n)
    kinds = tuple(CHANGE_KINDS[int(i)] for i in rng.integers(len(CHANGE_KINDS), size=len(changes)))
    t = np.arange(n, dtype=np.float64)
    noise = _noise(rng, family, n)
    base = _base(rng, family, t)
    scale = np.ones(n)
    level = np.zeros(n)
    for at, kind in zip(changes, kinds, strict=True):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "level":
            level[at:] += sign * rng.uniform(2.0, 4.0) * scale[at - 1]
        elif kind == "variance":
            scale[at:] *= rng.uniform(2.5, 4.0) ** sign
        else:
            rise = rng.uniform(3.0, 6.0) * scale[at - 1]
            level[at:] += sign * rise / MIN_SEGMENT * (t[at:] - at + 1)
    return Series(seed, family, base + level + scale * noise, tuple(changes), kinds)


def series_set(seeds: range) -> list[Series]:
    """The series of every seed in ``seeds``."""
    return [series(seed) for seed in seeds]


def _change_points(rng: np.random.Generator, n: int) -> list[int]:
    if rng.random() < NO_CHANGE_SHARE:
        return []
    fits = n // MIN_SEGMENT - 1
    count = int(rng.integers(1, min(MAX_CHANGES, fits) + 1))
    # Spread the slack between the gaps: each gap is MIN_SEGMENT plus a random share.
    slack = n - MIN_SEGMENT * (count + 1)
    shares = rng.dirichlet(np.ones(count + 1)) * slack
    gaps = MIN_SEGMENT + np.floor(shares).astype(int)
    return [int(at) for at in np.cumsum(gaps)[:count]]


def _noise(rng: np.random.Generator, family: str, n: int) -> np.ndarray:
    if family == "ar1":
        phi = rng.uniform(0.3, 0.9)
        shocks = rng.normal(0.0, np.sqrt(1.0 - phi**2), n)
        values = np.empty(n)
        previous = rng.normal()
        for i in range(n):
            previous = phi * previous + shocks[i]
            values[i] = previous
        return values
    if family == "heavy_tailed":
        df = rng.uniform(2.5, 5.0)
        # Scaled so that its interquartile range matches a unit normal's.
        return rng.standard_t(df, n) * 1.349 / (2.0 * float(stats.t.ppf(0.75, df)))
    if family == "skewed":
        shape = rng.uniform(1.5, 4.0)
        return (rng.gamma(shape, 1.0, n) - shape) / np.sqrt(shape)
    return rng.normal(0.0, 1.0, n)


def _base(rng: np.random.Generator, family: str, t: np.ndarray) -> np.ndarray:
    if family == "trend":
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return sign * rng.uniform(2.0, 6.0) * t / len(t)
    if family == "seasonal":
        period = float(rng.choice([7, 12, 24, 52]))
        amplitude = rng.uniform(1.0, 2.0)
        return amplitude * np.sin(2.0 * np.pi * t / period + rng.uniform(0.0, 2.0 * np.pi))
    return np.zeros(len(t))
