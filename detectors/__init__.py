"""Pure detection logic: values and timestamps in, verdicts and evidence out.

No I/O, no clock, no environment. Every detector is re-exported here by name; the
import is lazy so that ``import detectors`` stays cheap for processes that need one.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it; one entry per exported detector or pure function.
_EXPORTS: dict[str, str] = {
    # drift
    "BernoulliCUSUM": "detectors.drift.bernoulli_cusum",
    "CategoricalPSIDrift": "detectors.drift.categorical_psi",
    "ChiSquareDrift": "detectors.drift.chi_square",
    "JensenShannonDrift": "detectors.drift.jensen_shannon",
    "KSDrift": "detectors.drift.ks",
    "NullRateDrift": "detectors.drift.null_rate",
    "PSIDrift": "detectors.drift.psi",
    "ResidualCUSUM": "detectors.drift.residual_cusum",
    "RobustCUSUM": "detectors.drift.robust_cusum",
    "ScalarStreamDrift": "detectors.drift.scalar_stream",
    "WassersteinDrift": "detectors.drift.wasserstein",
    # performance
    "CalibratedEstimate": "detectors.performance.calibrated",
    "ClassificationPerformance": "detectors.performance.classification",
    "EstimatedAccuracy": "detectors.performance.estimate",
    "LabelDelay": "detectors.performance.delay",
    "PerformanceDrop": "detectors.performance.drop",
    "PrecisionAtK": "detectors.performance.ranking",
    "RegressionPerformance": "detectors.performance.regression",
    # leaks
    "AvailabilityGap": "detectors.leaks.availability_gap",
    "FutureValues": "detectors.leaks.future_values",
    "LabelCoincidentWrites": "detectors.leaks.label_coincidence",
    "WriteLag": "detectors.leaks.write_lag",
    # shadow
    "ShadowAgreement": "detectors.shadow.agreement",
    "ShadowPromotion": "detectors.shadow.promotion",
    # health
    "AlarmBudget": "detectors.health.budget",
    "AlertDamping": "detectors.health.damping",
    "ControlAction": "detectors.health.control_action",
    "Evidence": "detectors.health.evidence",
    "HealthPolicy": "detectors.health.policy",
    "HealthState": "detectors.health.state",
    "Heartbeat": "detectors.health.heartbeat",
    "Transition": "detectors.health.transition",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
