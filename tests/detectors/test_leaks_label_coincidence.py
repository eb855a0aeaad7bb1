"""LabelCoincidentWrites: flags write times tied to one class's labels, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import LabelCoincidentWrites
from detectors.leaks import FeatureWrite, Label
from tests.detectors.cases_leaks import writes_and_labels

MINUTE = 60_000.0


def _first_alarm(detector: LabelCoincidentWrites, events: list) -> int | None:
    for i, event in enumerate(events):
        detector.update(event)
        if detector.leak_detected:
            return i
    return None


def _activity_stream(
    rng: np.random.Generator,
    users: int,
    n: int,
    *,
    leak: str | None = None,
    leak_delay: float = 0.0,
    tied_to_every_label: str | None = None,
    sentinel: str | None = None,
) -> list[FeatureWrite | Label]:
    """Churners (every third user) log in a third as often as others; labels come at random.

    ``sessions_7d`` is written at every login, so churners have fewer writes anywhere, not
    only near their label. ``leak`` is set to ``sentinel`` when a churner's label happens,
    its write arriving ``leak_delay`` after the label message (the label time itself stays
    the event time). ``tied_to_every_label`` is written at every label, whatever the class.
    """
    events: list[tuple[float, int, FeatureWrite | Label]] = []
    now = 0.0
    for _ in range(n):
        now += rng.exponential(20_000.0)
        user = int(rng.integers(users))
        churner = user % 3 == 0
        if rng.random() < 0.85:
            if churner and rng.random() < 2 / 3:
                continue
            events.append(
                (now, 0, FeatureWrite(user, "sessions_7d", float(rng.poisson(5)), now, now))
            )
            events.append((now, 0, FeatureWrite(user, "last_login_date", now, now, now)))
            continue
        label = Label(user, int(churner), now)
        events.append((now, 1, label))
        if leak is not None and churner:
            write = FeatureWrite(user, leak, sentinel, now, now + leak_delay)
            events.append((now + leak_delay, 0 if leak_delay < 0 else 2, write))
        if tied_to_every_label is not None:
            write = FeatureWrite(user, tied_to_every_label, "closed", now, now)
            events.append((now, 0, write))
    events.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in events]


def test_flags_a_feature_nulled_when_the_label_happens_at_a_pinned_index() -> None:
    events = writes_and_labels(np.random.default_rng(1), 3_000, leaking="last_login_date")
    detector = LabelCoincidentWrites(tolerance=1_000.0, control_offset=20_000.0, lateness=2_000.0)
    assert _first_alarm(detector, events) == 136
    assert detector.leaking_features == ("last_login_date",)
    evidence = detector.evidence["last_login_date"]
    assert evidence.labels == (10, 10)
    assert evidence.near_nulls == (0, 10)
    assert evidence.control_nulls == (0, 0)
    assert evidence.leak_class == 1
    assert evidence.score == 1.0
    assert evidence.p_value <= 0.01
    assert detector.leak_score == 1.0
    assert not detector.evidence["plan"].leaking


@pytest.mark.parametrize("seed", range(5))
def test_silent_on_honest_writes_whose_values_depend_on_the_class(seed: int) -> None:
    events = writes_and_labels(np.random.default_rng(seed), 30_000)
    detector = LabelCoincidentWrites(tolerance=1_000.0, control_offset=20_000.0, lateness=2_000.0)
    assert _first_alarm(detector, events) is None
    # The test did look: enough labels of both classes were scored.
    assert min(detector.evidence["plan"].labels) > 1_000


@pytest.mark.parametrize("seed", range(3))
def test_silent_when_one_class_simply_writes_less_often(seed: int) -> None:
    events = _activity_stream(np.random.default_rng(seed), 300, 60_000)
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) is None
    evidence = detector.evidence["sessions_7d"]
    # Churners do have fewer writes near their labels: the rates differ, the timing does not.
    assert (
        evidence.near_writes[1] / evidence.labels[1] < evidence.near_writes[0] / evidence.labels[0]
    )


def test_silent_on_a_feature_written_at_every_label_whatever_the_class() -> None:
    events = _activity_stream(np.random.default_rng(4), 300, 20_000, tied_to_every_label="status")
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) is None
    evidence = detector.evidence["status"]
    assert evidence.near_writes == evidence.labels


def test_matches_a_leak_written_after_the_label_message() -> None:
    events = _activity_stream(
        np.random.default_rng(5), 300, 20_000, leak="account_state", leak_delay=30_000.0
    )
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) == 284
    assert detector.leaking_features == ("account_state",)


def test_finds_a_sentinel_among_frequent_writes() -> None:
    # last_login_date is written at every login, and set to the epoch when a user cancels.
    events = _activity_stream(
        np.random.default_rng(6), 300, 20_000, leak="last_login_date", sentinel="1970-01-01"
    )
    detector = LabelCoincidentWrites(sentinels=("1970-01-01",))
    assert _first_alarm(detector, events) == 408
    assert detector.leaking_features == ("last_login_date",)
    assert detector.evidence["last_login_date"].near_nulls[0] == 0


def test_forgotten_entities_make_labels_unjudged_not_leaks() -> None:
    # A third of the users fit: the others' control windows may hold forgotten writes.
    honest = _activity_stream(np.random.default_rng(0), 300, 60_000)
    detector = LabelCoincidentWrites(max_entities=100)
    assert _first_alarm(detector, honest) is None
    evidence = detector.evidence["sessions_7d"]
    assert (evidence.labels, evidence.unjudged) == ((2204, 574), 6366)
    leaking = _activity_stream(
        np.random.default_rng(6), 300, 20_000, leak="last_login_date", sentinel="1970-01-01"
    )
    detector = LabelCoincidentWrites(max_entities=100, sentinels=("1970-01-01",))
    # Found later than with room for every user (index 408 in the test above).
    assert _first_alarm(detector, leaking) == 604
    assert detector.leaking_features == ("last_login_date",)


def test_open_labels_are_bounded_and_scored_early() -> None:
    detector = LabelCoincidentWrites(max_open_labels=3)
    for i in range(10):
        detector.update(Label(i, i % 2, float(i)))
    assert detector.open_labels == 3


def test_counts_rejected_inputs() -> None:
    detector = LabelCoincidentWrites()
    for bad in (None, Label("u", 3, 0.0), FeatureWrite("u", "f", 1, float("nan"), 0.0)):
        detector.update(bad)
    assert detector.rejected == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tolerance": 0.0}, "tolerance"),
        ({"tolerance": 10.0, "control_offset": 15.0}, "control_offset"),
        ({"lateness": -1.0}, "lateness"),
        ({"sentinels": ["x"]}, "sentinels"),
        ({"alpha": 1.0}, "alpha"),
        ({"min_labels": 0}, "min_labels"),
        ({"history": 0}, "history"),
        ({"max_entities": 0}, "max_entities"),
        ({"control_offset": "1h"}, "control_offset"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LabelCoincidentWrites(**kwargs)
