"""Accuracy before labels arrive, estimated from confidence, handing over to the measured one."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base

from detectors._batch import TupleEvents
from detectors._compiled import compiled
from detectors.drift._window import mean
from detectors.performance._inputs import fields, finite_float, is_real, label_pairs, unit_float
from detectors.performance._labelled import LabelCounts
from detectors.performance._window import Window, validate_size
from detectors.performance.drop import PerformanceDrop

# Class probabilities may sum to 1 within this, to allow for rounding on the wire.
_SUM_TOLERANCE = 1e-3


def _scored(p: Any) -> tuple[float, int, int] | None:
    """(confidence, predicted class, number of classes) from P(class 1) or every class's."""
    if type(p) is float:
        # Most inputs: ``unit_float``'s test without its calls (NaN fails it too).
        return (max(p, 1.0 - p), int(p >= 0.5), 2) if 0.0 <= p <= 1.0 else None
    binary = unit_float(p)
    if binary is not None:
        return max(binary, 1.0 - binary), int(binary >= 0.5), 2
    if isinstance(p, np.ndarray) and p.ndim != 1:  # len() of a 0-d array raises
        return None
    if not isinstance(p, tuple | list | np.ndarray) or len(p) < 2:
        return None
    probabilities = [unit_float(value) for value in p]
    if any(value is None for value in probabilities):
        return None
    valid = [value for value in probabilities if value is not None]
    if abs(sum(valid) - 1.0) > _SUM_TOLERANCE:
        return None
    predicted = max(range(len(valid)), key=valid.__getitem__)
    return valid[predicted], predicted, len(valid)


def _class_index(y_true: Any, n_classes: int) -> int | None:
    if type(y_true) is int:
        # Most labels: ``finite_float``'s float of an int is whole, or overflows (None),
        # and the bounds leave out the same ints either way.
        return y_true if 0 <= y_true < n_classes else None
    number = finite_float(y_true)
    if number is None or number != int(number) or not 0 <= number < n_classes:
        return None
    return int(number)


# ``EstimatedAccuracy.update_many``'s inputs as columns: each drop alarm's losses at their
# positions (NaN, ignored, elsewhere), the positions of the valid predictions and labels,
# and their window rows (confidence; confidence and correct).
_Parsed = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[int], list[int], Any, Any]


def _parse_many(values: Sequence[Any]) -> _Parsed:
    """What ``update`` reads of each input, one at a time."""
    estimated = np.full(len(values), math.nan)
    measured = np.full(len(values), math.nan)
    predictions: list[int] = []
    labels: list[int] = []
    confidences: list[float] = []
    labelled: list[tuple[float, float]] = []
    for i, x in enumerate(values):
        pair = fields(x, 2)
        scored = _scored(pair[1]) if pair else None
        if pair is None or scored is None:
            continue
        confidence, predicted, n_classes = scored
        if pair[0] is None:
            predictions.append(i)
            confidences.append(confidence)
            estimated[i] = 1.0 - confidence
            continue
        y_true = _class_index(pair[0], n_classes)
        if y_true is not None:
            correct = float(predicted == y_true)
            labels.append(i)
            labelled.append((confidence, correct))
            measured[i] = 1.0 - correct
    return (
        estimated,
        measured,
        predictions,
        labels,
        np.array(confidences).reshape(-1, 1),
        np.array(labelled).reshape(-1, 2),
    )


def _binary_many(values: Sequence[Any]) -> _Parsed | None:
    """``_parse_many`` over the columns, when every input is a pair of None or an int and
    a float P(class 1), as a binary classifier's are (the label join's); else None. A
    pair that ``update`` ignores (a probability outside [0, 1] or NaN, a label not 0 or
    1) is ignored here."""
    pairs = label_pairs(values)
    if pairs is None:
        return None
    estimated, measured, predictions, labels, confidences, labelled = _binary_columns(*pairs)
    return (
        estimated,
        measured,
        predictions.tolist(),
        labels.tolist(),
        confidences,
        labelled,
    )


@compiled
def _binary_columns(
    y: npt.NDArray[np.int64], is_label: npt.NDArray[np.bool_], p: npt.NDArray[np.float64]
) -> tuple[Any, ...]:
    """``_parse_many``'s columns of binary pairs (``label_pairs``' columns) in one pass:
    a dozen numpy passes cost more than the loop at the label join's few dozen pairs.
    The same float operations as ``update``'s (``max`` of two numbers that are not NaN,
    ``1.0 -`` it)."""
    n = p.shape[0]
    estimated = np.full(n, math.nan)
    measured = np.full(n, math.nan)
    predictions = np.empty(n, np.int64)
    labels = np.empty(n, np.int64)
    confidences = np.empty((n, 1))
    labelled = np.empty((n, 2))
    predicted = taken = 0
    for k in range(n):
        score = p[k]
        if not (score >= 0.0 and score <= 1.0):
            continue
        confidence = max(score, 1.0 - score)
        if not is_label[k]:
            predictions[predicted] = k
            confidences[predicted, 0] = confidence
            predicted += 1
            estimated[k] = 1.0 - confidence
        elif y[k] == 0 or y[k] == 1:
            correct = 1.0 if (score >= 0.5) == (y[k] == 1) else 0.0
            labels[taken] = k
            labelled[taken, 0] = confidence
            labelled[taken, 1] = correct
            taken += 1
            measured[k] = 1.0 - correct
    return (
        estimated,
        measured,
        predictions[:predicted],
        labels[:taken],
        confidences[:predicted],
        labelled[:taken],
    )


class EstimatedAccuracy(TupleEvents, LabelCounts, base.Base):
    """A classifier's accuracy: estimated from its probabilities, then measured.

    In the spirit of NannyML's confidence-based performance estimation (CBPE): if the
    predicted probabilities are calibrated, a prediction is right with the probability of
    the class it predicts (``max(p, 1 - p)`` for a binary ``p``), so the mean of that
    confidence over recent predictions is the expected accuracy, available long before the
    labels. As labels come in, the detector checks that calibration on the labelled window
    (observed minus expected accuracy, and the expected calibration error over confidence
    bins), and once the window holds ``min_labels`` labels it reports the measured
    accuracy instead. ``source`` says which of the two ``accuracy`` is.

    Feed each prediction twice: ``update((None, p))`` when it is made, and
    ``update((y_true, p))`` when its label arrives. ``p`` is either the probability of
    class 1 of a binary classifier (``y_true`` 0 or 1), or the sequence of every class's
    probability, summing to 1 (``y_true`` the index of the true class). Anything else is
    ignored and counted in ``n_ignored``.

    ``drift_detected`` says that performance dropped: either the estimated error
    ``1 - max(p, 1 - p)`` of new predictions rose (the model grew unsure, before any label
    says so) or the measured error rate rose. Each is a ``PerformanceDrop`` at
    ``alpha / 2``; ``alarm_source`` says which fired. ``update_many(values)`` is
    ``update`` over a batch; ``alarms`` says where in it an alarm fired, and what it read.

    Parameters
    ----------
    window
        How many recent predictions the estimate covers, and how many recent labels the
        measured accuracy and the calibration checks cover.
    min_labels
        How many labels the window needs before ``accuracy`` is the measured value and
        before ``calibrated`` is known.
    n_bins
        Equal-width confidence bins over [0.5, 1] for the expected calibration error;
        lower confidences (possible with three classes or more) share the first bin.
    max_calibration_error
        The largest expected calibration error for which ``calibrated`` is True.
    alpha, tolerance, reference_size
        The drop alarms' settings, as in ``PerformanceDrop``; the baselines are learned
        from the first ``reference_size`` predictions and labels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(4)
    >>> estimate = EstimatedAccuracy(window=1000, min_labels=200)
    >>> p = rng.beta(0.5, 0.5, size=3000)
    >>> y = (rng.random(3000) < p).astype(int)  # calibrated: P(y = 1) = p
    >>> for p_i in p:
    ...     estimate.update((None, float(p_i)))
    >>> estimate.source, round(estimate.accuracy, 3)
    ('estimated', 0.816)
    >>> for y_i, p_i in zip(y[:500], p[:500]):
    ...     estimate.update((int(y_i), float(p_i)))
    >>> estimate.source, round(estimate.accuracy, 3), estimate.calibrated
    ('measured', 0.792, True)
    """

    # The windows and drop detectors in slots, the counts in the attribute dict, which the
    # garbage collector then stops tracking (``detectors._batch.attribute_state``).
    __slots__ = ("_confidences", "_estimated_drop", "_labelled", "_measured_drop")

    def __init__(
        self,
        window: int = 2000,
        min_labels: int = 200,
        n_bins: int = 10,
        max_calibration_error: float = 0.05,
        alpha: float = 1e-4,
        tolerance: float = 0.02,
        reference_size: int = 1000,
    ) -> None:
        validate_size("window", window)
        if not isinstance(min_labels, int) or not 1 <= min_labels <= window:
            raise ValueError(f"min_labels must be an integer in [1, window], got {min_labels!r}")
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        if not (is_real(max_calibration_error) and 0.0 < max_calibration_error < 1.0):
            raise ValueError(
                f"max_calibration_error must be in (0, 1), got {max_calibration_error!r}"
            )
        # Validates alpha, tolerance and reference_size, naming them.
        PerformanceDrop(alpha=alpha, tolerance=tolerance, reference_size=reference_size)
        self.window = window
        self.min_labels = min_labels
        self.n_bins = n_bins
        self.max_calibration_error = max_calibration_error
        self.alpha = alpha
        self.tolerance = tolerance
        self.reference_size = reference_size
        self._reset()

    def _reset(self) -> None:
        self._batch_events = ()
        self._confidences = Window(self.window, 1)
        self._labelled = Window(self.window, 2)  # columns: confidence, correct
        drop = PerformanceDrop(
            alpha=self.alpha / 2, tolerance=self.tolerance, reference_size=self.reference_size
        )
        self._estimated_drop = drop.fresh()
        self._measured_drop = drop.fresh()
        self._n_predictions = 0
        self._n_labels = 0
        self._n_ignored = 0

    def update(self, x: Any) -> None:
        """Absorb ``(None, p)`` for a new prediction or ``(y_true, p)`` for a label."""
        pair = fields(x, 2)
        scored = _scored(pair[1]) if pair else None
        # Either alarm is about the last update only.
        if self._batch_events:
            self._batch_events = ()
        self._estimated_drop.update(math.nan)
        self._measured_drop.update(math.nan)
        if pair is None or scored is None:
            self._n_ignored += 1
            return
        confidence, predicted, n_classes = scored
        if pair[0] is None:
            self._confidences.push(confidence)
            self._n_predictions += 1
            self._estimated_drop.update(1.0 - confidence)
            if self._estimated_drop.drift_detected:
                self._batch_events = ((0, "estimated", self.accuracy),)
            return
        y_true = _class_index(pair[0], n_classes)
        if y_true is None:
            self._n_ignored += 1
            return
        correct = float(predicted == y_true)
        self._labelled.push(confidence, correct)
        self._n_labels += 1
        self._measured_drop.update(1.0 - correct)
        if self._measured_drop.drift_detected:
            self._batch_events = ((0, "measured", self.accuracy),)

    def update_many(self, values: Sequence[Any]) -> None:
        """Absorb a batch of ``update`` inputs: the same state as ``update`` one by one."""
        if self._small(len(values)):
            self._update_each(values)
            return
        parsed = _binary_many(values)
        if parsed is None:
            parsed = _parse_many(values)
        estimated, measured, predictions, labels, confidence_rows, labelled_rows = parsed
        self._n_ignored += len(values) - len(predictions) - len(labels)
        self._estimated_drop.update_many(estimated)
        self._measured_drop.update_many(measured)
        alarms = sorted(
            [(int(i), "estimated") for i in self._estimated_drop.detections]
            + [(int(i), "measured") for i in self._measured_drop.detections]
        )
        pushed = [0, 0]

        def push(predicted: int, labelled: int) -> None:
            self._confidences.push_many(confidence_rows[pushed[0] : predicted])
            self._labelled.push_many(labelled_rows[pushed[1] : labelled])
            self._n_predictions += predicted - pushed[0]
            self._n_labels += labelled - pushed[1]
            pushed[:] = predicted, labelled

        self._batch_events = ()
        # The windows fill up to each alarm, where the alarm reads the accuracy.
        for position, source in alarms:
            push(bisect_right(predictions, position), bisect_right(labels, position))
            self._add_event((position, source, self.accuracy))
        push(len(predictions), len(labels))

    @property
    def alarms(self) -> list[tuple[int, str, float]]:
        """Each alarm of the last batch: its position, its ``alarm_source`` and
        ``accuracy`` just after it."""
        return list(self._batch_events)

    @property
    def expected_accuracy(self) -> float:
        """Mean confidence ``max(p, 1 - p)`` of the recent predictions (NaN before any)."""
        if not len(self._confidences):
            return math.nan
        return mean(self._confidences.column(0))

    @property
    def observed_accuracy(self) -> float:
        """Share of correct predictions among the recent labels (NaN before any)."""
        if not len(self._labelled):
            return math.nan
        return mean(self._labelled.column(1))

    @property
    def source(self) -> str:
        """``"measured"`` once the label window holds ``min_labels``, else ``"estimated"``."""
        return "measured" if len(self._labelled) >= self.min_labels else "estimated"

    @property
    def accuracy(self) -> float:
        """The measured accuracy when ``source`` is measured, else the expected one."""
        return self.observed_accuracy if self.source == "measured" else self.expected_accuracy

    @property
    def calibration_gap(self) -> float:
        """Observed minus expected accuracy over the labelled window: < 0 is overconfident."""
        if not len(self._labelled):
            return math.nan
        return mean(self._labelled.column(1)) - mean(self._labelled.column(0))

    @property
    def calibration_error(self) -> float:
        """Expected calibration error (ECE) over the labelled window (NaN before any)."""
        n = len(self._labelled)
        if not n:
            return math.nan
        confidence, correct = self._labelled.column(0), self._labelled.column(1)
        bins = np.clip(((confidence - 0.5) * 2 * self.n_bins).astype(int), 0, self.n_bins - 1)
        gaps = np.bincount(bins, weights=correct - confidence, minlength=self.n_bins)
        return float(np.sum(np.abs(gaps)) / n)

    @property
    def calibrated(self) -> bool | None:
        """Whether the ECE is within ``max_calibration_error``; None until ``min_labels``."""
        if len(self._labelled) < self.min_labels:
            return None
        return self.calibration_error <= self.max_calibration_error

    @property
    def n_predictions(self) -> int:
        """How many predictions were absorbed in all."""
        return self._n_predictions

    @property
    def drift_detected(self) -> bool:
        """Performance dropped, estimated or measured, at the last update."""
        return self.alarm_source is not None

    @property
    def alarm_source(self) -> str | None:
        """``"estimated"`` or ``"measured"`` for the alarm at the last update, else None."""
        if self._measured_drop.drift_detected:
            return "measured"
        if self._estimated_drop.drift_detected:
            return "estimated"
        return None
