"""Classification performance before labels arrive, from isotonically calibrated scores (CBPE)."""

from __future__ import annotations

import bisect
import functools
import math
from typing import Any

import numpy as np
from river import base

from detectors import _batch
from detectors._compiled import compiled
from detectors.drift._window import finite_floats
from detectors.performance._inputs import binary_label, fields, is_real, unit_float
from detectors.performance._labelled import LabelCounts
from detectors.performance._window import Window, auc_of, ranked_counts, validate_size

# The metrics estimated per chunk and measured on labels, in the order of the state arrays.
METRICS = ("accuracy", "precision", "recall", "f1", "auc")

_NO_DETECTIONS = np.zeros(0, dtype=np.int64)
_ONE_DETECTION = np.zeros(1, dtype=np.int64)

# Label codes inside a batch: NaN marks a prediction without label, this an invalid label.
_INVALID_LABEL = -1.0

# The calibration counts labels in bins of equal steps of the score's logit, one edge at
# the model's threshold so that a bin's predictions are all of one class; the two outer
# bins take the scores beyond the span. Fine enough that the isotonic fit on the bins is
# the fit on their labels (P(y | score) barely moves within a step: in the benchmark,
# steps from 0.025 to 0.2 estimate alike), few enough that the counts stay small:
# 2 generations x 3 counts x 2 * _BIN_SPAN / _BIN_STEP bins, 11.5 KB.
_BIN_STEP = 0.1
_BIN_SPAN = 12.0
# How many standard errors the recent labels may stray from the calibration, right
# predictions counted against wrong ones, before it restarts from them: P(y | score)
# changed and the older labels mislead. Far beyond the noise of a stationary model.
_RESTART_Z = 5.0


@functools.lru_cache(maxsize=64)
def bin_edges(threshold: float) -> np.ndarray:
    """The inner edges of the calibration bins of a model with this threshold (read-only).

    Bin ``i`` holds the scores ``s`` with ``edges[i - 1] <= s < edges[i]``, i.e.
    ``np.searchsorted(edges, s, side="right")``; the threshold is an edge, so the bins
    from ``len(edges) // 2 + 1`` on are predicted class 1.

    Examples
    --------
    >>> edges = bin_edges(0.5)
    >>> len(edges), float(edges[len(edges) // 2]), int(np.searchsorted(edges, 0.5, "right"))
    (239, 0.5, 120)
    """
    half = round(_BIN_SPAN / _BIN_STEP)
    logits = math.log(threshold / (1.0 - threshold)) + _BIN_STEP * np.arange(1 - half, half)
    edges = 1.0 / (1.0 + np.exp(-logits))
    edges[half - 1] = threshold
    edges.flags.writeable = False
    return edges


@functools.lru_cache(maxsize=64)
def _edge_list(threshold: float) -> list[float]:
    # A label at a time, ``bisect`` on floats is ``searchsorted`` without numpy's per-call
    # overhead, and compares the same numbers.
    return bin_edges(threshold).tolist()


def isotonic_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of ``labels`` on ``scores`` (pool adjacent violators).

    Returns the distinct scores in increasing order and the fitted P(y = 1) at each, for
    ``np.interp`` (which clips beyond the ends, as scikit-learn's ``out_of_bounds="clip"``).

    Examples
    --------
    >>> xs, fitted = isotonic_fit(np.array([0.1, 0.2, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 0, 1]))
    >>> xs.tolist(), fitted.round(3).tolist()
    ([0.1, 0.2, 0.3, 0.4], [0.0, 0.333, 0.333, 1.0])
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    distinct, starts = np.unique(ordered, return_index=True)
    weights = np.diff(np.append(starts, len(ordered)))
    sums = np.add.reduceat(labels[order], starts)
    return distinct, pooled_fit(sums, weights)


def pooled_fit(sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Non-decreasing weighted least-squares fit of the means ``sums / weights``.

    Pool adjacent violators over groups in increasing order of score, group ``i`` holding
    ``weights[i]`` labels (all positive) that sum to ``sums[i]``: the fitted P(y = 1) of
    each group.

    Examples
    --------
    >>> pooled_fit(np.array([0.0, 2.0, 0.0, 1.0]), np.array([1.0, 3.0, 1.0, 1.0])).tolist()
    [0.0, 0.5, 0.5, 1.0]
    """
    # Blocks of pooled groups: label sum, weight, and how many groups.
    block_sums: list[float] = []
    block_weights: list[float] = []
    block_sizes: list[int] = []
    for total, weight in zip(sums.tolist(), weights.tolist(), strict=True):
        size = 1
        while block_sums and block_sums[-1] * weight >= total * block_weights[-1]:
            total += block_sums.pop()
            weight += block_weights.pop()
            size += block_sizes.pop()
        block_sums.append(total)
        block_weights.append(weight)
        block_sizes.append(size)
    means = np.array(block_sums) / np.array(block_weights)
    return np.repeat(means, block_sizes)


def expected_metrics(scores: np.ndarray, probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Accuracy, precision, recall, F1 and ROC AUC expected when P(y_i = 1) = probabilities[i].

    The confusion matrix is the expected one at ``scores >= threshold``; the AUC is the
    expected number of correctly ordered (positive, negative) pairs over the expected number
    of such pairs, ranking by ``scores`` with ties counted half: the ROC curve that CBPE
    draws from calibrated probabilities, without the ties calibration would add. NaN where
    a denominator is 0.
    """
    predicted = scores >= threshold
    true_positive = float(np.sum(probabilities[predicted]))
    false_positive = float(np.sum(1.0 - probabilities[predicted]))
    false_negative = float(np.sum(probabilities[~predicted]))
    true_negative = float(np.sum(1.0 - probabilities[~predicted]))
    return _confusion_metrics(
        true_positive,
        false_positive,
        false_negative,
        true_negative,
        _soft_auc(scores, probabilities),
    )


def measured_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Accuracy, precision, recall, F1 and ROC AUC of labelled scores (NaN where undefined)."""
    # The four cells from three counts: each an exact count, whatever way it is made.
    true_positive, predicted_positive, positive, twice = ranked_counts(labels, scores, threshold)
    return _confusion_metrics(
        float(true_positive),
        float(predicted_positive - true_positive),
        float(positive - true_positive),
        float(len(labels) - predicted_positive - positive + true_positive),
        auc_of(len(labels), positive, twice),
    )


def _confusion_metrics(tp: float, fp: float, fn: float, tn: float, auc: float) -> np.ndarray:
    return np.array(
        [
            _ratio(tp + tn, tp + fp + fn + tn),
            _ratio(tp, tp + fp),
            _ratio(tp, tp + fn),
            _ratio(2.0 * tp, 2.0 * tp + fp + fn),
            auc,
        ]
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _soft_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    _, starts = np.unique(scores[order], return_index=True)
    positive = np.add.reduceat(probabilities[order], starts)
    negative = np.add.reduceat(1.0 - probabilities[order], starts)
    negatives_below = np.cumsum(negative) - negative
    # A prediction is never paired with itself: remove each one's own (tied) pair.
    own = float(np.sum(probabilities * (1.0 - probabilities)))
    ordered_pairs = float(np.sum(positive * (negatives_below + 0.5 * negative))) - 0.5 * own
    pairs = float(np.sum(positive)) * float(np.sum(negative)) - own
    return _ratio(ordered_pairs, pairs)


def _label_codes(labels: Any, n: int) -> np.ndarray:
    """Labels as 0.0 or 1.0, NaN for a prediction (NaN or None), ``_INVALID_LABEL`` else."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "fiub":
        values = labels.astype(np.float64)
        codes = np.where((values == 0.0) | (values == 1.0), values, _INVALID_LABEL)
        codes[np.isnan(values)] = math.nan
    elif isinstance(labels, list) and len(labels) == n == labels.count(None):
        # Predictions only: most batches before labels come.
        codes = np.full(n, math.nan)
    else:
        # Most labels are None (a prediction) or the int 0 or 1: their codes inline.
        codes = np.array(
            [
                math.nan
                if y is None
                else float(y)
                if type(y) is int and 0 <= y <= 1
                else _label_code(y)
                for y in labels
            ],
            np.float64,
        )
    if len(codes) != n:
        raise ValueError(f"labels must be as many as scores, got {len(codes)} for {n}")
    return codes


# ``_absorb``'s state: the chunk's and the generation's fill, the recent labels' next row
# and fill, the counts of predictions, labels and ignored inputs.
_CHUNK, _GENERATION, _NEXT, _FILLED, _PREDICTIONS, _LABELS, _IGNORED = range(7)


@compiled
def _absorb(
    scores: np.ndarray,
    codes: np.ndarray,
    start: int,
    state: np.ndarray,
    chunk: np.ndarray,
    counts: np.ndarray,
    edges: np.ndarray,
    recent: np.ndarray,
    calibration_size: int,
) -> int:
    """``update`` of each ``(codes[k], scores[k])`` from ``start`` on (``codes`` as
    ``_label_codes`` gives them), into the estimate's arrays and ``state``, up to the
    first prediction that fills the chunk: its position (-1: none), for the Python to
    close the chunk (``_close_chunk``). A label's push into the recent labels, its
    counts (``_count_label``, ``np.searchsorted`` for ``bisect``) and a new generation
    are the same operations in the same order as ``update``'s."""
    chunk_size, size = chunk.shape[0], recent.shape[0]
    bins, half = edges.shape[0] + 1, counts.shape[0] // 2
    for k in range(start, scores.shape[0]):
        score, code = scores[k], codes[k]
        if not (score >= 0.0 and score <= 1.0) or code == _INVALID_LABEL:
            state[_IGNORED] += 1
        elif np.isnan(code):
            chunk[state[_CHUNK]] = score
            state[_CHUNK] += 1
            state[_PREDICTIONS] += 1
            if state[_CHUNK] == chunk_size:
                return k
        else:
            row = state[_NEXT]
            recent[row, 0] = score
            recent[row, 1] = code
            state[_NEXT] = (row + 1) % size
            state[_FILLED] = min(state[_FILLED] + 1, size)
            at = np.searchsorted(edges, score, side="right")
            counts[at] += 1.0
            counts[bins + at] += code
            counts[2 * bins + at] += score
            state[_LABELS] += 1
            state[_GENERATION] += 1
            if state[_GENERATION] == calibration_size:
                counts[half:] = counts[:half]
                counts[:half] = 0.0
                state[_GENERATION] = 0
    return -1


def _is_nan(y: Any) -> bool:
    return isinstance(y, float) and math.isnan(y)


def _label_code(y: Any) -> float:
    if y is None:
        return math.nan
    if type(y) is int:
        # Most labels: ``binary_label``'s test without its calls.
        return float(y) if y == 0 or y == 1 else _INVALID_LABEL
    if y is None or _is_nan(y):
        return math.nan
    label = binary_label(y)
    return _INVALID_LABEL if label is None else float(label)


class CalibratedEstimate(LabelCounts, base.Base):
    """A binary classifier's performance estimated before labels, and measured after.

    Confidence-based performance estimation (CBPE, as in NannyML) with a calibration that
    follows the labels. Labels are counted in fine bins of the score (equal steps of its
    logit; labels, positives and the sum of scores per bin) over the last
    ``calibration_size`` to ``2 * calibration_size`` labels, in two generations of counts:
    many labels inform the calibration at a small, fixed memory. The bins calibrate the
    scores by isotonic regression (pool adjacent violators, interpolated linearly between
    the bins' mean scores). Each chunk of ``chunk_size`` predictions, when it completes,
    is estimated from its calibrated
    probabilities ``q``: the expected confusion matrix at the model's own ``threshold``
    (``score >= threshold`` predicts class 1) gives accuracy, precision, recall and F1,
    and the expected ROC AUC ranks the chunk's scores with ``q`` as the chance of each to
    be positive. Raw, uncalibrated scores are never taken at their word, so an under- or
    over-confident model is estimated as well as a calibrated one; a covariate shift (the
    scores move, P(y | score) does not) shows in the estimate before any label.

    The ``estimated_*`` properties describe the last completed chunk; the ``measured_*``
    properties the last ``chunk_size`` labels. Both stay readable side by side: labels
    cover older predictions than the chunk, and the estimate never turns into the measured
    value. A change of P(y | score) itself (concept change) is invisible to any estimate
    without labels; it shows in the measured values and in ``calibration_gap``, then in
    the estimate: when the last ``chunk_size`` labels stray from the calibration by more
    than five standard errors at a chunk's end, the calibration restarts from them
    (``n_restarts``) before that chunk is estimated.

    Feed each prediction when it is made, ``update((None, score))``, and again with its
    label once that arrives, ``update((label, score))``: ``score`` the probability of class
    1 in [0, 1], ``label`` 0 or 1 (or a bool). Anything else is counted in ``n_ignored``.
    ``update_many(scores, labels)`` is the batch form (see there).

    ``drift_detected`` is True at the update that completes a chunk whose estimated
    accuracy is more than ``tolerance`` below ``reference_accuracy``, the accuracy measured
    on the calibration labels: the model is expected to do worse on its new inputs than
    on those its labels came from.

    Parameters
    ----------
    threshold
        The model's decision threshold in (0, 1): ``score >= threshold`` predicts class 1.
    chunk_size
        Predictions per estimated chunk, and labels in the measured window.
    calibration_size
        Labels per generation of the calibration's counts: the calibration uses the last
        ``calibration_size`` to ``2 * calibration_size`` labels. The memory does not grow
        with it.
    min_labels
        How many labelled pairs a chunk's estimate needs; before, it is NaN.
    tolerance
        How far the estimated accuracy of a chunk may fall below the reference accuracy
        before ``drift_detected``.

    Examples
    --------
    An under-confident model: its score is 0.65 where the truth is 0.77.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> truth = 1 / (1 + np.exp(-rng.normal(-1.0, 2.0, 12_000)))
    >>> scores = 1 / (1 + np.exp(-0.5 * np.log(truth / (1 - truth))))
    >>> labels = (rng.random(12_000) < truth).astype(int)
    >>> estimate = CalibratedEstimate(chunk_size=2000, calibration_size=10_000)
    >>> estimate.update_many(scores[:10_000], labels[:10_000])  # labelled reference
    >>> estimate.update_many(scores[10_000:])  # a chunk of new predictions, no labels yet
    >>> round(estimate.estimated_accuracy, 3), round(estimate.estimated_auc, 3)
    (0.8, 0.867)
    >>> estimate.update_many(scores[10_000:], labels[10_000:])  # their labels arrive
    >>> round(estimate.measured_accuracy, 3), round(estimate.measured_auc, 3)
    (0.791, 0.862)

    The scores' own confidence, which ``EstimatedAccuracy`` takes for accuracy:

    >>> round(float(np.mean(np.maximum(scores[10_000:], 1 - scores[10_000:]))), 3)
    0.693
    """

    # The window of recent labels in a slot, the counts in the attribute dict, which the
    # garbage collector then stops tracking (``detectors._batch.attribute_state``).
    __slots__ = ("_recent",)

    def __init__(
        self,
        threshold: float = 0.5,
        chunk_size: int = 1000,
        calibration_size: int = 50_000,
        min_labels: int = 500,
        tolerance: float = 0.02,
    ) -> None:
        if not (is_real(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        validate_size("chunk_size", chunk_size)
        validate_size("calibration_size", calibration_size)
        if not isinstance(min_labels, int) or not 1 <= min_labels <= calibration_size:
            raise ValueError(
                f"min_labels must be an integer in [1, calibration_size], got {min_labels!r}"
            )
        if not (is_real(tolerance) and 0.0 < tolerance < 1.0):
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
        self.threshold = threshold
        self.chunk_size = chunk_size
        self.calibration_size = calibration_size
        self.min_labels = min_labels
        self.tolerance = tolerance
        self._reset()

    def _reset(self) -> None:
        self._chunk = np.zeros(self.chunk_size)  # the scores of the chunk being filled
        self._chunk_filled = 0
        # Per generation (current, previous), per bin: labels, positives, sum of scores;
        # flat, so that a label at a time costs three scalar adds (``_grid`` shapes it).
        self._counts = np.zeros(6 * (len(bin_edges(self.threshold)) + 1))
        self._generation_filled = 0  # labels in the current generation
        self._recent = Window(self.chunk_size, 2)  # the last chunk_size labels: score, label
        self._n_restarts = 0
        self._estimated = np.full(len(METRICS), math.nan)
        self._reference_accuracy = math.nan
        self._calibration_gap = math.nan
        self._detections = _NO_DETECTIONS
        self._n_predictions = 0
        self._n_labels = 0
        self._n_ignored = 0
        self._n_chunks = 0

    def __getstate__(self) -> dict[str, Any]:
        # Bins no label reached hold zeros: only the span from the first reached to the
        # last pickles (none before the first label).
        state = _batch.attribute_state(self)
        grid = self._grid()
        reached = np.flatnonzero(grid[:, 0].any(axis=0))
        low, high = (int(reached[0]), int(reached[-1]) + 1) if len(reached) else (0, 0)
        state["_counts"] = (low, grid[:, :, low:high])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        low, reached = state["_counts"]
        counts = np.zeros((2, 3, len(bin_edges(state["threshold"])) + 1))
        counts[:, :, low : low + reached.shape[2]] = reached
        _batch.set_attribute_state(self, {**state, "_counts": counts.reshape(-1)})  # order kept

    def _grid(self) -> np.ndarray:
        """The counts as generation x (labels, positives, score sum) x bin (a view)."""
        return self._counts.reshape(2, 3, -1)

    def update(self, x: Any) -> None:
        """Absorb ``(None, score)`` for a new prediction or ``(label, score)`` for a label."""
        pair = fields(x, 2)
        score = unit_float(pair[1]) if pair else None
        label = None if pair is None or pair[0] is None else binary_label(pair[0])
        self._detections = _NO_DETECTIONS
        if pair is None or score is None or (pair[0] is not None and label is None):
            self._n_ignored += 1
        elif label is not None:
            self._recent.push(score, label)
            self._count_label(score, label)
            self._n_labels += 1
        else:
            self._chunk[self._chunk_filled] = score
            self._chunk_filled += 1
            self._n_predictions += 1
            if self._chunk_filled == self.chunk_size and self._close_chunk():
                self._detections = _ONE_DETECTION

    def update_many(self, scores: Any, labels: Any = None) -> None:
        """Absorb a batch, exactly as ``update`` would one by one.

        ``labels`` None: every score is a new prediction, ``update((None, score))``. Else a
        sequence as long as ``scores``, item ``i`` the label of ``scores[i]`` or NaN (or
        None) where ``scores[i]`` is a new prediction: ``update((labels[i], scores[i]))``,
        except that NaN stands for None. ``detections`` lists the positions in the batch
        where ``drift_detected`` would have been True.
        """
        if len(scores) <= _batch.SMALL_BATCH:
            self._update_each(scores, [None] * len(scores) if labels is None else labels)
            return
        values = finite_floats(scores)
        codes = (
            np.full(len(values), math.nan) if labels is None else _label_codes(labels, len(values))
        )
        detections = []
        edges, recent = bin_edges(self.threshold), self._recent
        start = 0
        while True:
            # The counts and positions the compiled loop moves, read and written.
            state = np.array(
                [
                    self._chunk_filled,
                    self._generation_filled,
                    *recent.cursor,
                    self._n_predictions,
                    self._n_labels,
                    self._n_ignored,
                ],
                np.int64,
            )
            closed = _absorb(
                values, codes, start, state, self._chunk, self._counts, edges, recent.rows,
                self.calibration_size,
            )  # fmt: skip
            self._chunk_filled, self._generation_filled, at, filled, *counted = state.tolist()
            recent.cursor = at, filled
            self._n_predictions, self._n_labels, self._n_ignored = counted
            if closed < 0:
                break
            if self._close_chunk():
                detections.append(closed)
            start = closed + 1
        self._detections = np.array(detections, dtype=np.int64)

    def _update_each(self, scores: Any, labels: Any) -> None:
        """A small batch through ``update`` (see ``detectors._batch``)."""
        if len(labels) != len(scores):
            raise ValueError(
                f"labels must be as many as scores, got {len(labels)} for {len(scores)}"
            )
        # As ``_label_codes`` reads a numeric array: its items as Python numbers.
        labels = labels.tolist() if isinstance(labels, np.ndarray) else labels
        detections = []
        for i, (score, label) in enumerate(zip(scores, labels, strict=True)):
            self.update((None if _is_nan(label) else label, score))
            if len(self._detections):
                detections.append(i)
        self._detections = np.array(detections, dtype=np.int64) if detections else _NO_DETECTIONS

    def _count_label(self, score: float, label: int) -> None:
        """``_count_labels`` of one label, without the arrays."""
        at = bisect.bisect_right(_edge_list(self.threshold), score)
        counts, bins = self._counts, len(self._counts) // 6
        counts[at] += 1.0
        counts[bins + at] += label
        counts[2 * bins + at] += score
        self._generation_filled += 1
        if self._generation_filled == self.calibration_size:
            self._next_generation()

    def _count_labels(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Count labelled scores in order, a new generation after each ``calibration_size``."""
        bins = np.searchsorted(bin_edges(self.threshold), scores, side="right")
        start = 0
        while start < len(labels):
            end = min(len(labels), start + self.calibration_size - self._generation_filled)
            current = self._grid()[0]
            # ``add.at`` adds in order, one at a time: the sums ``_count_label`` makes.
            np.add.at(current[0], bins[start:end], 1.0)
            np.add.at(current[1], bins[start:end], labels[start:end])
            np.add.at(current[2], bins[start:end], scores[start:end])
            self._generation_filled += end - start
            if self._generation_filled == self.calibration_size:
                self._next_generation()
            start = end

    def _next_generation(self) -> None:
        half = len(self._counts) // 2
        self._counts[half:] = self._counts[:half]
        self._counts[:half] = 0.0
        self._generation_filled = 0

    def _close_chunk(self) -> bool:
        """Estimate the full chunk and start the next; whether its estimate alarms."""
        self._chunk_filled = 0
        self._n_chunks += 1
        counts = self._grid().sum(axis=0)
        if counts[0].sum() < self.min_labels:
            return False
        scores, labels = self._recent.column(0), self._recent.column(1)
        calibration = self._calibration(counts)
        # Signed so that a right prediction counts +1 and a wrong one -1, against its odds.
        right = np.where(scores >= self.threshold, 1.0, -1.0)
        expected = np.interp(scores, *calibration)
        surprise = float(np.sum(right * (labels - expected)))
        self._calibration_gap = surprise / len(scores)
        if abs(surprise) > _RESTART_Z * math.sqrt(float(np.sum(expected * (1.0 - expected)))):
            self._counts[:] = 0.0
            self._generation_filled = 0
            self._count_labels(scores, labels)
            self._n_restarts += 1
            counts = self._grid().sum(axis=0)
            calibration = self._calibration(counts)
        probabilities = np.interp(self._chunk, *calibration)
        self._estimated = expected_metrics(self._chunk, probabilities, self.threshold)
        # The bins from the threshold's edge on are predicted class 1.
        first_positive = len(counts[0]) // 2
        right_labels = counts[1, first_positive:].sum() + (
            counts[0, :first_positive].sum() - counts[1, :first_positive].sum()
        )
        self._reference_accuracy = float(right_labels / counts[0].sum())
        return bool(self._estimated[0] < self._reference_accuracy - self.tolerance)

    @staticmethod
    def _calibration(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bins' mean scores and fitted P(y = 1), for ``np.interp``, from summed counts."""
        held = counts[0] > 0
        labels, positives, score_sums = counts[:, held]
        return score_sums / labels, pooled_fit(positives, labels)

    def _measured(self, metric: int) -> float:
        return self.measured[METRICS[metric]]

    @property
    def measured(self) -> dict[str, float]:
        """Every ``measured_<m>``, by ``m`` in ``METRICS``, from one pass over the last
        ``chunk_size`` labels (reading the five properties makes five passes)."""
        if not len(self._recent):
            return dict.fromkeys(METRICS, math.nan)
        values = measured_metrics(self._recent.column(0), self._recent.column(1), self.threshold)
        return dict(zip(METRICS, values.tolist(), strict=True))

    @property
    def estimated(self) -> dict[str, float]:
        """Every ``estimated_<m>``, by ``m`` in ``METRICS``."""
        return dict(zip(METRICS, self._estimated.tolist(), strict=True))

    @property
    def estimated_accuracy(self) -> float:
        """Expected accuracy of the last completed chunk (NaN before one with ``min_labels``)."""
        return float(self._estimated[0])

    @property
    def estimated_precision(self) -> float:
        """Expected precision of the last completed chunk (NaN if it predicts no class 1)."""
        return float(self._estimated[1])

    @property
    def estimated_recall(self) -> float:
        """Expected recall of the last completed chunk."""
        return float(self._estimated[2])

    @property
    def estimated_f1(self) -> float:
        """Expected F1 of the last completed chunk, from its expected confusion matrix."""
        return float(self._estimated[3])

    @property
    def estimated_auc(self) -> float:
        """Expected ROC AUC of the last completed chunk."""
        return float(self._estimated[4])

    @property
    def measured_accuracy(self) -> float:
        """Accuracy over the last ``chunk_size`` labels (NaN before any)."""
        return self._measured(0)

    @property
    def measured_precision(self) -> float:
        """Precision over the last ``chunk_size`` labels (NaN if none predicted class 1)."""
        return self._measured(1)

    @property
    def measured_recall(self) -> float:
        """Recall over the last ``chunk_size`` labels (NaN if none was class 1)."""
        return self._measured(2)

    @property
    def measured_f1(self) -> float:
        """F1 over the last ``chunk_size`` labels."""
        return self._measured(3)

    @property
    def measured_auc(self) -> float:
        """ROC AUC over the last ``chunk_size`` labels (NaN until both classes are present)."""
        return self._measured(4)

    @property
    def reference_accuracy(self) -> float:
        """Accuracy measured on the calibration labels when the last chunk was estimated."""
        return self._reference_accuracy

    @property
    def calibration_gap(self) -> float:
        """Measured minus expected accuracy of the last ``chunk_size`` labels, when the last
        chunk was estimated, against the calibration before any restart: near 0 while
        P(y | score) holds, below 0 when the labels say the model got worse than its
        calibration expected."""
        return self._calibration_gap

    @property
    def n_restarts(self) -> int:
        """How many times the calibration restarted from the last ``chunk_size`` labels."""
        return self._n_restarts

    @property
    def n_predictions(self) -> int:
        """How many predictions were absorbed in all."""
        return self._n_predictions

    @property
    def n_chunks(self) -> int:
        """How many chunks of predictions completed in all."""
        return self._n_chunks

    @property
    def detections(self) -> np.ndarray:
        """Positions in the last batch where ``drift_detected`` would have been True."""
        return self._detections.copy()

    @property
    def drift_detected(self) -> bool:
        """Whether the last update completed a chunk whose estimated accuracy dropped."""
        return len(self._detections) > 0
