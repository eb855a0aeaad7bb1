"""Shadow versus live before any label: agreement, score deltas and rank correlation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors.performance._inputs import fields, finite_float, is_real
from detectors.performance._window import Window, mid_ranks, validate_size


class ShadowAgreement(base.Base):
    """How closely a shadow model's scores follow the live model's on the same requests.

    Feed it one ``update((live_score, shadow_score))`` per request that both models
    scored; non-finite or missing scores are ignored and counted in ``n_ignored``. Over the
    last ``window`` pairs it reports the share of requests on which both take the same side
    of ``threshold`` (``agreement``), the distribution of ``shadow - live`` score deltas,
    and the Spearman and Kendall (tau-b) rank correlations. ``diverged`` turns True when,
    with at least ``min_pairs`` pairs in the window, the Spearman correlation is below
    ``min_rank_correlation`` or undefined (a constant score): a shadow that ranks requests
    unlike live is more often broken (a missing feature, a stale artefact) than better.

    Parameters
    ----------
    window
        How many of the latest pairs the statistics cover (Kendall costs window² / 2
        comparisons on each read).
    threshold
        The decision threshold on both scores for ``agreement``.
    min_rank_correlation
        Spearman correlation below which the shadow counts as diverged, in [-1, 1].
    min_pairs
        How many pairs the window needs before ``diverged`` may turn True.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(5)
    >>> agreement = ShadowAgreement(window=300)
    >>> for live in rng.random(1000):
    ...     shadow = float(np.clip(live + rng.normal(0.02, 0.1), 0, 1))
    ...     agreement.update((float(live), shadow))
    >>> round(agreement.agreement, 3), round(agreement.delta_p50, 3)
    (0.94, 0.02)
    >>> round(agreement.spearman, 3), round(agreement.kendall, 3), agreement.diverged
    (0.957, 0.813, False)
    """

    def __init__(
        self,
        window: int = 500,
        threshold: float = 0.5,
        min_rank_correlation: float = 0.5,
        min_pairs: int = 100,
    ) -> None:
        validate_size("window", window)
        if not (is_real(threshold) and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        if not (is_real(min_rank_correlation) and -1.0 <= min_rank_correlation <= 1.0):
            raise ValueError(
                f"min_rank_correlation must be in [-1, 1], got {min_rank_correlation!r}"
            )
        if not isinstance(min_pairs, int) or not 2 <= min_pairs <= window:
            raise ValueError(f"min_pairs must be an integer in [2, window], got {min_pairs!r}")
        self.window = window
        self.threshold = threshold
        self.min_rank_correlation = min_rank_correlation
        self.min_pairs = min_pairs
        self._reset()

    def _reset(self) -> None:
        self._pairs = Window(self.window, 2)  # columns: live, shadow
        self._n_pairs = 0
        self._n_ignored = 0

    def update(self, x: Any) -> None:
        """Absorb one ``(live_score, shadow_score)`` pair; never raises."""
        pair = fields(x, 2)
        live = finite_float(pair[0]) if pair else None
        shadow = finite_float(pair[1]) if pair else None
        if live is None or shadow is None:
            self._n_ignored += 1
            return
        self._pairs.push(live, shadow)
        self._n_pairs += 1

    def update_many(self, values: Sequence[Any]) -> None:
        """Absorb a batch of pairs: the same state as ``update`` on each in turn.

        Nothing happens inside a batch that a reader would miss (the statistics are read
        from the window), so there are no per-position events. The pairs are checked one
        by one, as ``update`` checks them, and the window takes the valid ones at once.
        """
        kept: list[tuple[float, float]] = []
        for x in values:
            pair = fields(x, 2)
            live = finite_float(pair[0]) if pair else None
            shadow = finite_float(pair[1]) if pair else None
            if live is None or shadow is None:
                continue
            kept.append((live, shadow))
        self._n_ignored += len(values) - len(kept)
        if kept:
            self._pairs.push_many(np.array(kept, dtype=np.float64))
            self._n_pairs += len(kept)

    def _deltas(self) -> np.ndarray:
        return self._pairs.column(1) - self._pairs.column(0)

    @property
    def agreement(self) -> float:
        """Share of pairs on the same side of ``threshold`` (NaN before any)."""
        if not len(self._pairs):
            return math.nan
        live, shadow = self._pairs.column(0), self._pairs.column(1)
        return float(np.mean((live >= self.threshold) == (shadow >= self.threshold)))

    @property
    def delta_mean(self) -> float:
        """Mean of ``shadow - live`` (NaN before any pair)."""
        return float(np.mean(self._deltas())) if len(self._pairs) else math.nan

    def delta_quantile(self, q: float) -> float:
        """The ``q`` quantile of ``shadow - live`` in the window (NaN before any pair)."""
        if not len(self._pairs) or not 0.0 <= q <= 1.0:
            return math.nan
        return float(np.quantile(self._deltas(), q))

    @property
    def delta_p05(self) -> float:
        """5th percentile of ``shadow - live``."""
        return self.delta_quantile(0.05)

    @property
    def delta_p50(self) -> float:
        """Median of ``shadow - live``."""
        return self.delta_quantile(0.5)

    @property
    def delta_p95(self) -> float:
        """95th percentile of ``shadow - live``."""
        return self.delta_quantile(0.95)

    @property
    def spearman(self) -> float:
        """Spearman rank correlation of the scores (NaN if either is constant)."""
        if len(self._pairs) < 2:
            return math.nan
        live = mid_ranks(self._pairs.column(0))
        shadow = mid_ranks(self._pairs.column(1))
        live, shadow = live - live.mean(), shadow - shadow.mean()
        scale = math.sqrt(float(np.dot(live, live)) * float(np.dot(shadow, shadow)))
        return float(np.dot(live, shadow)) / scale if scale > 0 else math.nan

    @property
    def kendall(self) -> float:
        """Kendall's tau-b of the scores (NaN if either is constant)."""
        if len(self._pairs) < 2:
            return math.nan
        live, shadow = self._pairs.column(0), self._pairs.column(1)
        upper = np.triu_indices(len(live), k=1)
        live_signs = np.sign(live[:, None] - live[None, :])[upper]
        shadow_signs = np.sign(shadow[:, None] - shadow[None, :])[upper]
        scale = math.sqrt(float(np.count_nonzero(live_signs)) * np.count_nonzero(shadow_signs))
        return float(np.dot(live_signs, shadow_signs)) / scale if scale > 0 else math.nan

    @property
    def n_pairs(self) -> int:
        """How many pairs were absorbed in all."""
        return self._n_pairs

    @property
    def n_ignored(self) -> int:
        """How many inputs were not a pair of finite scores."""
        return self._n_ignored

    @property
    def diverged(self) -> bool:
        """The shadow ranks requests unlike live (see the class description)."""
        if len(self._pairs) < self.min_pairs:
            return False
        spearman = self.spearman
        return math.isnan(spearman) or spearman < self.min_rank_correlation
