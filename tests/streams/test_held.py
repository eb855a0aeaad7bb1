"""The held-prediction table against the ordered dict it replaced, and across checkpoints."""

from __future__ import annotations

import collections
import pickle
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.monitor.held import (
    EVERYTHING,
    ROLES,
    HeldKey,
    HeldPrediction,
    HeldTable,
    entity_hash,
    request_hash,
)
from tests.detectors.batching import attributes

MAX_HELD = 5

# An operation: ("add", request, entity, role, version, at, output kind, probed),
# ("release", request, role), ("expire", at), ("checkpoint",), ("compare",); ``probed``: the
# add takes the slot ``vacancy`` found, as the join's does. Small alphabets make keys and
# entities collide. The table is compared with the reference only at "compare" and at the
# end, since comparing flushes the rows added last: until then releases, expiry and
# eviction meet them unflushed.
ADD = st.tuples(
    st.just("add"),
    st.integers(0, 12),
    st.integers(0, 3),
    st.sampled_from(ROLES),
    st.sampled_from(("v1", "v2", "v3")),
    st.integers(0, 50),
    st.sampled_from(("score", "nan", "probabilities", "ranking")),
    st.booleans(),
)
# At least 30 operations, adds three times as often as each other: else an expiry empties
# the table before it is full, and eviction is never drawn.
OPERATIONS = st.lists(
    st.one_of(
        ADD,
        ADD,
        ADD,
        st.tuples(st.just("release"), st.integers(0, 12), st.sampled_from(ROLES)),
        st.tuples(st.just("expire"), st.integers(0, 60)),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("compare")),
    ),
    min_size=30,
    max_size=120,
)


def output(kind: str, at: int) -> float | dict[str, float] | tuple[str, ...]:
    if kind == "score":
        return at / 64.0
    if kind == "nan":
        return float("nan")
    if kind == "probabilities":
        return {"a": at / 64.0, "b": 1.0 - at / 64.0}
    return ("i1", f"i{at}")


class Reference:
    """The label join's former layout: an ordered dict by key, scanned by entity, and the
    entity sample spelt out."""

    def __init__(self) -> None:
        self.held: collections.OrderedDict[HeldKey, HeldPrediction] = collections.OrderedDict()
        self.limit = EVERYTHING
        self.unsampled = 0

    def add(self, held: HeldPrediction) -> bool:
        """Hold ``held`` if sampled, as the table does; whether the oldest was evicted."""
        evicted = False
        if held.entity < self.limit and len(self.held) >= MAX_HELD:
            hashes = [h.entity for h in self.held.values()]
            if min(hashes) < self.limit // 2 <= max(hashes):
                self.limit //= 2
                for key, h in list(self.held.items()):
                    if h.entity >= self.limit:
                        del self.held[key]
                        self.unsampled += 1
            else:
                self.held.popitem(last=False)
                evicted = True
        if held.entity >= self.limit:
            self.unsampled += 1
        else:
            self.held[(held.role, held.request)] = held
        return evicted

    def pop_older_than(self, oldest_kept: int) -> int:
        dropped = 0
        while self.held and next(iter(self.held.values())).predicted_at < oldest_kept:
            self.held.popitem(last=False)
            dropped += 1
        return dropped

    def of_entity(self, entity_id: str) -> list[HeldPrediction]:
        return [held for held in self.held.values() if held.entity == entity_hash(entity_id)]

    def latest_of_entity(self, entity_id: str, before: int) -> list[HeldPrediction]:
        """The label join's match of a label naming only its entity, as it was written."""
        latest: dict[str, HeldPrediction] = {}
        for held in self.of_entity(entity_id):
            if held.predicted_at <= before and (
                held.role not in latest or held.predicted_at >= latest[held.role].predicted_at
            ):
                latest[held.role] = held
        return list(latest.values())

    def of_request(self, request_id: str) -> list[HeldPrediction]:
        held = (self.held.get((role, request_hash(request_id))) for role in ROLES)
        return [found for found in held if found is not None]


def same(table: HeldTable, reference: Reference, plain: HeldTable) -> None:
    """``table`` holds what ``reference`` does, and in the same rows and index slots as
    ``plain``, fed the same without ``vacancy``'s slots."""
    assert np.array_equal(table._indexed(), plain._indexed())
    assert pickle.dumps(table) == pickle.dumps(plain)
    assert (table.limit, table.unsampled) == (reference.limit, reference.unsampled)
    # Before anything that flushes: the rows added last are read where they wait.
    for request in range(13):
        assert repr(table.of_request(f"r{request}")) == repr(reference.of_request(f"r{request}"))
    assert len(table) == len(reference.held)
    assert list(table) == list(reference.held)
    for key, held in reference.held.items():
        assert key in table
        assert repr(table.get(key)) == repr(held)  # repr: NaN scores compare equal
    for entity in range(4):
        assert repr(table.of_entity(f"u{entity}")) == repr(reference.of_entity(f"u{entity}"))
        for before in (-1, 10, 25, 40, 50):
            assert repr(table.latest_of_entity(f"u{entity}", before)) == repr(
                reference.latest_of_entity(f"u{entity}", before)
            )


@settings(max_examples=200, deadline=None)
@given(operations=OPERATIONS)
def test_the_table_holds_what_an_ordered_dict_holds(operations: list[tuple]) -> None:
    table, reference, plain = HeldTable(MAX_HELD), Reference(), HeldTable(MAX_HELD)
    for operation in operations:
        if operation[0] == "add":
            _, request, entity, role, version, at, kind, probed = operation
            held = HeldPrediction(
                request_hash(f"r{request}"),
                entity_hash(f"u{entity}"),
                role,
                version,
                at,
                output(kind, at),
            )
            slot = table.vacancy(role, held.request) if probed else -1
            if (role, held.request) in reference.held:
                assert not probed or slot == -1
                continue  # the join counts a duplicate and holds nothing
            assert (slot >= 0) == probed
            assert table.add(*held, slot) == reference.add(held)
            plain.add(*held)
        elif operation[0] == "release":
            key = (operation[2], request_hash(f"r{operation[1]}"))
            if key in reference.held:
                assert repr(table.release(key)) == repr(reference.held.pop(key))
                plain.discard(key)
        elif operation[0] == "expire":
            assert table.pop_older_than(operation[1]) == reference.pop_older_than(operation[1])
            plain.pop_older_than(operation[1])
        elif operation[0] == "checkpoint":
            table = pickle.loads(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
            plain = pickle.loads(pickle.dumps(plain, pickle.HIGHEST_PROTOCOL))
        else:
            same(table, reference, plain)
    same(table, reference, plain)
    # Compaction keeps the columns within a quarter beyond the bound (at least one row),
    # however many rows came and went.
    assert len(table._at) <= MAX_HELD + 1


def test_a_checkpoint_holds_only_the_held_rows() -> None:
    table = HeldTable(10_000)
    for n in range(10_000):
        table.add(request_hash(f"r{n}"), entity_hash(f"u{n}"), "live", "v1", n, 0.5)
    full = len(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    assert table.pop_older_than(9_000) == 9_000
    assert len(pickle.dumps(table, pickle.HIGHEST_PROTOCOL)) < full / 8


def test_a_full_table_holds_numbers_not_an_object_a_prediction() -> None:
    table = HeldTable(10_000)
    for n in range(12_000):
        table.add(request_hash(f"r{n}"), entity_hash(f"u{n}"), "live", "v1", n, 0.5)
    table._indexed()  # built as by the first lookup
    table.flush()
    arrays = list(attributes(table).values())
    numbers = sum(value.nbytes for value in arrays if isinstance(value, np.ndarray))
    objects = sum(len(value) for value in arrays if isinstance(value, list | dict))
    # Columns of 12,500 rows (35 bytes each) and an index of 32,768 slots (4 bytes each:
    # a row number, its key read from the row; a KeyTable beside it took 12), the one
    # version (its name and code) and a count per role; the ids as strings took two lists
    # of 10,000 strings, and dicts of 10,000 keys.
    assert (numbers, objects) == (12_500 * 35 + 32_768 * 4, 2 + 3)


def test_a_table_holding_a_dozen_compacts_every_few_hundred_it_holds() -> None:
    """Full columns are compacted (and in the join, the prediction that finds them full
    leaves the compiled loop): columns of 256 rows first, so that a table holding a
    dozen predictions at a time compacts every 244 it takes, not every 52 (64 rows)."""
    table = HeldTable(3_000)
    compact = HeldTable._compact
    with mock.patch.object(HeldTable, "_compact", autospec=True, side_effect=compact) as spy:
        for n in range(1_000):
            table.pop_older_than(n - 12)
            table.add(request_hash(f"r{n}"), entity_hash(f"u{n}"), "live", "v1", n, 0.5)
    assert (len(table), len(table._at), spy.call_count) == (13, 256, 4)


def test_more_versions_than_a_byte_widen_their_column() -> None:
    table = HeldTable(1_000)
    for n in range(300):
        table.add(request_hash(f"r{n}"), entity_hash("u"), "live", f"v{n}", n, 0.5)
    table = pickle.loads(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    table.add(request_hash("r300"), entity_hash("u"), "live", "v300", 300, 0.5)
    assert [held.version for held in table.of_entity("u")] == [f"v{n}" for n in range(301)]
    assert table._version.dtype == np.int32


def test_a_halving_keeps_exactly_the_rows_below_the_new_limit() -> None:
    table = HeldTable(1_000)
    entities = [entity_hash(f"u{n % 700}") for n in range(1_001)]
    for n, entity in enumerate(entities):
        assert not table.add(request_hash(f"r{n}"), entity, "live", "v1", n, 0.5)
    # The 1,001st halved the sample: exactly the rows of entities below half stay, in order.
    assert table.limit == EVERYTHING // 2
    below = [n for n, entity in enumerate(entities) if entity < EVERYTHING // 2]
    assert list(table) == [("live", request_hash(f"r{n}")) for n in below]
    assert (len(below), table.unsampled) == (478, 1_001 - 478)
    # Kept across a checkpoint: an entity left out stays out, one in goes on being held.
    table = pickle.loads(pickle.dumps(table, pickle.HIGHEST_PROTOCOL))
    assert (table.limit, table.unsampled, len(table)) == (EVERYTHING // 2, 523, 478)
    out = next(e for e in range(700) if entity_hash(f"u{e}") >= EVERYTHING // 2)
    inside = next(e for e in range(700) if entity_hash(f"u{e}") < EVERYTHING // 2)
    table.add(request_hash("r-out"), entity_hash(f"u{out}"), "live", "v1", 2_000, 0.5)
    table.add(request_hash("r-in"), entity_hash(f"u{inside}"), "live", "v1", 2_000, 0.5)
    assert ("live", request_hash("r-out")) not in table
    assert ("live", request_hash("r-in")) in table
    assert (table.unsampled, len(table)) == (524, 479)


def test_an_add_that_evicts_probes_again_for_its_slot() -> None:
    # Three rows of one entity fill the table (columns of four rows, an index of 16
    # slots); a fourth whose key starts where the oldest's does is probed while the oldest
    # holds that slot, and takes it once the eviction frees it: the slot ``vacancy`` gave
    # would leave an empty slot before it, where a lookup stops.
    table = HeldTable(3)
    keys: list[int] = []
    for n in range(100):  # three keys in slots of their own
        if len(keys) < 3 and (key := request_hash(f"r{n}")) % 16 not in {k % 16 for k in keys}:
            keys.append(key)
    for n, key in enumerate(keys):
        table.add(key, entity_hash("u"), "live", "v1", n, 0.5)
    home = keys[0] % 16
    twin = next(key for n in range(1_000) if (key := request_hash(f"t{n}")) % 16 == home)
    slot = table.vacancy("live", twin)
    assert slot != home
    assert table.add(twin, entity_hash("u"), "live", "v1", 3, 0.5, slot)  # evicts keys[0]
    assert table._indexed()[home] == 3
    assert ("live", twin) in table
    assert list(table) == [("live", key) for key in (*keys[1:], twin)]


def test_an_entity_lookup_reads_the_sorted_rows_and_those_added_since() -> None:
    """``of_entity`` sorts the rows by entity on its first call and scans the rows added
    after: rows that left since, on either side, are not found."""
    table = HeldTable(max_held=1000)
    for n in range(6):
        table.add(request_hash(f"r{n}"), entity_hash(f"u{n % 2}"), "live", "v1", n, 0.5)
    assert [h.predicted_at for h in table.of_entity("u0")] == [0, 2, 4]  # sorts
    for n in range(6, 10):
        table.add(request_hash(f"r{n}"), entity_hash(f"u{n % 2}"), "live", "v1", n, 0.5)
    table.discard(("live", request_hash("r2")))  # a sorted row
    table.discard(("live", request_hash("r8")))  # a row added since
    assert [h.predicted_at for h in table.of_entity("u0")] == [0, 4, 6]
    assert [h.predicted_at for h in table.of_entity("u1")] == [1, 3, 5, 7, 9]
