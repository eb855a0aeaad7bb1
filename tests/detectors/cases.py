"""How the shared checks drive each detector.

Every group of detectors has a module ``tests/detectors/cases_<group>.py`` with a list
``CASES`` of ``DetectorCase``; ``test_shared_checks.py`` runs every case through the same
checks and fails if an exported detector has no case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BAD_SCALARS: tuple[Any, ...] = (float("nan"), float("inf"), float("-inf"), None)


@dataclasses.dataclass(frozen=True)
class DetectorCase:
    """One detector configuration and the inputs the shared checks feed it.

    Parameters
    ----------
    make
        Builds a fresh detector.
    stream
        ``stream(rng, n)`` returns ``n`` valid inputs for ``update``, stationary, so that
        the detector should stay silent on them after warm-up too.
    results
        The read-only result properties compared after pickling and cloning.
    alarm
        The name of the boolean property that must stay False during warm-up.
    warm_up
        How many updates the detector needs before it may raise ``alarm``.
    changed
        ``changed(rng, n)`` returns ``n`` inputs from a clearly different distribution;
        the warm-up check switches to it half-way through warm-up.
    bad_inputs
        Inputs that ``update`` must absorb without raising (NaN, inf, None, ...).
    """

    make: Callable[[], Any]
    stream: Callable[[np.random.Generator, int], Sequence[Any]]
    results: tuple[str, ...]
    alarm: str
    warm_up: int
    changed: Callable[[np.random.Generator, int], Sequence[Any]]
    bad_inputs: tuple[Any, ...] = BAD_SCALARS

    @property
    def name(self) -> str:
        return type(self.make()).__name__
