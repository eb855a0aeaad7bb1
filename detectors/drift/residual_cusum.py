"""CUSUMs on the residuals of a local trend and AR(1) model, for short and real-shaped series."""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
from river import base

from detectors._compiled import compiled
from detectors.drift._effect import NOISE_SDS, quantile_effect, quantile_shifts, slow_variance
from detectors.drift._window import (
    finite_float,
    finite_floats,
    validate_level,
    validate_positive,
)

_MAD_TO_SIGMA = 1.4826
# Reference values further than this many robust standard deviations from the median are
# pulled in to it before the model is fitted, so that outliers do not bend the fit.
_WINSOR_SIGMAS = 4.0
# A trend is kept only when its slope is this many (autocorrelation-adjusted) standard
# errors from zero; a noisy slope extrapolated over hundreds of values is a false alarm.
_TREND_T = 3.0
_MAX_AUTOCORRELATION = 0.95
# The AR(1) coefficient is kept only above this many of its standard errors (1 / sqrt(n)).
_AR_Z = 2.0
_MAX_RESIDUAL_AUTOCORRELATION = 0.8
# Siegmund's correction of a CUSUM threshold for the overshoot of a Gaussian random walk.
_SIEGMUND_OFFSET = 1.166
# |Z| of a standard normal: mean sqrt(2 / pi), standard deviation sqrt(1 - 2 / pi); the
# spread CUSUMs' allowances are in units of that standard deviation for their thresholds.
_ABS_SD_OVER_MEAN = math.sqrt(1.0 - 2.0 / math.pi) / math.sqrt(2.0 / math.pi)
# Refits stop at the start of an excursion above this fraction of its CUSUM's threshold.
_HOLD_BACK = 0.5
# The change search reaches back twice the CUSUM's excursion and this many values more.
_LOCATE_MARGIN = 10
# An alarm's effect compares at least this many of the latest values with the reference.
_EFFECT_VALUES = 20
_NEWTON_STEPS = 30
_CAUSES = ("mean_up", "mean_down", "spread_up", "spread_down")
# The slow check's causes, by the position that moved most (a quartile: its sign; the
# middle half: its sign) against an older reference.
_SLOW_CAUSES = ("slow_mean_up", "slow_mean_down", "slow_spread_up", "slow_spread_down")
# Refits come at least every 2 ** -_REFIT_SHARE of the reference's length: the cost of a
# value stays bounded as the reference grows, and an eighth renewed at once still follows
# a slow drift.
_REFIT_SHARE = 3
# What stopped ``_run``: the end of its values, or a refit that is due (an alarm: the
# alarming CUSUM's index, 0 to 3).
_RAN_OUT = -1
_REFIT_DUE = 4


def cusum_threshold(alpha: float, allowance: float) -> float:
    """The threshold of a one-sided CUSUM of unit-variance Gaussian increments, with
    drift ``-allowance`` in control, whose mean run length to a false alarm is ``1 / alpha``
    (Siegmund's approximation, solved by bisection).

    >>> round(cusum_threshold(1e-3, 0.5), 3)
    5.063
    """
    return _siegmund_threshold(alpha, 2.0 * allowance, allowance)


def _siegmund_threshold(alpha: float, tilt: float, drift: float) -> float:
    """The threshold whose run length ``(exp(tilt * b) - tilt * b - 1) / (tilt * drift)``,
    ``b`` the threshold plus Siegmund's overshoot, is ``1 / alpha``. For Gaussian
    increments of drift ``-k`` the tilt is ``2 k``; for others it is the ``theta > 0``
    with ``E[exp(theta X)] = 1`` (Wald), which carries their skew into the threshold."""
    target = 1.0 / alpha

    def run_length(b: float) -> float:
        return (math.exp(tilt * b) - tilt * b - 1.0) / (tilt * drift)

    low, high = 0.0, 1.0
    while run_length(high) < target:
        high *= 2.0
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (middle, high) if run_length(middle) < target else (low, middle)
    return max(high - _SIEGMUND_OFFSET, 0.5)


def _tilted_threshold(alpha: float, increments: np.ndarray) -> float:
    """``_siegmund_threshold`` for a CUSUM whose in-control increments are drawn equally
    likely from ``increments`` (mean < 0)."""
    drift = -float(increments.mean())
    if not increments.max() > 0.0:
        # It never rises in control; any finite level is never reached.
        return _siegmund_threshold(alpha, 2.0 * drift, drift)

    top = float(increments.max())

    def log_moment(theta: float) -> tuple[float, float]:
        """log E[exp(theta X)] and its derivative, the tilted mean of X."""
        weights = np.exp(theta * (increments - top))
        total = float(weights.sum())
        return theta * top + math.log(total / len(increments)), float(weights @ increments) / total

    # log E[exp(theta X)] is convex, 0 at 0 and falling there: Newton's steps from a
    # point where it is positive fall monotonically to its positive root.
    theta = 2.0 * drift / max(float(increments.var()), 1e-12)
    value, slope = log_moment(theta)
    while value < 0.0:
        theta *= 2.0
        value, slope = log_moment(theta)
    for _ in range(_NEWTON_STEPS):
        if value < 1e-9:
            break
        theta -= value / slope
        value, slope = log_moment(theta)
    return _siegmund_threshold(alpha, theta, drift)


class ResidualCUSUM(base.DriftDetector):
    """Mean and spread CUSUMs on the residuals of a small local model, from a short warm-up.

    Made for what real series have from their first hundred values: trend, seasonality,
    autocorrelation, heavy tails, skew and outliers.

    Model. A reference of recent values (the first ``warm_up`` values at the start) is
    fitted robustly: values beyond four robust standard deviations (median, MAD) of the
    median are pulled in to that bound; a linear trend is fitted and kept only when its
    slope is at least three standard errors from zero (standard errors widened for
    autocorrelation); an AR(1) coefficient in [0, 0.95] is fitted to what remains and kept
    only when it is at least two standard errors (``2 / sqrt(n)``) above zero. Each new
    value is predicted from the trend and from the previous value. What predicts the next
    value is the prediction plus the residual clipped to ``clip`` robust standard
    deviations, so that an outlier does not carry over.

    Robust standardisation. A residual becomes the normal score of its rank among the
    reference's residuals (mid-ranks for ties). Skew, heavy tails, outliers, bimodal and
    zero-inflated or discrete scores all become a bounded score whose in-control law is
    known from the reference: a new value's rank is uniform over the reference's places.

    Tests. Four one-sided CUSUMs run on the scores:

    - mean up and down, in units of the scores' long-run standard deviation (widened by
      their lag-1 autocorrelation, which seasonality left in the residuals gives), clipped
      to ``[-clip, clip]`` and tuned for a shift of ``2 * allowance`` of those units;
    - spread up and down, on the score's distance from its reference mean, standardised,
      tuned for the residuals' standard deviation growing or shrinking by
      ``spread_ratio``.

    The thresholds make each CUSUM's mean run length to a false alarm ``4 / alpha`` values
    (Siegmund's approximation): about ``alpha`` false alarms per value for the four. The
    mean CUSUMs take the Gaussian approximation; the spread CUSUMs' increments are skewed,
    so their thresholds come from each reference's in-control increments, through the
    exponential tilt ``theta`` with ``E[exp(theta X)] = 1`` (Wald). The reference is
    estimated, so the real rate differs; ``tests/benchmarks/bench_changepoints.py --null``
    measures it on skewed, bimodal, zero-inflated, heavy-tailed, discrete and slowly
    drifting score streams.

    Renewal. While no CUSUM is half-way to its threshold the reference follows the stream:
    every ``refit_every`` values, or every eighth of the reference when that is longer
    (a refit then renews an eighth of it at most), the model is refitted on the values
    from the last change
    up to where the current excursions began (the last time every CUSUM above half its
    threshold was zero), at most ``max_reference`` of them. A slow, harmless drift of the
    mix is thereby absorbed, and a change under test stays out of its own reference. On an
    alarm, the change is located (``change_lag`` values before the alarm): for a spread
    alarm where its CUSUM last left zero, for a mean alarm at the split of the recent
    scores that a step or a ramp (a slope change) explains best. The values since then
    become the new reference, so the detector is ready again as soon as ``warm_up``
    values of the new regime are in.

    Slow check. Renewal absorbs any change slower than the reference's lag: a ramp of one
    standard deviation over 1,000 values leaves the residuals of a 400-value reference
    0.2 standard deviations off, far below what the mean CUSUMs are tuned for, and never
    alarms. So the segment also keeps older references: a full reference (``max_reference``
    values, no trend kept) is set aside whenever the newest one kept ended at least
    ``2 * max_reference`` values earlier, and the two latest are kept. At each refit with
    no CUSUM excursion under way, the last ``max_reference // 2`` values are compared with
    the older of them (so with a reference 800 to 1,600 values old at the defaults) by the
    effect's positions (below). Their in-control noise also counts how far the traffic
    moves at that lag when nothing changes: the mean squared move of each reference set
    aside from the one before it, less sampling, over the pairs up to the compared one (so
    a change after it does not widen its own noise), over every segment so far. The check
    alarms when one position moved both by at least ``min_effect`` after two of those
    standard deviations and by at least the normal quantile of ``1 - alpha / 8`` of them.
    A slow move below the floor is the harmless drift that renewal is for; a ramp above it
    alarms (``slow_mean_up``, ``slow_mean_down``, or ``slow_spread_up`` and
    ``slow_spread_down`` when the middle half moved most), its change at the first of the
    values compared and its effect judged against that older reference
    (``judged_against``), and the segment renews.

    Effect size. On each alarm ``effect`` compares the latest values (those since the
    located change, at least 20) with the reference, in quantiles of the reference
    (``detectors.drift._effect.quantile_effect``): how far each quartile of the new values
    moved in the reference's distribution, and the share that left or entered its middle
    half, each less two in-control standard deviations: the sampling noise of both and the
    slow variation that the reference's own consecutive blocks show (a reference of 200
    values or more). A quartile on an atom of the reference (zero-inflated or discrete
    scores) has no effect. A shift of the median by ``d`` standard deviations of a normal
    stream has a true effect of ``Phi(d) - 0.5`` (0.1 for ``d`` = 0.25, 0.19 for 0.5, 0.34
    for 1); a doubled standard deviation 0.32. ``material`` says whether the last alarm's
    effect reached ``min_effect``: a worker can act on material alarms and keep the others
    informational. The effect reads raw values, so it suits streams without a strong trend
    (model scores); on a trending stream it also counts the trend.

    Batches. ``update_many(values)`` gives exactly what ``update`` gives value by value,
    with ``detections`` the positions of the alarms within the batch. Both take the values
    through one loop compiled by numba (``detectors._compiled``) from one refit or alarm
    to the next, which stay Python but for a refit's arithmetic, compiled too; a
    warm-up's values are written at once.

    Parameters
    ----------
    alpha
        Approximate false alarms per value of the four CUSUMs together, in (0, 1). For a
        model with a false-fallback budget, ``AlarmBudget.alpha_for("score")``.
    min_effect
        The smallest effect (in reference quantiles, see above) an alarm must reach to be
        ``material``, and the slow check's floor, in [0, 1].
    warm_up
        Values of the first reference, at the start and after each change (>= 10).
    allowance
        Half the mean shift the mean CUSUMs are tuned for, in long-run standard deviations
        of the residuals' normal scores.
    spread_ratio
        Growth or shrinkage of the residuals' standard deviation the spread CUSUMs are
        tuned for (> 1), or None to watch the mean only.
    clip
        Largest absolute standardised residual taken into account (> 0).
    max_reference
        Most values the reference holds (>= ``warm_up``).
    refit_every
        Fewest values between refits of the reference model (>= 1).

    The defaults (alpha 1e-6, close to the 1.7e-6 a worker's budget gives a score at
    2,000 scores per model-day; min_effect 0.15; warm-up 50; allowance 0.75; spread ratio
    2.5; clip 3; reference up to 400 values refitted every 10) were chosen on the
    development seeds of ``tests/benchmarks/bench_changepoints.py``.

    Examples
    --------
    A level shift of two standard deviations in an AR(1) series of 200 values, found
    29 values after it and located one value early:

    >>> import numpy as np
    >>> from detectors import ResidualCUSUM
    >>> rng = np.random.default_rng(7)
    >>> noise = np.zeros(200)
    >>> for i in range(1, 200):
    ...     noise[i] = 0.5 * noise[i - 1] + rng.normal(0.0, 0.87)
    >>> stream = noise + np.where(np.arange(200) >= 120, 2.0, 0.0)
    >>> detector = ResidualCUSUM()
    >>> detector.update_many(stream)
    >>> for i in detector.detections:
    ...     print(i, i - detector.change_lag, detector.cause, detector.material)
    149 119 mean_up True
    """

    # The fitted model (a named tuple, which the garbage collector tracks) in a slot, the
    # rest in the attribute dict, which the collector then stops tracking and visiting.
    __slots__ = ("_model",)

    def __init__(
        self,
        alpha: float = 1e-6,
        min_effect: float = 0.15,
        warm_up: int = 50,
        allowance: float = 0.75,
        spread_ratio: float | None = 2.5,
        clip: float = 3.0,
        max_reference: int = 400,
        refit_every: int = 10,
    ) -> None:
        super().__init__()
        validate_level("alpha", alpha)
        if not isinstance(min_effect, int | float) or not 0.0 <= min_effect <= 1.0:
            raise ValueError(f"min_effect must lie in [0, 1], got {min_effect!r}")
        if not isinstance(warm_up, int) or warm_up < 10:
            raise ValueError(f"warm_up must be an int >= 10, got {warm_up!r}")
        validate_positive("allowance", allowance)
        validate_positive("clip", clip)
        if spread_ratio is not None and not spread_ratio > 1.0:
            raise ValueError(f"spread_ratio must be > 1 or None, got {spread_ratio!r}")
        if not isinstance(max_reference, int) or max_reference < warm_up:
            raise ValueError(f"max_reference must be an int >= warm_up, got {max_reference!r}")
        if not isinstance(refit_every, int) or refit_every < 1:
            raise ValueError(f"refit_every must be an int >= 1, got {refit_every!r}")
        self.alpha = alpha
        self.min_effect = min_effect
        self.warm_up = warm_up
        self.allowance = allowance
        self.spread_ratio = spread_ratio
        self.clip = clip
        self.max_reference = max_reference
        self.refit_every = refit_every
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        # Allowances in standard deviations of each CUSUM's increments; the spread
        # CUSUMs' thresholds come with each reference (their increments are skewed).
        self._mean_threshold = cusum_threshold(self.alpha / 4.0, self.allowance)
        self._spread_allowances = (math.inf, math.inf)
        if self.spread_ratio is not None:
            # |Z| grows by the ratio, in its own standard deviations: (ratio - 1) times
            # E|Z| / sd|Z| for a normal Z, half of that the allowance.
            self._spread_allowances = (
                (self.spread_ratio - 1.0) / 2.0 / _ABS_SD_OVER_MEAN,
                (1.0 - 1.0 / self.spread_ratio) / 2.0 / _ABS_SD_OVER_MEAN,
            )
        # The last values, enough for a reference plus the excursion under test.
        self._memory = np.zeros(2 * self.max_reference, dtype=np.float64)
        # The mean CUSUMs' standardised residual of each value in memory (0 in warm-up).
        self._residuals = np.zeros(2 * self.max_reference, dtype=np.float64)
        self._seen = 0
        self._segment_start = 0
        self._since_fit = 0
        self._model: _Model | None = None
        # Index of the reference's first value: the model's trend counts from there.
        self._origin = 0
        # What predicts the next value: the last value, its residual clipped.
        self._previous = 0.0
        self._reference = np.empty(0, dtype=np.float64)
        # The reference the last alarm was judged against (it renews at the alarm).
        self._judged = self._reference
        # Tuples, replaced rather than changed: ones the garbage collector stops tracking.
        self._sums: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
        # Where each CUSUM last left zero: the index of the first value of its excursion.
        self._starts: tuple[int, ...] = (0, 0, 0, 0)
        self._cause: str | None = None
        self._effect = math.nan
        self._change_lag = 0
        self._n_detections = 0
        self._n_skipped = 0
        self._detections: tuple[int, ...] = ()
        # Older references of the segment for the slow check, oldest first: the index
        # after the last value, the values in arrival order, sorted, and their in-control
        # variance per position beyond sampling: their slow variation, plus the traffic's
        # movement at the check's lag as known when they were set aside. A tuple of tuples
        # of an int and arrays, which the garbage collector stops tracking.
        self._anchors: tuple[tuple[int, np.ndarray, np.ndarray, np.ndarray], ...] = ()
        # How far each older reference's positions moved from the one before it, squared,
        # less sampling: the traffic's harmless movement at the slow check's lag, summed
        # over every pair so far (all segments), and the number of pairs.
        self._lag_sum = np.zeros(4)
        self._lag_pairs = 0
        # The slow check's level: alpha per check, two-sided, over its four positions.
        self._slow_z = NormalDist().inv_cdf(1.0 - self.alpha / 8.0)

    def __copy__(self) -> ResidualCUSUM:
        """A copy that goes on independently of this detector, at the cost of its memory
        arrays: it shares only what the detector replaces instead of changing in place
        (the fitted model, the references, the sums), so a caller can keep one per batch."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._model = self._model
        clone._memory = self._memory.copy()
        clone._residuals = self._residuals.copy()
        return clone

    def update(self, x: Any) -> None:
        """Add one value; missing, non-numeric and non-finite values are counted in
        ``n_skipped``."""
        self._drift_detected = False
        self._detections = ()
        value = finite_float(x)
        if value is None:
            self._n_skipped += 1
        elif self._model is None:
            self._warm(np.array([value]), 0)
        elif self._advance(np.array([value]), 0)[1]:
            self._drift_detected = True
            self._detections = (0,)

    def update_many(self, values: Any) -> None:
        """Add a batch of values: the same result and state as ``update`` on each in turn.

        ``detections`` then holds the positions in ``values`` where ``drift_detected``
        would have been True.
        """
        array = finite_floats(values)
        # NaN stands for an input update() skips.
        positions = np.flatnonzero(~np.isnan(array))
        self._n_skipped += int(array.size - positions.size)
        finite = array[positions]
        found = []
        k = 0
        while k < len(finite):
            if self._model is None:
                k = self._warm(finite, k)
                continue
            k, alarmed = self._advance(finite, k)
            if alarmed:
                found.append(k - 1)
        self._detections = tuple(positions[found].tolist())
        self._drift_detected = bool(found) and self._detections[-1] == len(array) - 1

    def _warm(self, finite: np.ndarray, k: int) -> int:
        """``finite[k:]`` while no model is fitted, at once up to the value after which a
        fit is due (the reference is complete), which this makes; the position after the
        values taken."""
        seen, since_fit = self._seen, self._since_fit
        warmed = seen - self._segment_start
        # A reference that could not be fitted (all its values tie: a stuck model) is
        # tried again every refit_every values, not at each one.
        due = (
            self.warm_up - warmed if warmed < self.warm_up else max(self.refit_every - since_fit, 1)
        )
        # At most once round the memory, whose places then stay distinct.
        take = min(len(finite) - k, due, len(self._memory))
        places = np.arange(seen, seen + take) % len(self._memory)
        self._memory[places] = finite[k : k + take]
        self._residuals[places] = 0.0
        self._seen = seen + take
        self._since_fit = since_fit + take
        if take == due:
            self._fit(self._segment_start, self._seen)
        return k + take

    def _advance(self, finite: np.ndarray, k: int) -> tuple[int, bool]:
        """``finite[k:]`` through the model and the CUSUMs (``_run``) up to an alarm or a
        refit that is due, which this handles; the position after the last value taken,
        and whether it alarmed."""
        model = self._model
        assert model is not None
        sums = np.array(self._sums)
        starts = np.array(self._starts, dtype=np.int64)
        up, down = self._spread_allowances
        k, stop, self._seen, self._since_fit, self._previous = _run(
            finite,
            k,
            self._memory,
            self._residuals,
            sums,
            starts,
            self._seen,
            self._since_fit,
            max(self.refit_every, len(self._reference) >> _REFIT_SHARE),
            self._previous,
            self._origin,
            model.residuals,
            model.scores,
            np.array(
                [
                    model.level,
                    model.slope,
                    model.phi,
                    model.center,
                    model.scale,
                    model.score_mean,
                    model.long_run_sd,
                    model.spread_mean,
                    model.spread_sd,
                    *model.thresholds,
                    self.clip,
                    self.allowance,
                    up,
                    down,
                ]
            ),
        )
        self._sums = tuple(sums.tolist())
        self._starts = tuple(starts.tolist())
        if stop == _RAN_OUT:
            return k, False
        if stop != _REFIT_DUE:
            self._alarm(stop)
            return k, True
        # Excursions well below their threshold are noise, not a change under test.
        seen = self._seen
        end = min(
            (
                start
                for start, total, threshold in zip(
                    self._starts, self._sums, model.thresholds, strict=True
                )
                if total > _HOLD_BACK * threshold
            ),
            default=seen,
        )
        if end - max(self._segment_start, seen - len(self._memory)) >= self.warm_up:
            # While a CUSUM is on its way to a change, the slow check waits for it.
            if end == seen and self._slow_alarm():
                return k, True
            self._fit(self._segment_start, end)
        return k, False

    def _slow_alarm(self) -> bool:
        """The slow check (see the class's docstring); raises its alarm, if any."""
        seen = self._seen
        size = self.max_reference // 2
        if not self._anchors or self._anchors[0][0] > seen - size:
            return False
        _, values, ordered, noise = self._anchors[0]
        recent = self._memory[np.arange(seen - size, seen) % len(self._memory)]
        distances, sds = quantile_shifts(ordered, noise, recent)
        moved = np.abs(distances)
        effects = moved - NOISE_SDS * sds
        if not ((effects >= self.min_effect) & (moved >= self._slow_z * sds)).any():
            return False
        which = int(np.argmax(effects))
        self._cause = _SLOW_CAUSES[2 * (which == 3) + (distances[which] < 0.0)]
        self._n_detections += 1
        self._change_lag = size - 1
        self._judged = values
        self._effect = float(effects[which])
        self._renew(seen - size)
        return True

    def _fit(self, start: int, end: int) -> None:
        """Fit the model on the values with indices [start, end), at most max_reference."""
        start = max(start, end - self.max_reference)
        size = len(self._memory)
        values = self._memory[np.arange(start, end) % size]
        # In arrival order: an alarm's effect reads the reference's slow variation.
        self._reference = values
        self._since_fit = 0
        model = _fit_model(values, self._mean_threshold, self.alpha / 4.0, self._spread_allowances)
        if model is None:
            return
        fresh = self._model is None
        self._model = model
        self._origin = start
        if (
            model.slope == 0.0
            and len(values) == self.max_reference
            and (not self._anchors or self._anchors[-1][0] <= end - 2 * self.max_reference)
        ):
            if self._anchors:
                moved, sds = quantile_shifts(self._anchors[-1][2], np.zeros(4), values)
                self._lag_sum = self._lag_sum + moved**2 - sds**2
                self._lag_pairs += 1
            # Pairs up to this reference only: a change after it, under test when this
            # reference is the one compared, does not widen its own noise.
            lag = np.maximum(self._lag_sum / max(self._lag_pairs, 1), 0.0)
            anchor = (end, values, np.sort(values), slow_variance(values) + lag)
            self._anchors = (*self._anchors[-1:], anchor)
        if fresh:
            # A first model's reference (the warm-up's, a renewal's) runs up to now.
            self._previous = float(values[-1])

    def _alarm(self, which: int) -> None:
        self._cause = _CAUSES[which]
        self._n_detections += 1
        change = max(self._starts[which], self._seen - len(self._memory))
        if which < 2:
            change = self._locate(change)
        self._change_lag = self._seen - 1 - change
        # A short excursion says little about the new values: judge at least the last
        # _EFFECT_VALUES, which then include some old ones and shrink the effect.
        first = max(min(change, self._seen - _EFFECT_VALUES), self._seen - len(self._memory), 0)
        new = self._memory[np.arange(first, self._seen) % len(self._memory)]
        reference = self._judged = self._reference
        self._effect = quantile_effect(np.sort(reference), slow_variance(reference), new)
        self._renew(change)

    def _renew(self, change: int) -> None:
        """Start a segment at ``change``: its values so far become the reference."""
        self._segment_start = change
        self._sums = (0.0, 0.0, 0.0, 0.0)
        self._starts = (self._seen,) * 4
        self._model = None
        self._anchors = ()
        if self._seen - change >= self.warm_up:
            self._fit(change, self._seen)

    def _locate(self, start: int) -> int:
        """Where a mean change began: the split of the residuals that a step or a ramp
        explains best, searched from well before the CUSUM left zero up to now.

        The CUSUM's own start is late for a ramp (a slope change), whose first residuals
        are too small to move it.
        """
        seen = self._seen
        low = max(self._segment_start, seen - len(self._memory), 2 * start - seen - _LOCATE_MARGIN)
        if seen - low < 2:
            return start
        z = self._residuals[np.arange(low, seen) % len(self._residuals)]
        n = len(z)
        # Candidate split k: the change is at z[k:]; step gain (sum z[k:])^2 / (n - k),
        # ramp gain (sum (t - k + 1) z[t])^2 / sum (t - k + 1)^2 over t >= k.
        tail_sum = np.cumsum(z[::-1])[::-1]
        t = np.arange(n, dtype=np.float64)
        tail_tz = np.cumsum((t * z)[::-1])[::-1]
        lengths = n - t
        step = tail_sum**2 / lengths
        weighted = tail_tz - (t - 1.0) * tail_sum
        ramp_norm = lengths * (lengths + 1.0) * (2.0 * lengths + 1.0) / 6.0
        ramp = weighted**2 / ramp_norm
        best = int(np.argmax(np.maximum(step, ramp)))
        return low + best

    @property
    def detections(self) -> list[int]:
        """Positions in the last batch (``update``: a batch of one) that raised an alarm."""
        return list(self._detections)

    @property
    def cause(self) -> str | None:
        """What raised the last alarm: a CUSUM (mean_up, mean_down, spread_up, spread_down)
        or the slow check (slow_mean_up, slow_mean_down, slow_spread_up, slow_spread_down)."""
        return self._cause

    @property
    def change_lag(self) -> int:
        """How many values before the last alarm its change began (estimated)."""
        return self._change_lag

    @property
    def effect(self) -> float:
        """The last alarm's effect size, in reference quantiles (NaN before any alarm)."""
        return self._effect

    @property
    def material(self) -> bool:
        """Whether the last alarm's effect reached ``min_effect``."""
        return self._effect >= self.min_effect

    @property
    def n_detections(self) -> int:
        """Alarms so far."""
        return self._n_detections

    @property
    def n_skipped(self) -> int:
        """Inputs skipped as missing, non-numeric or not finite."""
        return self._n_skipped

    @property
    def statistic(self) -> float:
        """The largest CUSUM relative to its threshold (1 raises an alarm)."""
        if self._model is None:
            return 0.0
        return max(s / h for s, h in zip(self._sums, self._model.thresholds, strict=True))

    @property
    def judged_against(self) -> np.ndarray:
        """The reference values, in arrival order, that the last alarm was judged against
        (the reference renews at an alarm; empty before the first)."""
        return self._judged.copy()

    @property
    def n_reference(self) -> int:
        """How many values the reference holds (0 before the first reference is complete).

        Read per value where ``reference_location`` (a median) would cost more than the
        update itself."""
        return len(self._reference)

    @property
    def reference_location(self) -> float:
        """The reference values' median (NaN before the first reference is complete)."""
        if len(self._reference) == 0:
            return math.nan
        return float(np.median(self._reference))


class _Model(NamedTuple):
    """A reference's local model and the distribution of its residuals."""

    level: float
    slope: float
    phi: float
    # Median and robust scale of the residuals: they clip what predicts the next value.
    center: float
    scale: float
    # The reference residuals, sorted, and the normal score of each rank (index: the
    # number of residuals below plus the number at or below, so ties get mid-ranks).
    # Arrays, which the garbage collector does not track (a list it visits float by
    # float at every collection); the scores are ``_score_array``'s own, read-only.
    residuals: np.ndarray
    scores: np.ndarray
    score_mean: float
    # The scores' standard deviation widened for their lag-1 autocorrelation.
    long_run_sd: float
    # Mean and standard deviation of |score - score_mean|.
    spread_mean: float
    spread_sd: float
    # Alarm levels of the mean up, mean down, spread up and spread down CUSUMs.
    thresholds: tuple[float, float, float, float]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled without its scores: a restored model takes the cached table of its size,
        # shared by every model of that size, rather than a copy of 2 m + 1 floats each.
        at = self._fields.index("scores")
        return _restored_model, ((*self[:at], (), *self[at + 1 :]),)


def _restored_model(fields: tuple[Any, ...]) -> _Model:
    """A pickled ``_Model`` with its score table (see ``_Model.__reduce__``)."""
    model = _Model._make(fields)
    return model._replace(scores=_score_array(len(model.residuals)))


def _fit_model(
    values: np.ndarray,
    mean_threshold: float,
    alpha: float,
    spread_allowances: tuple[float, float],
) -> _Model | None:
    """The local model of a reference; None when it is not finite."""
    table = _score_array(len(values) - 1)
    level, slope, phi, center, scale, residuals, ranks, untied, rho = _fit_numbers(values, table)
    if untied:
        # Without ties the k-th smallest has mid-rank 2 k + 1 whatever the residuals: the
        # scores' in-control law, and the spread CUSUMs' levels, depend on m only.
        law = _untied_law(len(residuals), alpha, spread_allowances)
    else:
        law = _tied_law(np.sort(ranks).tobytes(), alpha, spread_allowances)
    if law is None:
        # All residuals tie: no change can be judged against a constant's ranks.
        return None
    score_mean, score_sd, spread_mean, spread_sd, spread_thresholds = law
    long_run_sd = score_sd * math.sqrt((1.0 + rho) / (1.0 - rho))
    numbers = (level, slope, phi, center, scale, score_mean, long_run_sd)
    if not all(map(math.isfinite, numbers)):
        return None
    return _Model(
        level=level,
        slope=slope,
        phi=phi,
        center=center,
        scale=scale,
        residuals=residuals,
        scores=table,
        score_mean=score_mean,
        long_run_sd=long_run_sd,
        spread_mean=spread_mean,
        spread_sd=spread_sd,
        thresholds=(mean_threshold, mean_threshold, *spread_thresholds),
    )


@compiled
def _fit_numbers(
    raw: np.ndarray, table: np.ndarray
) -> tuple[float, float, float, float, float, np.ndarray, np.ndarray, bool, float]:
    """The numbers of a reference's model (``_fit_model``), in one compiled pass of its
    few dozen array steps, each of which cost a microsecond or more of numpy's overhead
    on a reference of at most a few hundred values: the level (at index 0), the slope and
    the AR coefficient kept; the residuals' median and robust scale, the residuals
    sorted, the mid-rank of each (in arrival order, an index into ``table``, the normal
    scores of ``_score_array``), whether none tie, and the scores' lag-1 autocorrelation.

    Sums and dot products go value by value, so their last bits may differ from numpy's
    pairwise and BLAS sums; medians are exact, as are ranks, clipping and residuals given
    the model's numbers."""
    median = _median(raw)
    spread = _robust_scale(raw - median)
    # Outliers pulled in to the bounds before the fit, so that they do not bend it.
    values = np.minimum(
        np.maximum(raw, median - _WINSOR_SIGMAS * spread), median + _WINSOR_SIGMAS * spread
    )
    n = values.shape[0]
    t_centered = np.arange(n) - (n - 1) / 2.0
    level = _mean(values)
    t_squares = _dot(t_centered, t_centered)
    slope = _dot(t_centered, values - level) / t_squares
    detrended = values - level - slope * t_centered
    phi = _autocorrelation(detrended, _MAX_AUTOCORRELATION)
    inflation = math.sqrt((1.0 + phi) / (1.0 - phi))
    slope_error = _robust_scale(detrended) * inflation / math.sqrt(t_squares)
    if not abs(slope) > _TREND_T * slope_error:
        slope = 0.0
        detrended = values - level
        phi = _autocorrelation(detrended, _MAX_AUTOCORRELATION)
    # An insignificant AR coefficient only adds noise: a zero of a zero-inflated score
    # would rank by the value before it, which ties the scores of neighbours together.
    if not phi > _AR_Z / math.sqrt(n):
        phi = 0.0
    # Level at index 0 of the reference, so that predictions count from its start.
    level -= slope * (n - 1) / 2.0
    # Residuals of the raw values, as new values will have them: only what predicts the
    # next value is pulled in.
    in_order = raw[1:] - (values[1:] - detrended[1:]) - phi * detrended[:-1]
    order = np.argsort(in_order)
    residuals = in_order[order]
    m = residuals.shape[0]
    center = _sorted_median(residuals)
    scale = _robust_scale(residuals - center)
    untied = True
    for k in range(1, m):
        if not residuals[k] > residuals[k - 1]:
            untied = False
            break
    if untied:
        # The k-th smallest's mid-rank is 2 k + 1.
        ranks = np.empty(m, np.int64)
        ranks[order] = 2 * np.arange(m) + 1
    else:
        ranks = np.searchsorted(residuals, in_order, "left") + np.searchsorted(
            residuals, in_order, "right"
        )
    scores = np.empty(m)
    for k in range(m):
        scores[k] = table[ranks[k]]
    rho = _autocorrelation(scores, _MAX_RESIDUAL_AUTOCORRELATION)
    return level, slope, phi, center, scale, residuals, ranks, untied, rho


_Law = tuple[float, float, float, float, tuple[float, float]]


def _in_control_law(
    table: np.ndarray, ranks: np.ndarray, alpha: float, spread_allowances: tuple[float, float]
) -> _Law | None:
    """Mean and standard deviation of a new value's normal score, of its distance from
    that mean, and the spread CUSUMs' levels, for reference residuals of mid-``ranks``;
    None when the scores do not vary."""
    m = len(ranks)
    # A new value's rank is uniform over m + 1 places in control, the two ends included,
    # which no reference residual takes.
    in_control = np.concatenate([table[ranks], table[[0, 2 * m]]])
    score_mean = float(in_control.mean())
    score_sd = float(in_control.std())
    deviations = np.abs(in_control - score_mean)
    spread_mean = float(deviations.mean())
    spread_sd = float(deviations.std())
    if not min(score_sd, spread_sd) > 0.0:
        return None
    standardised = (deviations - spread_mean) / spread_sd
    up, down = spread_allowances
    thresholds = (
        _tilted_threshold(alpha, standardised - up) if math.isfinite(up) else math.inf,
        _tilted_threshold(alpha, -standardised - down) if math.isfinite(down) else math.inf,
    )
    return score_mean, score_sd, spread_mean, spread_sd, thresholds


@functools.lru_cache(maxsize=64)
def _untied_law(m: int, alpha: float, spread_allowances: tuple[float, float]) -> _Law | None:
    """``_in_control_law`` of ``m`` residuals without ties."""
    ranks = 2 * np.arange(m) + 1
    return _in_control_law(_score_array(m), ranks, alpha, spread_allowances)


@functools.lru_cache(maxsize=256)
def _tied_law(ranks: bytes, alpha: float, spread_allowances: tuple[float, float]) -> _Law | None:
    """``_in_control_law`` of residuals whose sorted mid-ranks are ``ranks`` (int64 bytes):
    a discrete or zero-inflated stream's references share few tie patterns."""
    sorted_ranks = np.frombuffer(ranks, dtype=np.int64)
    return _in_control_law(_score_array(len(sorted_ranks)), sorted_ranks, alpha, spread_allowances)


@functools.lru_cache(maxsize=1024)
def _score_array(size: int) -> np.ndarray:
    """The normal score of each mid-rank among ``size`` residuals (see ``_Model``), as a
    read-only array."""
    normal = NormalDist()
    table = np.array([normal.inv_cdf((k + 1) / (2 * (size + 1))) for k in range(2 * size + 1)])
    table.setflags(write=False)
    return table


@compiled
def _sorted_median(ordered: np.ndarray) -> float:
    """The median of sorted values."""
    half = ordered.shape[0] // 2
    if ordered.shape[0] % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2.0


@compiled
def _median(values: np.ndarray) -> float:
    """The median of unsorted values, through one partition of a copy."""
    n = values.shape[0]
    half = n // 2
    parted = np.partition(values, half)
    if n % 2:
        return parted[half]
    # The other middle value is the largest of those the partition put below.
    return (parted[:half].max() + parted[half]) / 2.0


@compiled
def _robust_scale(deviations: np.ndarray) -> float:
    """The MAD as a standard deviation; the mean absolute deviation when over half the
    values tie (discrete and zero-inflated streams), and a tiny positive scale when all do."""
    absolute = np.abs(deviations)
    mad = _median(absolute) * _MAD_TO_SIGMA
    if mad > 0.0:
        return mad
    scale = _mean(absolute) * math.sqrt(math.pi / 2.0)
    return scale if scale > 0.0 else 1e-12


@compiled
def _autocorrelation(values: np.ndarray, high: float) -> float:
    """The lag-1 autocorrelation, within [0, high]."""
    centred = values - _mean(values)
    denominator = _dot(centred, centred)
    if not denominator > 0.0:
        return 0.0
    found = _dot(centred[1:], centred[:-1]) / denominator
    # Python's ``min(high, max(0.0, found))``, NaN to 0.
    if not found > 0.0:
        return 0.0
    return found if found < high else high


@compiled
def _mean(values: np.ndarray) -> float:
    """The mean, summed value by value (``_fit_numbers``)."""
    total = 0.0
    for value in values:
        total += value
    return total / values.shape[0]


@compiled
def _dot(left: np.ndarray, right: np.ndarray) -> float:
    """The dot product, summed value by value (``_fit_numbers``)."""
    total = 0.0
    for k in range(left.shape[0]):
        total += left[k] * right[k]
    return total


@compiled
def _run(
    values: np.ndarray,
    k: int,
    memory: np.ndarray,
    residuals: np.ndarray,
    sums: np.ndarray,
    starts: np.ndarray,
    seen: int,
    since_fit: int,
    interval: int,
    previous: float,
    origin: int,
    ranks: np.ndarray,
    scores: np.ndarray,
    numbers: np.ndarray,
) -> tuple[int, int, int, int, float]:
    """``values[k:]`` through a fitted model and the four CUSUMs (``sums``, and in
    ``starts`` where each last left zero), one at a time, as far as an alarm or a refit
    that is due (``since_fit`` reaching ``interval``).

    ``numbers``: the model's level, slope, phi, center, scale, score mean, long-run sd,
    spread mean and spread sd, its four thresholds, then clip, allowance and the spread
    allowances up and down. Returns the position after the last value taken, what
    stopped (``_RAN_OUT``, an alarming CUSUM's index, ``_REFIT_DUE``), and ``seen``,
    ``since_fit`` and ``previous`` after it. The arithmetic is the same, in the same order,
    as the Python it replaced; ranks come from the same bisections as ``bisect``'s.
    """
    level, slope, phi, center, scale = numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]
    score_mean, long_run_sd, spread_mean, spread_sd = numbers[5], numbers[6], numbers[7], numbers[8]
    thresholds = numbers[9:13]
    clip, allowance, up, down = numbers[13], numbers[14], numbers[15], numbers[16]
    size = memory.size
    m = ranks.size
    while k < values.size:
        value = values[k]
        k += 1
        index = seen
        memory[index % size] = value
        residuals[index % size] = 0.0
        seen += 1
        # The model's prediction of the value; what predicts the next one takes the
        # value's residual clipped, so that an outlier does not carry over.
        trend = level + slope * (index - origin)
        expected = trend + phi * (previous - trend + slope)
        clipped = (value - expected - center) / scale
        clipped = clip if clipped > clip else -clip if clipped < -clip else clipped
        previous = expected + center + clipped * scale
        residual = value - expected
        # Its rank among the reference residuals (bisect_left plus bisect_right).
        low, high = 0, m
        while low < high:
            middle = (low + high) // 2
            if ranks[middle] < residual:
                low = middle + 1
            else:
                high = middle
        place = low
        low, high = 0, m
        while low < high:
            middle = (low + high) // 2
            if residual < ranks[middle]:
                high = middle
            else:
                low = middle + 1
        score = scores[place + low]
        z = (score - score_mean) / long_run_sd
        z = clip if z > clip else -clip if z < -clip else z
        deviation = score - score_mean
        spread = ((deviation if deviation >= 0.0 else -deviation) - spread_mean) / spread_sd
        # max(0.0, x) as Python's: x only when above 0.0.
        total = sums[0] + z - allowance
        sums[0] = total if total > 0.0 else 0.0
        total = sums[1] - z - allowance
        sums[1] = total if total > 0.0 else 0.0
        total = sums[2] + spread - up
        sums[2] = total if total > 0.0 else 0.0
        total = sums[3] - spread - down
        sums[3] = total if total > 0.0 else 0.0
        for i in range(4):
            if sums[i] == 0.0:
                starts[i] = seen
        for i in range(4):
            if sums[i] > thresholds[i]:
                return k, i, seen, since_fit, previous
        residuals[index % size] = z
        since_fit += 1
        if since_fit >= interval:
            return k, _REFIT_DUE, seen, since_fit, previous
    return k, _RAN_OUT, seen, since_fit, previous
