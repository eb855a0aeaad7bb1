"""``PopularItems``: a "top N most popular" fallback that follows a file.

The file is a JSON array of item ids, most popular first, written by whatever batch job
counts popularity (write a temporary file and rename it over, so readers never see half).
The list is re-read when the file's modification time changes, checked at most every
``check_every_s``; if the new content is unreadable the last good list stays.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

_log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(list[str])


class PopularItems:
    """The ``n`` most popular item ids from ``path``.

    Raises ``ValueError`` at construction if the file cannot be read: a node should not
    start without its fallback.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n: int = 10,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if n < 1:
            raise ValueError(f"n={n}: must be at least 1")
        self.path = Path(path)
        self.n = n
        self.check_every_s = check_every_s
        self._clock = clock
        self._mtime_ns = -1
        self._checked_at = clock()
        self._items: list[str] = []
        if not self.refresh():
            raise ValueError(f"{self.path}: not a readable JSON array of item ids")

    def top(self, *args: object, **kwargs: object) -> list[str]:
        """The current top ``n``; ignores its arguments so it can stand in for any model."""
        if self._clock() - self._checked_at >= self.check_every_s:
            self.refresh()
        # A copy: every request shares this list, and one caller editing its answer (say,
        # to drop items the user has seen) must not change what the others are served.
        return list(self._items)

    def refresh(self) -> bool:
        """Re-read the file if it changed; ``False`` if it could not be read."""
        self._checked_at = self._clock()
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns == self._mtime_ns:
                return True
            items = _decoder.decode(self.path.read_bytes())
        except (OSError, msgspec.DecodeError) as error:
            _log.warning("popular items %s unreadable, keeping the last list: %s", self.path, error)
            return False
        self._items = items[: self.n]
        self._mtime_ns = mtime_ns
        return True
