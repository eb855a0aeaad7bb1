"""Shared-check cases for the health policy.

The policy's input is evidence, not raw values. The stream alarms often (2% of records,
one record a minute of event time) so that 1,000 records visit every state, which the
pickle and clone checks then cover; each call starts its clock at 0, and the policy treats
earlier times as late records. Its warm-up is ``min_dwell`` in event time: 15 records a
minute apart stay inside 900 s, so even a stream of alarms cannot fall back in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.policy import HealthPolicy
from tests.detectors.cases import BAD_SCALARS, DetectorCase

_RESULTS = (
    "state",
    "since",
    "transition",
    "on_fallback",
    "fallback_since",
    "escalation_due",
    "action",
    "seq",
    "last_evidence",
    "ignored",
)


def _evidence(rng: np.random.Generator, n: int, alarm_rate: float) -> Sequence[Any]:
    alarms = rng.random(n) < alarm_rate
    beats = rng.random(n) < 0.2
    features = rng.integers(0, 5, n)
    records: list[Any] = []
    for i in range(n):
        at = 60.0 * i
        if beats[i]:
            records.append(Heartbeat(at=at))
        else:
            records.append(
                Evidence(
                    detector="ks",
                    feature=f"f{features[i]}",
                    at=at,
                    alarm=bool(alarms[i]),
                    alpha=1e-5,
                    details={"statistic": float(features[i])},
                )
            )
    return records


CASES = [
    DetectorCase(
        make=lambda: HealthPolicy(
            confirm=2, min_dwell=900.0, clear_after=1800.0, escalate_after=3600.0
        ),
        stream=lambda rng, n: _evidence(rng, n, 0.02),
        results=_RESULTS,
        alarm="on_fallback",
        warm_up=15,
        changed=lambda rng, n: _evidence(rng, n, 1.0),
        bad_inputs=(
            *BAD_SCALARS,
            "fallback",
            Heartbeat(at=float("nan")),
            Heartbeat(at=10**400),
            Evidence(detector="ks", at=float("inf"), alarm=True, critical=True),
            Evidence(detector="ks", at=None, alarm=True),  # type: ignore[arg-type]
        ),
    ),
]
