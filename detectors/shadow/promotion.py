"""Shadow versus live on delayed labels: an always-valid paired test and the promotion verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from river import base

from detectors._batch import BatchEvents
from detectors.performance._inputs import fields, finite_float, is_real, unit_float
from detectors.shadow._betting import BettingConfidenceSequence

Verdict = Literal["promote", "keep_watching", "reject"]

DAY = 86_400.0


class ShadowPromotion(BatchEvents, base.Base):
    """Whether a shadow model beats the live one, decided on labels, safe to look at any time.

    Feed it one ``update((event_at, live_loss, shadow_loss))`` per request whose label
    arrived: ``event_at`` the request's event time in seconds (e.g. its ``predicted_at``),
    and each model's loss on it in [0, 1] (the 0/1 error, the Brier score, or a log loss
    divided by a cap). Invalid inputs are ignored and counted in ``n_ignored``.

    The improvement of a request is ``live_loss - shadow_loss``, in [-1, 1]; its mean is
    bracketed by a (1 - ``alpha``) confidence sequence (betting, Waudby-Smith and Ramdas)
    whose bounds are ``lower`` and ``upper``. A confidence sequence holds at every time at
    once, so looking after every label does not inflate errors: whatever the stopping
    rule, a shadow no better than ``min_improvement`` is promoted with probability at most
    ``alpha``, and one better than it is rejected with probability at most ``alpha``.

    ``verdict`` is:

    - ``"reject"`` when ``upper < min_improvement`` (the shadow is shown not to improve by
      the margin) or when ``max_trial_period`` of event time has gone by without a
      promotion;
    - ``"promote"`` when ``lower > min_improvement`` and the pairs span at least
      ``min_stable_period`` of event time, so that a whole weekly cycle was compared;
    - ``"keep_watching"`` otherwise.

    The verdict follows the evidence and can change back: act on its first change.
    ``verdict_changes`` lists, by position in the last batch (``update_many``; ``update``
    is a batch of one), each input after which the verdict differs from the one before.

    Parameters
    ----------
    alpha
        Error level of the confidence sequence, in (0, 1).
    min_improvement
        The mean loss reduction the shadow must be shown to exceed, in [0, 1).
    min_stable_period
        Event time in seconds the comparison must span before a promotion (7 days).
    max_trial_period
        Event time in seconds after which an undecided trial is rejected; None never.
    grid_size
        Candidate means tried on [-1, 1]; the bounds' resolution is ``2 / grid_size``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(6)
    >>> trial = ShadowPromotion(alpha=0.05, min_stable_period=7 * 86400.0)
    >>> verdicts = {}
    >>> for i in range(12_000):  # one labelled request a minute
    ...     live_error = float(rng.random() < 0.20)
    ...     shadow_error = float(rng.random() < 0.15)
    ...     trial.update((60.0 * i, live_error, shadow_error))
    ...     first = verdicts.setdefault(trial.verdict, i)
    >>> verdicts
    {'keep_watching': 0, 'promote': 10080}
    >>> round(trial.lower, 3), round(trial.upper, 3), round(trial.stable_for / 86400.0, 2)
    (0.027, 0.067, 8.33)
    """

    def __init__(
        self,
        alpha: float = 0.05,
        min_improvement: float = 0.0,
        min_stable_period: float = 7 * DAY,
        max_trial_period: float | None = None,
        grid_size: int = 1000,
    ) -> None:
        if not (is_real(alpha) and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not (is_real(min_improvement) and 0.0 <= min_improvement < 1.0):
            raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement!r}")
        if not (is_real(min_stable_period) and 0.0 <= min_stable_period < math.inf):
            raise ValueError(
                f"min_stable_period must be a finite number of seconds >= 0, got "
                f"{min_stable_period!r}"
            )
        if max_trial_period is not None and not (
            is_real(max_trial_period) and min_stable_period <= max_trial_period
        ):
            raise ValueError(
                f"max_trial_period must be None or >= min_stable_period, got {max_trial_period!r}"
            )
        if not isinstance(grid_size, int) or grid_size < 10:
            raise ValueError(f"grid_size must be an integer of at least 10, got {grid_size!r}")
        self.alpha = alpha
        self.min_improvement = min_improvement
        self.min_stable_period = min_stable_period
        self.max_trial_period = max_trial_period
        self.grid_size = grid_size
        self._reset()

    def _reset(self) -> None:
        self._sequence = BettingConfidenceSequence(self.alpha, self.grid_size)
        self._started_at = math.nan
        self._latest_at = math.nan
        self._n_ignored = 0
        self._batch_events: list[tuple[Any, ...]] = []

    def update(self, x: Any) -> None:
        """Absorb one ``(event_at, live_loss, shadow_loss)``; never raises."""
        if self._batch_events:
            self._batch_events = []
        valid = _valid(x)
        if valid is None:
            self._n_ignored += 1
            return
        before = self.verdict
        event_at, improvement = valid
        self._sequence.update(improvement)
        self._span(event_at)
        after = self.verdict
        if after != before:
            self._batch_events = [(0, after)]

    def update_many(self, values: Sequence[Any]) -> None:
        """Absorb a batch of ``(event_at, live_loss, shadow_loss)``: the same state as
        ``update`` on each in turn, and ``verdict_changes`` at the same positions.

        The confidence sequence takes the batch's valid inputs at once: its capitals and
        their bounds after every input are array computations over the grid.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = []
        positions: list[int] = []
        improvements: list[float] = []
        event_ats: list[float] = []
        for i, x in enumerate(values):
            valid = _valid(x)
            if valid is not None:
                positions.append(i)
                event_ats.append(valid[0])
                improvements.append(valid[1])
        self._n_ignored += len(values) - len(positions)
        if not positions:
            return
        verdict = self.verdict
        bounds = self._sequence.update_many(improvements)
        for i, event_at, (lower, upper) in zip(positions, event_ats, bounds, strict=True):
            self._span(event_at)
            after = self._verdict(2.0 * lower - 1.0, 2.0 * upper - 1.0)
            if after != verdict:
                self._batch_events.append((i, after))
                verdict = after

    def _span(self, event_at: float) -> None:
        """Widen the event time the pairs span to ``event_at``."""
        if not event_at >= self._started_at:  # also true while started_at is NaN
            self._started_at = event_at
        if not event_at <= self._latest_at:
            self._latest_at = event_at

    @property
    def verdict_changes(self) -> list[tuple[int, Verdict]]:
        """Positions in the last batch after which the verdict changed, and the new verdict."""
        return list(self._batch_events)

    @property
    def lower(self) -> float:
        """Lower confidence bound on the mean of ``live_loss - shadow_loss``."""
        lower, _ = self._sequence.bounds()
        return 2.0 * lower - 1.0

    @property
    def upper(self) -> float:
        """Upper confidence bound on the mean of ``live_loss - shadow_loss``."""
        _, upper = self._sequence.bounds()
        return 2.0 * upper - 1.0

    @property
    def mean_improvement(self) -> float:
        """Observed mean of ``live_loss - shadow_loss`` (NaN before any pair)."""
        return 2.0 * self._sequence.mean - 1.0

    @property
    def n_pairs(self) -> int:
        """How many labelled pairs were absorbed."""
        return self._sequence.n

    @property
    def n_ignored(self) -> int:
        """How many inputs were not a valid ``(event_at, live_loss, shadow_loss)``."""
        return self._n_ignored

    @property
    def stable_for(self) -> float:
        """Event time spanned by the pairs so far, in seconds (0 before any)."""
        return self._latest_at - self._started_at if self.n_pairs else 0.0

    @property
    def verdict(self) -> Verdict:
        """``"promote"``, ``"keep_watching"`` or ``"reject"``; see the class description."""
        lower, upper = self._sequence.bounds()
        return self._verdict(2.0 * lower - 1.0, 2.0 * upper - 1.0)

    def _verdict(self, lower: float, upper: float) -> Verdict:
        """The verdict for these bounds on the improvement, at the current span."""
        if upper < self.min_improvement:
            return "reject"
        if lower > self.min_improvement and self.stable_for >= self.min_stable_period:
            return "promote"
        if self.max_trial_period is not None and self.stable_for >= self.max_trial_period:
            return "reject"
        return "keep_watching"

    @property
    def promoted(self) -> bool:
        """``verdict == "promote"``."""
        return self.verdict == "promote"


def _valid(x: Any) -> tuple[float, float] | None:
    """An input's event time and improvement mapped to [0, 1], or None when invalid."""
    values = fields(x, 3)
    event_at = finite_float(values[0]) if values else None
    live_loss = unit_float(values[1]) if values else None
    shadow_loss = unit_float(values[2]) if values else None
    if event_at is None or live_loss is None or shadow_loss is None:
        return None
    # The improvement in [-1, 1], mapped to [0, 1] for the confidence sequence.
    return event_at, (1.0 + live_loss - shadow_loss) / 2.0
