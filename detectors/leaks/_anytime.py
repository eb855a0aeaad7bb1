"""An anytime-valid p-value for exact tests repeated as data arrives."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class AnytimePValue:
    """A p-value that stays valid however often it is looked at.

    Tests run at sample sizes that grow geometrically (``growth``), never more than once per
    size. Look ``j`` is charged ``j * (j + 1)``, so the charges sum to one and the union
    bound makes ``p_value``, the smallest charged p-value so far, valid at every moment:
    under the null hypothesis it falls to ``alpha`` or below with probability at most
    ``alpha`` over the whole unbounded stream.
    """

    first_look: int
    growth: float = 1.1
    looks: int = 0
    next_look: int = 0
    p_value: float = 1.0

    def __post_init__(self) -> None:
        self.next_look = self.first_look

    def due(self, size: int) -> bool:
        """Whether a test is due at sample size ``size``."""
        return size >= self.next_look

    def record(self, size: int, p_value: float) -> None:
        """Takes the test run at sample size ``size`` into account."""
        self.looks += 1
        charged = p_value * self.looks * (self.looks + 1)
        self.p_value = min(self.p_value, charged, 1.0)
        self.next_look = max(size + 1, math.ceil(round(size * self.growth, 9)))
