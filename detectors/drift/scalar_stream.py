"""Any river drift detector on a scalar stream, shielded from missing and invalid values."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from river import base, drift

from detectors.drift._window import finite_float


class ScalarStreamDrift(base.DriftDetector):
    """Runs a river drift detector on a scalar stream, skipping missing and invalid values.

    Scalar streams are e.g. the score mean, an error or null indicator, or latency.

    river's detectors (``drift.ADWIN``, ``drift.PageHinkley``, ``drift.KSWIN``,
    ``drift.binary.DDM``, ...) and ours (``RobustCUSUM``, ``BernoulliCUSUM``) share one
    interface: ``update(x)`` then ``drift_detected``. river's do not guard against bad
    input, and one NaN poisons ADWIN's window for good. This wrapper passes on finite
    values only (for a ``BinaryDriftDetector``: only 0, 1, False and True), counts what it
    drops, holds alarms back during the first ``warm_up`` valid values, and counts alarms.

    Parameters
    ----------
    detector
        The detector to run, cloned fresh on reset; None runs ``drift.ADWIN()`` with its
        defaults.
    warm_up
        Valid values before an alarm may surface. The wrapped detector still learns
        from them, and an alarm it raises during warm-up is dropped.

    Examples
    --------
    >>> import numpy as np
    >>> from river import drift
    >>> from detectors import ScalarStreamDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = ScalarStreamDrift(drift.PageHinkley(), warm_up=100)
    >>> stream = [*rng.normal(0.0, 1.0, 2000), None, float("nan"), *rng.normal(2.0, 1.0, 500)]
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, detector.n_detections, detector.n_skipped)
    1913 1 0
    2016 2 2
    """

    def __init__(
        self,
        detector: base.DriftDetector | base.BinaryDriftDetector | None = None,
        warm_up: int = 0,
    ) -> None:
        super().__init__()
        if detector is not None and not isinstance(
            detector, base.DriftDetector | base.BinaryDriftDetector
        ):
            raise ValueError(
                "detector must be a river DriftDetector or BinaryDriftDetector, "
                f"got {type(detector).__name__}"
            )
        if not isinstance(warm_up, int) or warm_up < 0:
            raise ValueError(f"warm_up must be an int >= 0, got {warm_up!r}")
        self.detector = detector
        self.warm_up = warm_up
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        # Any: the binary and scalar detectors' update() signatures differ; _valid() picks.
        self._detector: Any = drift.ADWIN() if self.detector is None else self.detector.clone()
        self._binary = isinstance(self._detector, base.BinaryDriftDetector)
        self._seen = 0
        self._n_skipped = 0
        self._n_detections = 0

    def _valid(self, x: Any) -> float | bool | None:
        if self._binary:
            if isinstance(x, numbers.Real | np.bool_) and x in (0, 1):
                return bool(x == 1)
            return None
        return finite_float(x)

    def update(self, x: Any) -> None:
        """Pass one value on to the detector, or count it as skipped."""
        self._drift_detected = False
        value = self._valid(x)
        if value is None:
            self._n_skipped += 1
            return
        self._detector.update(value)
        self._seen += 1
        if self._seen > self.warm_up and self._detector.drift_detected:
            self._drift_detected = True
            self._n_detections += 1

    @property
    def n_detections(self) -> int:
        """Alarms surfaced so far."""
        return self._n_detections

    @property
    def n_skipped(self) -> int:
        """Inputs dropped as missing or invalid."""
        return self._n_skipped
