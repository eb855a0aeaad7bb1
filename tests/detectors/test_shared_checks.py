"""Checks every exported detector must pass: pickle, clone, bounded state, warm-up, bad input."""

from __future__ import annotations

import importlib
import math
import pickle
import pkgutil
from typing import Any

import numpy as np
import pytest

import detectors
import tests.detectors
from tests.detectors.cases import DetectorCase


def _all_cases() -> list[DetectorCase]:
    found: list[DetectorCase] = []
    for info in pkgutil.iter_modules(tests.detectors.__path__):
        if info.name.startswith("cases_"):
            found.extend(importlib.import_module(f"tests.detectors.{info.name}").CASES)
    return found


CASES = _all_cases()
IDS = [case.name for case in CASES]


def _results(detector: Any, case: DetectorCase) -> tuple[Any, ...]:
    return tuple(_comparable(getattr(detector, name)) for name in case.results)


def _comparable(value: Any) -> Any:
    # NaN != NaN would make two identical detectors look different.
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def test_every_exported_detector_has_a_case() -> None:
    covered = {case.name for case in CASES}
    # A detector is an exported class with update(); the records and enums it returns are not.
    exported = {name: getattr(detectors, name) for name in detectors.__all__}
    exported_detectors = {
        name for name, obj in exported.items() if isinstance(obj, type) and hasattr(obj, "update")
    }
    assert exported_detectors - covered == set()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pickle_round_trip_continues_identically(case: DetectorCase) -> None:
    data = case.stream(np.random.default_rng(7), 1_000)
    original = case.make()
    for x in data[:500]:
        original.update(x)
    restored = pickle.loads(pickle.dumps(original))
    assert _results(restored, case) == _results(original, case)
    for x in data[500:]:
        original.update(x)
        restored.update(x)
        assert _results(restored, case) == _results(original, case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_clone_is_fresh_and_configured_alike(case: DetectorCase) -> None:
    data = case.stream(np.random.default_rng(8), 600)
    used = case.make()
    for x in data[:300]:
        used.update(x)
    clone = used.clone()
    fresh = case.make()
    for x in data:
        clone.update(x)
        fresh.update(x)
        assert _results(clone, case) == _results(fresh, case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_stays_bounded_over_a_million_updates(case: DetectorCase) -> None:
    rng = np.random.default_rng(9)
    detector = case.make()
    sizes = {}
    done = 0
    # Capped state fills as its caps are reached (AvailabilityGap keeps pairs by time, so its
    # rings fill over some 100,000 values): compare once they have, then ten times later.
    for checkpoint in (100_000, 1_000_000):
        while done < checkpoint:
            chunk = case.stream(rng, min(50_000, checkpoint - done))
            for x in chunk:
                detector.update(x)
            done += len(chunk)
        sizes[checkpoint] = len(pickle.dumps(detector))
    # Allow logarithmic bookkeeping (e.g. ADWIN's bucket rows), nothing that grows with n.
    assert sizes[1_000_000] <= 2 * sizes[100_000] + 16_384, sizes


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_silent_during_warm_up(case: DetectorCase) -> None:
    # A change half-way through warm-up: if the detector could alarm early, this would make it.
    rng = np.random.default_rng(10)
    half = case.warm_up // 2
    detector = case.make()
    for x in [*case.stream(rng, half), *case.changed(rng, case.warm_up - half)]:
        detector.update(x)
        assert not getattr(detector, case.alarm)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_update_absorbs_bad_values(case: DetectorCase) -> None:
    detector = case.make()
    data = case.stream(np.random.default_rng(11), 200)
    for i, x in enumerate(data):
        detector.update(x)
        if i % 20 == 0:
            for bad in case.bad_inputs:
                assert detector.update(bad) is None
    for name in case.results:
        getattr(detector, name)
