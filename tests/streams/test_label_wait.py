"""Labels that arrive ahead of their model's predictions wait for them, within a bound."""

from __future__ import annotations

import pickle

import pytest

from schemas.contracts import GroundTruth
from streams.monitor.label_wait import LabelWait


def label(at: int, request: str = "r") -> GroundTruth:
    return GroundTruth(schema_version=1, model_id="m", label=1, label_at=at, request_id=request)


def test_labels_are_released_in_event_time_order_once_predictions_reach_them() -> None:
    wait = LabelWait()
    assert wait.add(label(300, "c")) == [] and wait.add(label(100, "a")) == []
    assert wait.add(label(200, "b")) == []
    assert [t.request_id for t in wait.advance(250)] == ["a", "b"]
    assert wait.advance(240) == []  # the clock never goes back
    assert wait.add(label(250, "d")) == [label(250, "d")]
    assert [t.request_id for t in wait.advance(300)] == ["c"]
    assert (wait.waiting, wait.released_early) == (0, 0)


def test_equal_label_times_keep_their_arrival_order() -> None:
    wait = LabelWait()
    for request in "xyz":
        wait.add(label(5, request))
    assert [t.request_id for t in wait.advance(5)] == ["x", "y", "z"]


def test_the_bound_releases_the_longest_waiting_label_and_counts_it() -> None:
    wait = LabelWait(max_waiting=3)
    released = [t.label_at for at in range(10, 70, 10) for t in wait.add(label(at))]
    assert released == [10, 20, 30]
    assert (wait.waiting, wait.released_early) == (3, 3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, None])
def test_the_bound_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_waiting"):
        LabelWait(max_waiting=bad)  # type: ignore[arg-type]


def _loaded(wait: LabelWait) -> LabelWait:
    """The same wait after the compiled loop's round trip (``columns``, then ``load``)
    with nothing added or released: kept as columns."""
    labels, columns = wait.columns(0, 0)
    kept = LabelWait(wait.max_waiting)
    kept.load(labels, columns, columns[4], columns[5], columns[6])
    return kept


def test_a_wait_kept_as_columns_is_the_same_wait() -> None:
    wait = LabelWait()
    for at, request in ((300, "c"), (100, "a"), (200, None), (200, "b")):
        wait.add(
            GroundTruth(schema_version=1, model_id="m", label=1, label_at=at, request_id=request)
            if request
            else GroundTruth(schema_version=1, model_id="m", label=0, label_at=at, entity_id="e")
        )
    kept = _loaded(wait)
    assert kept._columns is not None and kept.waiting == wait.waiting == 4
    # A checkpoint holds one form whichever the wait is in.
    assert pickle.dumps(kept) == pickle.dumps(wait)
    assert pickle.loads(pickle.dumps(wait)).waiting == 4
    # Released in the same order, the entity's label (no request) among them.
    assert [t.label_at for t in kept.advance(250)] == [t.label_at for t in wait.advance(250)]
    assert [t.label_at for t in kept.advance(300)] == [300]
