"""Compiled loops for the batch updates whose every step reads what the one before wrote.

Some detectors keep per-entity state that an event both reads and changes (an entity's
table row, its latest writes, its open label), so a batch of them cannot be one numpy
expression. Their batch updates run such stretches through a loop compiled by numba,
over numpy columns of the batch and the detector's own state arrays: the same
arithmetic on the same float64 values as ``update`` one at a time (numba keeps IEEE
semantics; fast-math is off), so the results are equal, not close. The compiled code is
cached on disk beside the module (numba's ``cache=True``), so only the first call after a
change pays the compilation. numba checks only the file that defines a loop, not those of
the loops it calls: ``./deploy/run setup`` empties the cache when any file with a
compiled loop changed.

Calling compiled code from Python costs about half a microsecond, more than a short
Python function, so it pays only with the loop inside: ``update`` keeps its Python path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = ["compiled", "compiled_functions"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Every compiled function, for ``compiled_functions``.
_COMPILED: list[Any] = []


def compiled(function: _F) -> _F:
    """``function`` compiled to machine code by numba, without the Python interpreter
    (``nopython``), the compilation cached on disk."""
    dispatcher = numba.njit(cache=True)(function)
    _COMPILED.append(dispatcher)
    return dispatcher  # type: ignore[return-value]


def compiled_functions() -> tuple[Any, ...]:
    """The numba dispatchers ``compiled`` made so far (those of the modules imported),
    whose ``signatures`` list the argument types each was compiled for."""
    return tuple(_COMPILED)
