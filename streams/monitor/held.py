"""The label join's held predictions: parallel arrays in arrival order, not an object each.

Pure code. A ``HeldTable`` keeps what ``streams.monitor.label_join`` needs of each
prediction waiting for its label: its ``(role, request_id)`` key, its entity, version,
``predicted_at`` and output. Numbers live in numpy columns (``predicted_at``, the score,
role and version codes, whether the row is still held); the identifiers stay strings,
because a join must compare them exactly. Rows are appended in arrival order and a row
that leaves (joined, expired, evicted) is only marked gone; the columns are compacted when
they are full, so an insert costs O(1) amortised and the table holds at most
``2 * max_held`` rows. The numbers of the rows added last wait in a list until a read needs
them in the columns or the label join's batch ends (``flush``): a batch's predictions are
written one slice per column, not six numpy scalars each.

A checkpoint pickles only the held rows: the numeric columns as arrays, the identifiers as
two lists of strings, and the few outputs that are not a score. The key index and the
entity hashes are rebuilt at C speed on the first use after a load: 10,000 held
predictions restore in about a millisecond of CPU, and the index costs one or two more
when the model's next record comes.

Entities. A label without a held request is matched by entity: the table keeps each row's
``hash(entity_id)`` (rebuilt on load, since string hashes differ between processes) and
compares the strings of the rows whose hash matches, instead of a dict of lists per entity.

>>> table = HeldTable(max_held=2)
>>> table.add("r1", "u1", "live", "v1", 1_000, 0.25)
False
>>> table.add("r2", "u1", "live", "v1", 2_000, 0.75)
False
>>> len(table), ("live", "r1") in table, [h.request_id for h in table.of_entity("u1")]
(2, True, ['r1', 'r2'])
>>> table.add("r3", "u2", "live", "v1", 3_000, 0.5)  # r1, the oldest, goes
True
>>> list(table), table.pop_older_than(2_500)
([('live', 'r2'), ('live', 'r3')], 1)
>>> table.release(("live", "r3")).predicted_at, len(table)
(3000, 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

__all__ = ["ROLES", "HeldKey", "HeldOutput", "HeldPrediction", "HeldTable"]

ROLES = ("live", "fallback", "shadow")
_ROLE_CODES = {role: code for code, role in enumerate(ROLES)}
# Columns are allocated for this many rows first, then doubled up to 2 * max_held.
_FIRST_CAPACITY = 64

HeldKey = tuple[str, str]  # (role, request_id)
# What the join keeps of an output: a score, the class probabilities, or the first k
# ranked items.
HeldOutput = float | dict[str, float] | tuple[str, ...]


class HeldPrediction(NamedTuple):
    """What the join keeps of a prediction: enough to score it, not its features."""

    request_id: str
    entity_id: str
    role: str
    version: str
    predicted_at: int
    output: HeldOutput


_new_held = tuple.__new__


class HeldTable:
    """At most ``max_held`` predictions waiting for their label, in arrival order."""

    def __init__(self, max_held: int) -> None:
        self.max_held = max_held
        self._allocate(0)

    def _allocate(self, rows: int) -> None:
        """Empty columns with room for at least ``rows`` rows (and no more than needed)."""
        capacity = _FIRST_CAPACITY
        while capacity < min(2 * rows, 2 * self.max_held):
            capacity *= 2
        capacity = max(min(capacity, 2 * self.max_held), rows, 1)
        self._at: npt.NDArray[np.int64] = np.zeros(capacity, np.int64)
        self._score: npt.NDArray[np.float64] = np.zeros(capacity, np.float64)
        self._role: npt.NDArray[np.int8] = np.zeros(capacity, np.int8)
        self._version: npt.NDArray[np.int32] = np.zeros(capacity, np.int32)
        self._live: npt.NDArray[np.bool_] = np.zeros(capacity, np.bool_)
        self._entity_hash: npt.NDArray[np.int64] = np.zeros(capacity, np.int64)
        self._request_ids: list[str] = []
        self._entity_ids: list[str] = []
        # The last rows added, not yet in the numeric columns (but in ``_live``): (time,
        # score, role code, version code, entity hash) each. ``flush`` writes them in one
        # slice per column.
        self._pending: list[tuple[int, float, int, int, int]] = []
        # Row -> output, for the outputs that are not a score (their score column is NaN).
        self._other: dict[int, HeldOutput] = {}
        self._versions: list[str] = []
        self._version_codes: dict[str, int] = {}
        # Per role code: request_id -> row. String keys, not (role, request_id) tuples:
        # rebuilding them costs a fraction as much. None: not built since the last load.
        self._index: list[dict[str, int]] | None = [{} for _ in ROLES]
        self._head = 0  # rows before it are gone
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        role, request_id = cast(HeldKey, key)
        return request_id in self._indexed()[_ROLE_CODES[role]]

    def __iter__(self) -> Iterator[HeldKey]:
        """The held keys, in arrival order."""
        self.flush()
        live = np.flatnonzero(self._live[self._head : len(self._request_ids)]) + self._head
        for row in live.tolist():
            yield ROLES[self._role[row]], self._request_ids[row]

    def get(self, key: HeldKey) -> HeldPrediction | None:
        row = self._indexed()[_ROLE_CODES[key[0]]].get(key[1])
        return None if row is None else self._row(row)

    def add(
        self,
        request_id: str,
        entity_id: str,
        role: str,
        version: str,
        predicted_at: int,
        output: HeldOutput,
    ) -> bool:
        """Hold a prediction whose key is not held (the fields of a ``HeldPrediction``,
        not one: the join has them apart); when ``max_held`` are held, the oldest goes
        first. Whether one went."""
        evicted = self._count >= self.max_held
        if evicted:
            self._drop(self._oldest())
        row = len(self._request_ids)
        if row == len(self._at):
            self._compact()
            row = len(self._request_ids)
        index = self._indexed()
        code = self._version_codes.get(version)
        if code is None:
            code = self._version_codes[version] = len(self._versions)
            self._versions.append(version)
        if isinstance(output, float):
            score = output
        else:
            score = math.nan
            self._other[row] = output
        role_code = _ROLE_CODES[role]
        self._pending.append((predicted_at, score, role_code, code, hash(entity_id)))
        self._live[row] = True
        self._request_ids.append(request_id)
        self._entity_ids.append(entity_id)
        index[role_code][request_id] = row
        self._count += 1
        return evicted

    def flush(self) -> None:
        """Write the rows added since the last flush into the numeric columns (every read
        that needs them does; the label join does after each batch, so that a table's
        state does not depend on where batches were cut)."""
        pending = self._pending
        if not pending:
            return
        stop = len(self._request_ids)
        start = stop - len(pending)
        if len(pending) == 1:
            row = start
            self._at[row], self._score[row], self._role[row], self._version[row], h = pending[0]
            self._entity_hash[row] = h
        else:
            at, score, role, version, entity_hash = zip(*pending, strict=True)
            self._at[start:stop] = at
            self._score[start:stop] = score
            self._role[start:stop] = role
            self._version[start:stop] = version
            self._entity_hash[start:stop] = entity_hash
        pending.clear()

    def of_request(self, request_id: str) -> list[HeldPrediction]:
        """The held predictions of ``request_id``, one per role at most, in ``ROLES`` order."""
        return [
            self._row(row)
            for index in self._indexed()
            if (row := index.get(request_id)) is not None
        ]

    def release(self, key: HeldKey) -> HeldPrediction:
        """The held prediction of ``key``, no longer held."""
        row = self._indexed()[_ROLE_CODES[key[0]]][key[1]]
        held = self._row(row)
        self._drop(row)
        return held

    def discard(self, key: HeldKey) -> None:
        """``release``, for a caller that has the prediction already."""
        self._drop(self._indexed()[_ROLE_CODES[key[0]]][key[1]])

    def pop_older_than(self, oldest_kept: int) -> int:
        """Drop, in arrival order, the held predictions made before ``oldest_kept`` up to
        the first one made at or after it; how many."""
        dropped = 0
        while self._count:
            row = self._oldest()
            if row >= len(self._request_ids) - len(self._pending):
                self.flush()
            if self._at.item(row) >= oldest_kept:
                break
            self._drop(row)
            dropped += 1
        return dropped

    def of_entity(self, entity_id: str) -> list[HeldPrediction]:
        """The held predictions of ``entity_id``, in arrival order."""
        end = len(self._request_ids)
        if not self._count:
            return []
        self._indexed()
        self.flush()
        candidates = self._live[self._head : end] & (
            self._entity_hash[self._head : end] == hash(entity_id)
        )
        rows = (np.flatnonzero(candidates) + self._head).tolist()
        return [self._row(row) for row in rows if self._entity_ids[row] == entity_id]

    def _row(self, row: int) -> HeldPrediction:
        pending = row - (len(self._request_ids) - len(self._pending))
        if pending >= 0:
            at, score, role, version, _ = self._pending[pending]
        else:
            # ``item`` gives the Python number at half the cost of indexing and converting.
            at, score = self._at.item(row), self._score.item(row)
            role, version = self._role.item(row), self._version.item(row)
        output = self._other.get(row)
        # The tuple directly: a NamedTuple's own constructor costs twice as much, and a
        # label makes one per prediction it scores.
        return _new_held(
            HeldPrediction,
            (
                self._request_ids[row],
                self._entity_ids[row],
                ROLES[role],
                self._versions[version],
                at,
                score if output is None else output,
            ),
        )

    def _oldest(self) -> int:
        head = self._head
        while not self._live[head]:
            head += 1
        self._head = head
        return head

    def _drop(self, row: int) -> None:
        self._live[row] = False
        pending = row - (len(self._request_ids) - len(self._pending))
        role = self._pending[pending][2] if pending >= 0 else self._role.item(row)
        del self._indexed()[role][self._request_ids[row]]
        self._other.pop(row, None)
        self._count -= 1

    def _compact(self) -> None:
        """Move the held rows to the front of columns sized for them."""
        self._load(self._held_rows())

    def _held_rows(self) -> dict[str, Any]:
        self.flush()
        rows = np.flatnonzero(self._live[: len(self._request_ids)])
        versions = np.unique(self._version[rows])
        recode = np.zeros(len(self._versions), np.int32)
        recode[versions] = np.arange(len(versions), dtype=np.int32)
        held = rows.tolist()
        at = self._at[rows]
        # Times as offsets from the earliest, and version codes, in the narrowest integer
        # type that holds them: held rows span at most the TTL, a few versions.
        base = int(at.min()) if len(at) else 0
        offsets = at - base
        return {
            "max_held": self.max_held,
            "base_ms": base,
            "predicted_at": offsets.astype(np.min_scalar_type(int(offsets.max(initial=0)))),
            "score": self._score[rows],
            "role": self._role[rows],
            "version": recode[self._version[rows]].astype(np.min_scalar_type(len(versions))),
            "versions": [self._versions[v] for v in versions.tolist()],
            "request_ids": list(map(self._request_ids.__getitem__, held)),
            "entity_ids": list(map(self._entity_ids.__getitem__, held)),
            # Every row with another output is held: a row that leaves drops its output.
            "other": {int(np.searchsorted(rows, r)): o for r, o in self._other.items()},
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.max_held = state["max_held"]
        count = len(state["request_ids"])
        self._allocate(count)
        self._at[:count] = state["predicted_at"]
        self._at[:count] += state["base_ms"]
        self._score[:count] = state["score"]
        self._role[:count] = state["role"]
        self._version[:count] = state["version"]
        self._live[:count] = True
        self._request_ids = state["request_ids"]
        self._entity_ids = state["entity_ids"]
        self._other = state["other"]
        self._versions = state["versions"]
        self._version_codes = {v: code for code, v in enumerate(self._versions)}
        self._index = None
        self._count = count

    def _indexed(self) -> list[dict[str, int]]:
        """The key index, and the entity hashes, built on first use after a load: a
        restored model that sees no record pays nothing for them (1 to 2 ms at 10,000)."""
        if self._index is not None:
            return self._index
        count = len(self._request_ids)
        self._entity_hash[:count] = np.fromiter(map(hash, self._entity_ids), np.int64, count)
        codes = self._role[:count]
        self._index = []
        for code in range(len(ROLES)):
            rows = np.flatnonzero(codes == code).tolist()
            keys = map(self._request_ids.__getitem__, rows)
            self._index.append(dict(zip(keys, rows, strict=True)))
        return self._index

    def __getstate__(self) -> dict[str, Any]:
        return self._held_rows()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._load(state)
