"""The key table of the leak detectors: a table made at once is the one of inserts one at a
time, slot for slot, and the compiled probe, vacate and removal do what the Python ones do."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.leaks._memory import KeyTable, probe_compiled, vacate, vacate_compiled

# Keys whose homes crowd a few slots around the end of the table, so that probes run
# into each other, run long and wrap around; the high bits
# keep them distinct.
KEYS = st.builds(
    lambda high, low: (high << 6) | low,
    st.integers(0, 2**58 - 1),
    st.one_of(st.integers(0, 63), st.sampled_from([0, 1, 62, 63])),
)


@st.composite
def tables_and_keys(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[int]]:
    """Rows of a table, keys added one by one and some of them removed, then new keys
    (distinct, absent, within the rows)."""
    rows = draw(st.integers(1, 32))
    keys = draw(st.lists(KEYS, unique=True, max_size=rows))
    before = draw(st.integers(0, len(keys)))
    removed = draw(st.lists(st.sampled_from(keys[:before]), unique=True) if before else st.just([]))
    return rows, keys[:before], removed, keys[before:]


def _table(rows: int, keys: list[int], removed: list[int]) -> KeyTable:
    table = KeyTable(rows)
    for row, key in enumerate(keys):
        table.add(key, row)
    for key in removed:
        table.remove(key)
    return table


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 32).flatmap(
        lambda rows: st.tuples(st.just(rows), st.lists(KEYS, unique=True, max_size=rows))
    )
)
def test_a_table_made_at_once_is_one_by_one_in_home_order(drawn: tuple[int, list[int]]) -> None:
    # Keys crowding the end of the table wrap around to its start.
    rows, keys = drawn
    made = KeyTable.of(keys, list(range(len(keys))), rows)
    one_by_one = KeyTable(rows)
    mask = len(one_by_one.rows) - 1
    for row, key in sorted(enumerate(keys), key=lambda pair: pair[1] & mask):
        one_by_one.add(key, row)
    assert made.keys.tolist() == one_by_one.keys.tolist()
    assert made.rows.tolist() == one_by_one.rows.tolist()
    assert made.size == one_by_one.size == len(keys)
    assert [made.find(key) for key in keys] == list(range(len(keys)))


@settings(max_examples=300, deadline=None)
@given(tables_and_keys())
def test_after_removals_every_key_left_is_found_and_no_removed_one(
    drawn: tuple[int, list[int], list[int], list[int]],
) -> None:
    # Removal shifts the entries after the hole back: a shift too many or too few strands
    # a key beyond an empty slot, where its probe never reaches it.
    rows, keys, removed, _ = drawn
    table = _table(rows, keys, removed)
    gone = set(removed)
    assert {key: table.find(key) for key in keys} == {
        key: -1 if key in gone else row for row, key in enumerate(keys)
    }
    assert table.size == len(keys) - len(removed)


@settings(max_examples=300, deadline=None)
@given(tables_and_keys(), st.lists(KEYS, max_size=30))
def test_the_compiled_probe_finds_what_the_python_one_finds(
    drawn: tuple[int, list[int], list[int], list[int]], others: list[int]
) -> None:
    rows, before, removed, _ = drawn
    table = _table(rows, before, removed)
    for keyed_by_row in (False, True):
        # Keyed by row: the same table read as an index over a key column.
        keys = table.keys if not keyed_by_row else _key_column(table)
        for key in before + others:
            found = probe_compiled(table.rows, keys, np.uint64(key), keyed_by_row)
            assert tuple(map(int, found)) == table.probe(key)


@settings(max_examples=300, deadline=None)
@given(tables_and_keys(), st.data())
def test_the_compiled_vacate_moves_what_the_python_one_moves(
    drawn: tuple[int, list[int], list[int], list[int]], data: st.DataObject
) -> None:
    rows, before, removed, _ = drawn
    kept = [key for key in before if key not in removed]
    if not kept:
        return
    gone = data.draw(st.sampled_from(kept))
    for keyed_by_row in (False, True):
        python, compiled = _table(rows, before, removed), _table(rows, before, removed)
        hole = python.probe(gone)[0]
        python_keys = python.keys if not keyed_by_row else _key_column(python)
        compiled_keys = compiled.keys if not keyed_by_row else _key_column(compiled)
        vacate(python.rows, python_keys, hole, keyed_by_row=keyed_by_row)
        vacate_compiled(compiled.rows, compiled_keys, hole, keyed_by_row)
        assert compiled.rows.tolist() == python.rows.tolist()
        assert compiled_keys.tolist() == python_keys.tolist()


def _key_column(table: KeyTable) -> np.ndarray:
    """The table's keys by row (rows are below the slot count)."""
    column = np.zeros(len(table.rows), np.uint64)
    held = table.rows >= 0
    column[table.rows[held]] = table.keys[held]
    return column


@settings(max_examples=300, deadline=None)
@given(drawn=tables_and_keys(), data=st.data())
def test_removing_keys_at_once_is_removing_them_one_by_one(drawn: Any, data: Any) -> None:
    rows, keys, removed, _ = drawn
    # Some of the keys left, in any order.
    left = [key for key in keys if key not in removed]
    gone = data.draw(st.lists(st.sampled_from(left), unique=True)) if left else []
    one_by_one, at_once = _table(rows, keys, removed), _table(rows, keys, removed)
    for key in gone:
        one_by_one.remove(key)
    at_once.remove_all(np.array(gone, np.uint64))
    assert at_once.size == one_by_one.size
    assert at_once.keys.tolist() == one_by_one.keys.tolist()
    assert at_once.rows.tolist() == one_by_one.rows.tolist()
