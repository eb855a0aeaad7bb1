"""Bounded maps: one that forgets the least recently used items and remembers when it did,
and a numpy table from 64-bit keys to rows."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

import numpy as np


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
    so there are no tombstones and a lookup stops at the first empty slot. It pickles as
    two arrays, and costs 12 bytes per slot whatever the keys.
    """

    def __init__(self, rows: int) -> None:
        slots = 1 << max(4, (2 * rows - 1).bit_length())
        self.keys = np.zeros(slots, np.uint64)
        self.rows = np.full(slots, -1, np.int32)
        self.size = 0

    def _home(self, key: int) -> int:
        return key & (len(self.rows) - 1)

    def _slot(self, key: int) -> int:
        """The key's slot, or the empty slot where it would go."""
        mask = len(self.rows) - 1
        slot = key & mask
        while self.rows[slot] >= 0 and int(self.keys[slot]) != key:
            slot = (slot + 1) & mask
        return slot

    def find(self, key: int) -> int:
        """The key's row, -1 if absent."""
        return int(self.rows[self._slot(key)])

    def add(self, key: int, row: int) -> None:
        """Maps an absent ``key`` to ``row``; the table must have room for it."""
        slot = self._slot(key)
        self.keys[slot], self.rows[slot] = key, row
        self.size += 1

    def remove(self, key: int) -> None:
        """Forgets a present ``key``."""
        mask = len(self.rows) - 1
        hole = self._slot(key)
        self.rows[hole] = -1
        self.size -= 1
        slot = hole
        while True:
            slot = (slot + 1) & mask
            if self.rows[slot] < 0:
                return
            # An entry whose home is cyclically in (hole, slot] must stay where it is.
            home = self._home(int(self.keys[slot]))
            if (home - hole - 1) & mask < (slot - hole) & mask:
                continue
            self.keys[hole], self.rows[hole] = self.keys[slot], self.rows[slot]
            self.rows[slot] = -1
            hole = slot
