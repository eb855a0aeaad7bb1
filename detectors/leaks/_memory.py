"""A bounded map that forgets the least recently used items and remembers when it did."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


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
