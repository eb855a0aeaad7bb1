"""Bounded maps: one that forgets the least recently used items and remembers when it did,
and a numpy table from 64-bit keys to rows; and the narrowest exact types for pickles."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from detectors._compiled import compiled


class Timed(Protocol):
    def latest(self) -> float:
        """The latest timestamp the item holds."""
        ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Timed)


class Forgetful(Generic[K, V]):
    """At most ``capacity`` items; using an item makes it the last to be forgotten.

    ``forgotten_until`` is the latest timestamp any forgotten item held. An item created
    after that may be a forgotten one coming back, so anything it says about times up to
    then is incomplete: new items get it as their starting point.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: collections.OrderedDict[K, V] = collections.OrderedDict()
        self.forgotten_until = -math.inf

    def get(self, key: K) -> V | None:
        """The item, without counting it as used."""
        return self.items.get(key)

    def use(self, key: K, make: Callable[[float], V]) -> V:
        """The item, made with ``make(forgotten_until)`` if absent, now the most recent."""
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
            return item
        item = self.items[key] = make(self.forgotten_until)
        if len(self.items) > self.capacity:
            _, forgotten = self.items.popitem(last=False)
            self.forgotten_until = max(self.forgotten_until, forgotten.latest())
        return item


class KeyTable:
    """A map from 64-bit keys to row numbers in two numpy arrays (open addressing).

    Linear probing in a table at most half full; removal shifts the following entries back,
    so there are no tombstones and a lookup stops at the first empty slot. It costs 12
    bytes per slot whatever the keys; its pickle holds only the occupied slots (an empty
    slot's key is 0), so it restores to the same slots.
    """

    # A slot's key and row.
    SLOT_BYTES = 12

    def __init__(self, rows: int) -> None:
        slots = 1 << max(4, (2 * rows - 1).bit_length())
        self.keys = np.zeros(slots, np.uint64)
        self.rows = np.full(slots, -1, np.int32)
        self.size = 0

    def __getstate__(self) -> dict[str, Any]:
        occupied = np.flatnonzero(self.rows >= 0)
        return {
            "slots": len(self.rows),
            "occupied": narrow(occupied),
            "keys": self.keys[occupied],
            "rows": narrow(self.rows[occupied]),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        occupied = state["occupied"]
        self.keys = np.zeros(state["slots"], np.uint64)
        self.rows = np.full(state["slots"], -1, np.int32)
        self.keys[occupied] = state["keys"]
        self.rows[occupied] = state["rows"]
        self.size = len(occupied)

    @classmethod
    def of(
        cls, keys: Sequence[int] | np.ndarray, rows: Sequence[int] | np.ndarray, size: int
    ) -> KeyTable:
        """A table for ``size`` rows holding ``keys[i] -> rows[i]``, as ``add`` one by one
        would make it, the keys taken in the order of their home slots (a stable sort).

        In that order each key goes to its home or, if that is taken, to the slot after
        the key before (the slots from its home on are that key's run). Keys whose slot
        would pass the end wrap around to the first empty slots from the start, in order,
        as they would one by one. A compiled loop (``_place_keys``) places them: a
        table is made anew each time its rows grow, and numpy's stable sort of the homes
        and running maximum cost some 0.1 us a key.
        """
        table = cls(size)
        _place_keys(np.array(keys, np.uint64), np.array(rows, np.int32), table.keys, table.rows)
        table.size = len(keys)
        return table

    def probe(self, key: int) -> tuple[int, int]:
        """The key's slot and row; if absent, the empty slot where it would go and -1.

        Read with ``item``: a Python number per probe, no numpy scalar made.

        >>> table = KeyTable(4)  # 16 slots: keys 3 and 19 both start at slot 3
        >>> table.add(3, 0)
        >>> table.probe(19)
        (4, -1)
        >>> table.put(4, 19, 1)
        >>> table.probe(19), table.find(3)
        ((4, 1), 0)
        >>> table.remove(3)  # 19 moves back to its first slot
        >>> table.probe(19), table.size
        ((3, 1), 1)
        """
        return probe(self.rows, self.keys, key, keyed_by_row=False)

    def find(self, key: int) -> int:
        """The key's row, -1 if absent."""
        return self.probe(key)[1]

    def add(self, key: int, row: int) -> None:
        """Maps an absent ``key`` to ``row``; the table must have room for it."""
        self.put(self.probe(key)[0], key, row)

    def put(self, slot: int, key: int, row: int) -> None:
        """Maps an absent ``key`` to ``row`` at ``slot``, the one ``probe`` gave for it."""
        self.keys[slot], self.rows[slot] = key, row
        self.size += 1

    def remove(self, key: int) -> None:
        """Forgets a present ``key``."""
        vacate(self.rows, self.keys, self.probe(key)[0], keyed_by_row=False)
        self.size -= 1

    def remove_all(self, keys: np.ndarray) -> None:
        """Forgets present ``keys`` (uint64), in order, as ``remove`` one by one: the
        entities a detector forgets at once are hundreds, a Python probe each."""
        remove_compiled(self.rows, self.keys, keys)
        self.size -= len(keys)


def probe(rows: np.ndarray, keys: np.ndarray, key: int, *, keyed_by_row: bool) -> tuple[int, int]:
    """Linear probing for ``key`` in ``rows``, slots of row numbers (-1 empty; a power of
    two of them, at most half full): its slot and row; if absent, the empty slot where it
    would go and -1. A slot's key is ``keys[row]`` if ``keyed_by_row`` (an index over a
    table's key column, as the label join's held predictions), else ``keys[slot]`` (a
    ``KeyTable``, which keeps each slot's key beside it).

    Read with ``item``: a Python number per step, no numpy scalar made.
    """
    mask = len(rows) - 1
    slot = key & mask
    row = rows.item(slot)
    while row >= 0 and keys.item(row if keyed_by_row else slot) != key:
        slot = (slot + 1) & mask
        row = rows.item(slot)
    return slot, row


def vacate(rows: np.ndarray, keys: np.ndarray, hole: int, *, keyed_by_row: bool) -> None:
    """Empties slot ``hole`` of ``rows`` (as ``probe`` reads them) and shifts the entries
    after it back where their probes would find them (no tombstones: a probe stops at the
    first empty slot). Keys kept by slot move with their rows."""
    mask = len(rows) - 1
    rows[hole] = -1
    if not keyed_by_row:
        keys[hole] = 0
    slot = hole
    while True:
        slot = (slot + 1) & mask
        row = rows.item(slot)
        if row < 0:
            return
        # An entry whose home is cyclically in (hole, slot] must stay where it is.
        home = keys.item(row if keyed_by_row else slot) & mask
        if (home - hole - 1) & mask < (slot - hole) & mask:
            continue
        rows[hole], rows[slot] = row, -1
        if not keyed_by_row:
            keys[hole], keys[slot] = keys[slot], 0
        hole = slot


@compiled
def probe_compiled(
    rows: np.ndarray, keys: np.ndarray, key: np.uint64, keyed_by_row: bool
) -> tuple[np.int64, np.int64]:
    """``probe``, for compiled loops (``detectors._compiled``): ``key`` a ``np.uint64``, so
    that it is compared with the keys as an unsigned integer, not as a float."""
    mask = rows.shape[0] - 1
    slot = np.int64(key & np.uint64(mask))
    row = np.int64(rows[slot])
    while row >= 0 and (keys[row] if keyed_by_row else keys[slot]) != key:
        slot = (slot + 1) & mask
        row = np.int64(rows[slot])
    return slot, row


@compiled
def vacate_compiled(rows: np.ndarray, keys: np.ndarray, hole: int, keyed_by_row: bool) -> None:
    """``vacate``, for compiled loops."""
    mask = rows.shape[0] - 1
    rows[hole] = -1
    if not keyed_by_row:
        keys[hole] = 0
    slot = hole
    while True:
        slot = (slot + 1) & mask
        row = np.int64(rows[slot])
        if row < 0:
            return
        home = np.int64((keys[row] if keyed_by_row else keys[slot]) & np.uint64(mask))
        if (home - hole - 1) & mask < (slot - hole) & mask:
            continue
        rows[hole], rows[slot] = row, -1
        if not keyed_by_row:
            keys[hole], keys[slot] = keys[slot], 0
        hole = slot


@compiled
def remove_compiled(rows: np.ndarray, keys: np.ndarray, removed: np.ndarray) -> None:
    """``KeyTable.remove`` of each of ``removed``, in order."""
    for key in removed:
        vacate_compiled(rows, keys, int(probe_compiled(rows, keys, key, False)[0]), False)


@compiled
def _place_keys(
    keys: np.ndarray, rows: np.ndarray, table_keys: np.ndarray, table_rows: np.ndarray
) -> None:
    """``KeyTable.of``'s placing, on an empty table's arrays: the keys in the order of
    their home slots (a stable counting sort), each at its home or the slot after the key
    before, whichever is later; those past the end at the first empty slots, in order."""
    slots = len(table_keys)
    mask = np.uint64(slots - 1)
    n = len(keys)
    homes = np.empty(n, np.int64)
    # Where each home's keys start in the order, then where its next one goes.
    starts = np.zeros(slots + 1, np.int64)
    for i in range(n):
        homes[i] = np.int64(keys[i] & mask)
        starts[homes[i] + 1] += 1
    for slot in range(slots):
        starts[slot + 1] += starts[slot]
    order = np.empty(n, np.int64)
    for i in range(n):
        order[starts[homes[i]]] = i
        starts[homes[i]] += 1
    taken = -1
    placed = 0
    while placed < n:
        i = order[placed]
        taken = max(homes[i], taken + 1)
        if taken >= slots:
            break
        table_keys[taken] = keys[i]
        table_rows[taken] = rows[i]
        placed += 1
    empty = 0
    for j in range(placed, n):
        i = order[j]
        while table_rows[empty] >= 0:
            empty += 1
        table_keys[empty] = keys[i]
        table_rows[empty] = rows[i]


def in_sample(key: int, bits: int) -> bool:
    """Whether a 64-bit key is in the sample that keeps the keys whose top ``bits`` bits
    are 0 (``2 ** -bits`` of the key range; every key for 0 bits). Samples of more bits
    are subsets of those of fewer, so halving a sample only ever drops keys.

    >>> in_sample(2**62, 1), in_sample(2**62, 2), in_sample(2**64 - 1, 0)
    (True, False, True)
    """
    return key >> (64 - bits) == 0


def with_rows(array: np.ndarray, fill: Any, count: int = 1) -> np.ndarray:
    """``array`` with ``count`` more rows (along its first axis) of ``fill`` (a value, or
    a value per row), in its own dtype.

    What ``np.append`` or ``np.vstack`` give rows of the same dtype, in a third of their
    time: a detector adds a row per feature, a model's features in its first batch.

    >>> with_rows(np.zeros((1, 2), np.int64), 7).tolist()
    [[0, 0], [7, 7]]
    >>> with_rows(np.zeros(1, np.uint64), np.array([3, 4], np.uint64), 2).tolist()
    [0, 3, 4]
    """
    bigger = np.empty((len(array) + count, *array.shape[1:]), array.dtype)
    bigger[: len(array)] = array
    bigger[len(array) :] = fill
    return bigger


def narrow(values: np.ndarray) -> np.ndarray:
    """Integers in the narrowest type that holds them all (``widen`` undoes it)."""
    if not len(values.flat):
        return values.astype(np.uint8)
    low, high = int(values.min()), int(values.max())
    return values.astype(np.result_type(np.min_scalar_type(low), np.min_scalar_type(high)))


# Times whose offsets from the earliest, plus 2, a float holds exactly: integers below
# 2**53, so integer timestamps within 2**51 of zero.
_EXACT_TIMES = 2.0**51
# Codes of the times that are not offsets; an offset is its code minus len(_NOT_OFFSETS).
_NOT_OFFSETS = (-math.inf, math.inf)


def pack_times(times: np.ndarray) -> np.ndarray | tuple[float, np.ndarray]:
    """Timestamps as ``(base, codes)``: the earliest finite one, and each as its offset from
    it plus 2 (0 and 1 for -inf and inf) in the narrowest unsigned type, kept only if
    ``unpack_times`` gives every time back exactly (checked): it does when every finite
    time is an integer within ``2**51`` of zero (milliseconds until the year 71,000).
    Other times (fractions that do not survive, larger values, NaN) stay the float array
    they are: a time is never rounded.

    >>> base, codes = pack_times(np.array([1.7e12, 1.7e12 + 3600e3, -np.inf]))
    >>> base, codes.dtype.name, codes.tolist()
    (1700000000000.0, 'uint32', [2, 3600002, 0])
    >>> pack_times(np.array([0.25, 0.5])).tolist()
    [0.25, 0.5]
    """
    finite = np.isfinite(times)
    every = bool(finite.all())
    if not every and np.isnan(times).any():
        return times
    # Passes over the whole array, no gathers: a checkpoint of many entities is mostly this.
    low = float(np.min(times, where=finite, initial=math.inf))
    high = float(np.max(times, where=finite, initial=-math.inf))
    if low == math.inf:
        low = high = 0.0
    if low <= -_EXACT_TIMES or high >= _EXACT_TIMES:
        return times
    codes = times - (low - len(_NOT_OFFSETS))
    if not every:
        np.copyto(codes, np.where(times == math.inf, 1.0, 0.0), where=~finite)
    packed = codes.astype(np.min_scalar_type(int(high - low) + len(_NOT_OFFSETS)))
    # Kept only if every time comes back as it was (whole milliseconds always do).
    if not np.array_equal(unpack_times((low, packed)), times):
        return times
    return low, packed


def unpack_times(
    packed: np.ndarray | tuple[float, np.ndarray], out: np.ndarray | None = None
) -> np.ndarray:
    """The float timestamps ``pack_times`` packed, written into ``out`` if given."""
    if isinstance(packed, np.ndarray):
        if out is None:
            return packed
        out[...] = packed
        return out
    base, codes = packed
    # Exact: integers below 2**53 plus an integer, to an integer within 2**51 of zero.
    times = np.add(codes, base - len(_NOT_OFFSETS), out=out, dtype=np.float64)
    special = codes < len(_NOT_OFFSETS)
    if special.all():
        np.copyto(times, np.where(codes == 0, *_NOT_OFFSETS))
    elif special.any():
        times[special] = np.where(codes[special] == 0, *_NOT_OFFSETS)
    return times
