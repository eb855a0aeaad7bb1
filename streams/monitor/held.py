"""The label join's held predictions: parallel arrays in arrival order, not an object each.

Pure code. A ``HeldTable`` keeps what ``streams.monitor.label_join`` needs of each
prediction waiting for its label: its ``(role, request)`` key, its entity, version,
``predicted_at`` and output, all in numpy columns (whether the row is still held too).
Rows are appended in arrival order and a row that leaves (joined, expired, evicted) is
only marked gone; the columns are compacted when they are full, so an insert costs O(1)
amortised and the table holds at most ``max_held + max_held // 4`` rows. The numbers of
the rows added last wait in a list until a read needs them in the columns or the label
join's batch ends (``flush``): a batch's predictions are written one slice per column, not
seven numpy scalars each. A batch's common records (``join_run``: predictions of scores,
labels by request) go through a compiled loop that holds, expires and matches rows in the
columns and the key index directly, as the Python one by one would, and stops where the
label join's Python takes over.
A lookup by entity (``of_entity``) reads the rows sorted by entity hash, sorted on the
first lookup and again once the rows added since are many, and scans only those.

Identifiers. The request and entity ids are held as 64-bit hashes (``request_hash``,
``entity_hash``), the same in every process, not as strings: 16 bytes a prediction instead
of about 125 for two short ids (and a dict entry each in the key index), and no Python
object each, which a full garbage collection would walk. A join
compares the hashes, so two ids with the same hash would be taken for one: a label looked
up among 10,000 held predictions finds a wrong one with a chance of about 10,000 in 2**64,
5e-16. Nothing downstream reads the ids: a label scores what it matched.

Sampling. A table holds the predictions of a hash sample of entities: those whose entity
hash is below ``limit``, at first every entity. When ``max_held`` rows are held and another
comes, the limit halves and the held rows at or above it leave, counted in ``unsampled``
with the predictions it leaves out; only when that would let go of none or all of them
(one entity fills the table) does the oldest row go instead, evicted. So a model
predicting faster than ``max_held`` per time to live keeps joining the labels of a
fraction of its entities, not the last few seconds of all of them. Sampling by entity
keeps an entity's predictions together, which a label naming only its entity needs (it
matches the entity's latest prediction), and draws the same entities as the leak watch,
whose hash this is. The limit never grows back: a prediction let go stays let go, so a
label finds its prediction held or knows from its entity's hash (``samples``) why not.

A checkpoint pickles only the held rows' columns and the few outputs that are not a score;
the key index (open addressing as ``KeyTable``'s, keys salted by role, but only the row
numbers: each key is read from its row) is rebuilt at C speed on the first use after a
load.

>>> table = HeldTable(max_held=2)
>>> r1, r2, r3 = (request_hash(r) for r in ("r1", "r2", "r3"))
>>> table.add(r1, entity_hash("u1"), "live", "v1", 1_000, 0.25)
False
>>> table.add(r2, entity_hash("u1"), "live", "v1", 2_000, 0.75)
False
>>> len(table), ("live", r1) in table, [h.predicted_at for h in table.of_entity("u1")]
(2, True, [1000, 2000])
>>> table.add(r3, entity_hash("u2"), "live", "v1", 3_000, 0.5)  # r1, the oldest, goes
True
>>> list(table) == [("live", r2), ("live", r3)], table.pop_older_than(2_500)
(True, 1)
>>> table.release(("live", r3)).predicted_at, len(table)
(3000, 0)
>>> table.fraction, table.samples(entity_hash("u1"))
(1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from detectors._batch import own_attribute_dict
from detectors._compiled import compiled
from detectors.leaks import events
from detectors.leaks._memory import KeyTable, probe, probe_compiled, vacate, vacate_compiled
from detectors.leaks.events import request_hash
from streams.monitor.label_wait import ARRIVED, CLOCK, CLOCKED, EARLY, MOST, SIZE

__all__ = [
    "EVERYTHING",
    "ROLES",
    "HeldKey",
    "HeldOutput",
    "HeldPrediction",
    "HeldTable",
    "entity_hash",
    "index_key",
    "index_keys",
    "request_hash",
]

ROLES = ("live", "fallback", "shadow")
_ROLE_CODES = {role: code for code, role in enumerate(ROLES)}
# A key of the index is the request's hash XOR its role's salt: the roles of one request
# are three keys (0 keeps the live key the request's hash).
_ROLE_SALTS = (0, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)


def index_key(role: int, request: int) -> int:
    """The index key of a role code and request hash (``index_keys`` of one)."""
    return request ^ _ROLE_SALTS[role]


def index_keys(
    roles: npt.NDArray[np.int8], requests: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    """The index key of each (role code, request hash)."""
    return requests ^ np.array(_ROLE_SALTS, np.uint64)[roles]


# The sample's limit while it holds every entity: above every 64-bit hash.
EVERYTHING = 1 << 64
# Columns are allocated for this many rows first, then doubled up to the bound. Full
# columns cost a compaction (a few dozen numpy calls, about 175 microseconds) and take
# the prediction that found them full off the compiled loop: at 64 rows, a table holding
# a dozen predictions compacted every 52 it held, 60 to 90 times in the replay
# benchmark's rounds. 256 rows are about 8 KB more than 64, and nothing at the cap.
_FIRST_CAPACITY = 256

# What ``HeldTable.join_run`` reads of each record of a run: a prediction's ``key`` is its
# index key, a label's its request's hash (``simple`` says whether it has one); ``entities``,
# ``roles`` and ``version_index`` (into ``versions``) are a prediction's.
KIND_PREDICTION, KIND_LABEL = 0, 1
# What a prediction of the run did (``JoinRun.outcome``; a label's is how many it matched):
# held or left out by the sample, its estimate inputs queued either way; a redelivery; late.
QUEUED, DUPLICATE, LATE = 0, -1, -2
# Why ``HeldTable.join_run`` stopped: at the end; before a prediction or a label the join's
# Python takes (a label: whether it is held, too); at a held label whose clock move the
# Python goes on from (its matches are to be looked up again); after a record that reached
# the report time; at a label the wait released that the join's Python takes.
STOP_END, STOP_PREDICTION, STOP_LABEL, STOP_HELD_LABEL, STOP_REPORT, STOP_RELEASED = range(6)
# ``join_run``'s ``counts``: the join's clock and counts.
NOW, EXPIRED, DUPLICATES, LABELS, JOINED, UNMATCHED, UNSAMPLED_LABELS = range(7)
COUNTS = ("now_ms", "expired", "duplicates", "labels", "joined", "unmatched", "unsampled_labels")
# ``join_run``'s report time while the join has none: its clock has not moved yet, and its
# first move (which sets the report time) is the Python's, so the loop stops before a
# prediction and before a label that matches held predictions. A model's labels read
# before any of its predictions (a backlog whose ground truth is read first) still go
# to the wait in the loop.
NO_REPORT = np.iinfo(np.int64).max


class JoinRun(NamedTuple):
    """A run of the label join's records as columns, for ``HeldTable.join_run``."""

    kinds: npt.NDArray[np.int8]
    at: npt.NDArray[np.int64]
    keys: npt.NDArray[np.uint64]
    simple: npt.NDArray[np.bool_]
    # A prediction's entity hash, and a label's (``label_wait.NO_ENTITY``: it names none).
    entities: npt.NDArray[np.uint64]
    roles: npt.NDArray[np.int8]
    version_index: npt.NDArray[np.intp]
    versions: list[str]
    scores: npt.NDArray[np.float64]
    # Written by ``join_run``: each record's outcome, and a label's matched rows.
    outcome: npt.NDArray[np.int64]
    matched: npt.NDArray[np.int64]


class Waiting(NamedTuple):
    """The label wait (``streams.monitor.label_wait``) as ``HeldTable.join_run`` adds and
    releases labels in it: the run's records before ``end`` are a batch's, those after it
    the labels waiting before the batch. ``heap``: ``LabelWait.columns``' arrays and
    table, labels by their number in the run. Written: ``fed``, the run's records the
    join took, in order, and ``by``, the record whose step let each through (a label
    released by a prediction or pushed out by a label), ``taken[0]`` of each."""

    end: int
    heap: tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
    ]
    fed: npt.NDArray[np.int64]
    by: npt.NDArray[np.int64]
    taken: npt.NDArray[np.int64]


class RunItems(NamedTuple):
    """What ``HeldTable.run_items`` gives the label join of the records a run took."""

    # Per record: its time, and how many held predictions it joined (a prediction: 0).
    at: list[int]
    joined: list[int]
    # Per stream: (role, version, low, high, pairs_low, pairs_high, at): its items are
    # ``low:high`` of the lists below, its pairs' delays ``pairs_low:pairs_high`` of
    # ``delays``, and ``at`` is its last item's time.
    streams: list[tuple[str, str, int, int, int, int, int]]
    # Per item: its record's number in the label join's batch, its score, and the run's
    # number of its label (-1: a held prediction's estimate input).
    numbers: list[int]
    outputs: list[float]
    labels: list[int]
    # Per pair: its label delay in seconds.
    delays: list[float]


_EMPTY = np.zeros(0, np.int64)


def no_wait(prediction_clock: float) -> Waiting:
    """No label waits: a label the join holds no prediction for joins none at once if
    the prediction clock (``LabelWait.prediction_clock``, then the run's predictions)
    reached its time, as the wait would release it; else it stops the run, for the wait.
    The loop moves the clock with each prediction (``clock_after``)."""
    table = np.zeros(MOST + 1, np.int64)
    if prediction_clock > -math.inf:
        table[CLOCK], table[CLOCKED] = int(prediction_clock), 1
    return Waiting(-1, (_EMPTY, _EMPTY, _EMPTY, table), _EMPTY, _EMPTY, _EMPTY)


def clock_after(wait: Waiting) -> float:
    """The prediction clock of ``no_wait``'s ``wait``, as the loop left it."""
    table = wait.heap[3]
    return int(table[CLOCK]) if table[CLOCKED] else -math.inf


HeldKey = tuple[str, int]  # (role, request_hash)
# What the join keeps of an output: a score, the class probabilities, or the first k
# ranked items.
HeldOutput = float | dict[str, float] | tuple[str, ...]


def entity_hash(entity_id: str) -> int:
    """An entity id's 64-bit hash, the same in every process: the leak watch's, whose
    cache of the entities seen last saves hashing one again."""
    return events.entity_hash(entity_id)


class HeldPrediction(NamedTuple):
    """What the join keeps of a prediction: enough to score it, not its features."""

    request: int  # request_hash of its request_id
    entity: int  # entity_hash of its entity_id
    role: str
    version: str
    predicted_at: int
    output: HeldOutput


_new_held = tuple.__new__


class HeldTable:
    """At most ``max_held`` predictions waiting for their label, in arrival order."""

    # The lists and dicts in slots, the numbers and arrays in the attribute dict, which the
    # garbage collector then stops tracking (``detectors._batch.own_attribute_dict``).
    __slots__ = ("__dict__", "_other", "_pending", "_per_role", "_version_codes", "_versions")

    def __init__(self, max_held: int) -> None:
        own_attribute_dict(self)
        self.max_held = max_held
        # The sample: a prediction is held only when its entity's hash is below ``limit``
        # (``EVERYTHING`` at first, halved when the table is full); ``unsampled`` counts
        # the predictions it left out or let go.
        self.limit = EVERYTHING
        self.unsampled = 0
        self._allocate(0)

    @property
    def fraction(self) -> float:
        """The fraction of entities whose predictions are held."""
        return self.limit / EVERYTHING

    def samples(self, entity: int) -> bool:
        """Whether the predictions of the entity of hash ``entity`` are held."""
        return entity < self.limit

    def _allocate(self, rows: int) -> None:
        """Empty columns with room for at least ``rows`` rows (and no more than needed)."""
        # A quarter of the bound as room beyond it: at the bound, a compaction comes every
        # max_held // 4 inserts or more, so an insert still costs O(1) amortised.
        most = self.max_held + max(self.max_held // 4, 1)
        capacity = _FIRST_CAPACITY
        while capacity < min(2 * rows, most):
            capacity *= 2
        capacity = max(min(capacity, most), rows, 1)
        self._at: npt.NDArray[np.int64] = np.zeros(capacity, np.int64)
        self._score: npt.NDArray[np.float64] = np.zeros(capacity, np.float64)
        # Each row's index key, its request hash salted by its role (which gives the hash
        # back), written at once: the index reads it for every row it holds.
        self._key: npt.NDArray[np.uint64] = np.zeros(capacity, np.uint64)
        self._entity: npt.NDArray[np.uint64] = np.zeros(capacity, np.uint64)
        self._role: npt.NDArray[np.int8] = np.zeros(capacity, np.int8)
        # Version codes in a byte while a model has at most 256 versions held (``_code``
        # widens the column for more).
        self._version: npt.NDArray[np.uint8 | np.int32] = np.zeros(capacity, np.uint8)
        self._live: npt.NDArray[np.bool_] = np.zeros(capacity, np.bool_)
        # Rows in use (held or gone) from the start of the columns.
        self._rows = 0
        # The last rows added, not yet in the numeric columns (but in ``_live``): (time,
        # score, role code, version code, request hash, entity hash) each. ``flush``
        # writes them in one slice per column.
        self._pending: list[tuple[int, float, int, int, int, int]] = []
        # Row -> output, for the outputs that are not a score (their score column is NaN).
        self._other: dict[int, HeldOutput] = {}
        self._versions: list[str] = []
        self._version_codes: dict[str, int] = {}
        # The key index: salted request hash -> row, in open addressing as ``KeyTable``'s
        # but only the rows (-1: empty), 4 bytes a slot instead of 12: a slot's key is read
        # from its row (``_key``). Built on first use after a load, at once after a compaction.
        self._slots: npt.NDArray[np.int32] | None = None
        # The rows by entity (``of_entity``): the entity hashes of the rows before
        # ``_by_entity_to`` sorted, with their rows, built on the first label that names
        # only its entity and again once the rows after it are many (None: not built).
        self._by_entity: tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]] | None = None
        self._by_entity_to = 0
        # Held rows per role code: a label looks up only the roles some prediction holds.
        self._per_role = [0] * len(ROLES)
        self._head = 0  # rows before it are gone
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        role, request = cast(HeldKey, key)
        return self._find_key(request ^ _ROLE_SALTS[_ROLE_CODES[role]]) >= 0

    def __iter__(self) -> Iterator[HeldKey]:
        """The held keys, in arrival order."""
        self.flush()
        live = np.flatnonzero(self._live[self._head : self._rows]) + self._head
        for row in live.tolist():
            role = self._role.item(row)
            yield ROLES[role], self._key.item(row) ^ _ROLE_SALTS[role]

    def get(self, key: HeldKey) -> HeldPrediction | None:
        row = self._find(key)
        return None if row < 0 else self._row(row)

    def vacancy(self, role: str, request: int) -> int:
        """The index slot a new prediction of ``(role, request)`` would take, -1 when one
        is held: a caller that goes on to ``add`` it passes the slot, one probe for both."""
        slot, row = self._probe(request ^ _ROLE_SALTS[_ROLE_CODES[role]])
        return -1 if row >= 0 else slot

    def add(
        self,
        request: int,
        entity: int,
        role: str,
        version: str,
        predicted_at: int,
        output: HeldOutput,
        slot: int = -1,
    ) -> bool:
        """Hold a prediction whose key is not held (the fields of a ``HeldPrediction``,
        not one: the join has them apart) if its entity is in the sample; when
        ``max_held`` are held, the sample halves first, or the oldest goes (``_make_room``).
        ``slot``: what ``vacancy`` gave for its key since the table last changed (-1: not
        probed). Whether the oldest went."""
        if entity >= self.limit:
            self.unsampled += 1
            return False
        evicted = False
        if self._count >= self.max_held:
            evicted = self._make_room()
            slot = -1  # rows left the index: the slot may have moved
        if entity >= self.limit:
            self.unsampled += 1
            return False
        if self._rows == len(self._at):
            self._compact()
            slot = -1  # a new index
        row = self._rows
        role_code = _ROLE_CODES[role]
        key = request ^ _ROLE_SALTS[role_code]
        if slot < 0:
            slot = self._probe(key)[0]
        self._key[row] = key
        code = self._version_codes.get(version)
        if code is None:
            code = self._version_codes[version] = len(self._versions)
            self._versions.append(version)
            self._widen()
        if isinstance(output, float):
            score = output
        else:
            score = math.nan
            self._other[row] = output
        self._pending.append((predicted_at, score, role_code, code, request, entity))
        self._live[row] = True
        self._rows += 1
        self._indexed()[slot] = row
        self._per_role[role_code] += 1
        self._count += 1
        return evicted

    def join_run(
        self,
        run: JoinRun,
        start: int,
        counts: npt.NDArray[np.int64],
        streams: Iterable[tuple[str, str]],
        ttl_ms: int,
        next_report_ms: int,
        wait: Waiting,
    ) -> tuple[int, int, int]:
        """The label join's common records of ``run`` from ``start`` on, one by one in a
        compiled loop (``_join``), up to the first that needs the join's Python: where
        it stopped, why (``STOP_*``) and, for ``STOP_RELEASED``, the label released.
        ``counts``: the join's clock and counts (``COUNTS``), read and written;
        ``streams``: the (role, version) of the join's streams; ``wait``: the label wait,
        which labels not held go to and predictions release from (``no_wait``: none
        waits). What each record did is in ``run.outcome`` and ``run.matched``."""
        self.flush()
        if self._slots is None and not self._count and next_report_ms == NO_REPORT:
            # Nothing held, nothing indexed, and no report time: the loop only looks the
            # labels up (it holds nothing until the clock moves), in an index of nothing
            # that is not kept, so that the table stays unindexed, as the join's Python
            # leaves it one record at a time.
            slots = KeyTable(len(self._at)).rows
        else:
            slots = self._indexed()
        codes = self._version_codes
        versions = np.array([codes.get(v, -1) for v in run.versions], np.int64)
        known = np.zeros((len(ROLES), max(len(self._versions), 1)), np.bool_)
        for role, version in streams:
            code = codes.get(version)
            if code is not None:
                known[_ROLE_CODES[role], code] = True
        table = np.array(
            [self._rows, self._head, self._count, *self._per_role, self.unsampled], np.int64
        )
        everything = self.limit == EVERYTHING
        stop, why, released = _join(
            (
                run.kinds,
                run.at,
                run.keys,
                run.entities,
                run.roles,
                versions[run.version_index] if len(versions) else run.version_index,
                run.simple,
                run.scores,
                run.outcome,
                run.matched,
            ),
            start,
            (
                slots,
                self._key,
                self._at,
                self._score,
                self._entity,
                self._role,
                self._version,
                self._live,
                table,
            ),
            (
                counts,
                known,
                ttl_ms,
                next_report_ms,
                np.uint64(0 if everything else self.limit),
                everything,
                self.max_held,
            ),
            (wait.end, *wait.heap, wait.fed, wait.by, wait.taken),
        )
        self._rows, self._head, self._count = (int(x) for x in table[:3])
        self._per_role = table[3:6].tolist()
        self.unsampled = int(table[6])
        if self._other:
            # The rows the loop let go of keep their other output until here.
            live = self._live
            for row in [row for row in self._other if not live.item(row)]:
                del self._other[row]
        return int(stop), int(why), int(released)

    def flush(self) -> None:
        """Write the rows added since the last flush into the numeric columns (every read
        that needs them does; the label join does after each batch, so that a table's
        state does not depend on where batches were cut)."""
        pending = self._pending
        if not pending:
            return
        stop = self._rows
        start = stop - len(pending)
        if len(pending) == 1:
            row = start
            self._at[row], self._score[row], self._role[row], self._version[row], _, e = pending[0]
            self._entity[row] = e
        else:
            at, score, role, version, _, entity = zip(*pending, strict=True)
            self._at[start:stop] = at
            self._score[start:stop] = score
            self._role[start:stop] = role
            self._version[start:stop] = version
            self._entity[start:stop] = entity
        pending.clear()

    def of_request(self, request_id: str) -> list[HeldPrediction]:
        """The held predictions of ``request_id``, one per role at most, in ``ROLES`` order."""
        request = request_hash(request_id)
        return [
            self._row(row)
            for salt, held in zip(_ROLE_SALTS, self._per_role, strict=True)
            if held and (row := self._find_key(request ^ salt)) >= 0
        ]

    def release(self, key: HeldKey) -> HeldPrediction:
        """The held prediction of ``key``, no longer held."""
        held = self._row(self._find(key))
        self.discard(key)
        return held

    def discard(self, key: HeldKey) -> None:
        """``release``, for a caller that has the prediction already."""
        role = _ROLE_CODES[key[0]]
        slot, row = self._probe(key[1] ^ _ROLE_SALTS[role])
        self._drop(row, slot, role)

    def pop_older_than(self, oldest_kept: int) -> int:
        """Drop, in arrival order, the held predictions made before ``oldest_kept`` up to
        the first one made at or after it; how many."""
        dropped = 0
        while self._count:
            row = self._oldest()
            if row >= self._rows - len(self._pending):
                self.flush()
            if self._at.item(row) >= oldest_kept:
                break
            self._drop_row(row)
            dropped += 1
        return dropped

    def of_entity(self, entity_id: str) -> list[HeldPrediction]:
        """The held predictions of ``entity_id``, in arrival order."""
        return [self._row(row) for row in self._entity_rows(entity_hash(entity_id)).tolist()]

    def latest_of_entity(self, entity_id: str, before: int) -> list[HeldPrediction]:
        """Per role, the latest held prediction of ``entity_id`` made at or before
        ``before`` (the later-held of equal times), in the order of each role's first
        such prediction: what a label naming only its entity matches. Only those are
        read out of the columns, not the entity's every held prediction (hundreds when a
        model predicts for few entities)."""
        entity = entity_hash(entity_id)
        if not self.samples(entity):
            # The sample holds none of the entity's predictions: no lookup (nor the index
            # it would sort), as the label join's compiled loop finds the same.
            return []
        rows = self._entity_rows(entity)
        rows = rows[self._at[rows] <= before]
        if not len(rows):
            return []
        roles = self._role[rows]
        codes, first = np.unique(roles, return_index=True)
        found = []
        for role in codes[np.argsort(first)].tolist():
            mine = rows[roles == role]
            made = self._at[mine]
            # The last of the latest: a later row of an equal time replaces an earlier.
            found.append(self._row(int(mine[len(made) - 1 - int(np.argmax(made[::-1]))])))
        return found

    def _entity_rows(self, hashed: int) -> npt.NDArray[np.intp]:
        """The held rows of the entity whose hash is ``hashed``, in arrival order: those of
        the rows sorted by entity (a binary search), then those of the rows added since."""
        if not self._count:
            return np.zeros(0, np.intp)
        self.flush()
        entity = np.uint64(hashed)
        end = self._rows
        # Sorted again once the rows added since are a quarter of the sorted ones: a
        # lookup's scan of them stays short, and the sort's cost is spread over as many
        # inserts.
        if self._by_entity is None or end - self._by_entity_to > max(64, self._by_entity_to // 4):
            rows = np.flatnonzero(self._live[self._head : end]) + self._head
            order = np.argsort(self._entity[rows], kind="stable")
            self._by_entity = self._entity[rows][order], rows[order]
            self._by_entity_to = end
        entities, rows = self._by_entity
        live = self._live
        sorted_rows = rows[entities.searchsorted(entity) : entities.searchsorted(entity, "right")]
        since = self._by_entity_to
        added = np.flatnonzero(self._entity[since:end] == entity) + since
        found = np.concatenate((sorted_rows, added))
        return found[live[found]]

    def _find(self, key: HeldKey) -> int:
        role, request = key
        return self._find_key(request ^ _ROLE_SALTS[_ROLE_CODES[role]])

    def _fields(self, row: int) -> tuple[int, float, int, int, int, int]:
        """A row's time, score, role and version codes, request and entity hashes."""
        pending = row - (self._rows - len(self._pending))
        if pending >= 0:
            return self._pending[pending]
        # ``item`` gives the Python number at half the cost of indexing and converting.
        role = self._role.item(row)
        return (
            self._at.item(row),
            self._score.item(row),
            role,
            self._version.item(row),
            self._key.item(row) ^ _ROLE_SALTS[role],
            self._entity.item(row),
        )

    def _row(self, row: int) -> HeldPrediction:
        at, score, role, version, request, entity = self._fields(row)
        output = self._other.get(row)
        # The tuple directly: a NamedTuple's own constructor costs twice as much, and a
        # label makes one per prediction it scores.
        return _new_held(
            HeldPrediction,
            (
                request,
                entity,
                ROLES[role],
                self._versions[version],
                at,
                score if output is None else output,
            ),
        )

    def _make_room(self) -> bool:
        """Halve the sample, letting go of the held rows at or above the new limit, when
        held rows lie on both sides of it; else (all held rows on one side, as when one
        entity fills the table) evict the oldest row. Whether the oldest went.

        Halving only when rows stay keeps the table from emptying at once, and the limit
        from falling to 0 (which would hold nothing ever again)."""
        self.flush()
        rows = np.flatnonzero(self._live[self._head : self._rows]) + self._head
        entity = self._entity[rows]
        half = self.limit // 2
        if int(entity.min()) < half <= int(entity.max()):
            self.limit = half
            out = rows[entity >= np.uint64(half)]
            self._live[out] = False
            for row in out.tolist():
                self._other.pop(row, None)
            for role, dropped in enumerate(np.bincount(self._role[out], minlength=len(ROLES))):
                self._per_role[role] -= int(dropped)
            self._count -= len(out)
            self.unsampled += len(out)
            self._compact()
            return False
        self._drop_row(self._oldest())
        return True

    def _widen(self) -> None:
        """Widen the version column when a code no longer fits it."""
        if len(self._versions) > 256 and self._version.dtype == np.uint8:
            self._version = self._version.astype(np.int32)

    def _oldest(self) -> int:
        head = self._head
        while not self._live[head]:
            head += 1
        self._head = head
        return head

    def _drop_row(self, row: int) -> None:
        _, _, role, _, request, _ = self._fields(row)
        self._drop(row, self._probe(request ^ _ROLE_SALTS[role])[0], role)

    def _drop(self, row: int, slot: int, role: int) -> None:
        """Drop ``row``, whose index slot is ``slot`` and role code ``role``."""
        self._live[row] = False
        self._vacate(slot)
        self._other.pop(row, None)
        self._per_role[role] -= 1
        self._count -= 1

    def _compact(self, room: int = 0) -> None:
        """Move the held rows to the front of columns sized for them and ``room`` more,
        and index them again at once: the compiled run indexes the table at its start, so
        an index left to its next use would be built or not depending on where batches
        were cut."""
        self._load(self._held_rows(), room)
        self._indexed()

    def _held_rows(self) -> dict[str, Any]:
        self.flush()
        rows = np.flatnonzero(self._live[: self._rows])
        versions = np.unique(self._version[rows])
        recode = np.zeros(len(self._versions), np.int32)
        recode[versions] = np.arange(len(versions), dtype=np.int32)
        at = self._at[rows]
        # Times as offsets from the earliest, and version codes, in the narrowest integer
        # type that holds them: held rows span at most the TTL, a few versions.
        base = int(at.min()) if len(at) else 0
        offsets = at - base
        return {
            "max_held": self.max_held,
            "limit": self.limit,
            "unsampled": self.unsampled,
            "base_ms": base,
            "predicted_at": offsets.astype(np.min_scalar_type(int(offsets.max(initial=0)))),
            "score": self._score[rows],
            "role": self._role[rows],
            "version": recode[self._version[rows]].astype(np.min_scalar_type(len(versions))),
            "versions": [self._versions[v] for v in versions.tolist()],
            # Salting again takes the salt off (XOR).
            "request": index_keys(self._role[rows], self._key[rows]),
            "entity": self._entity[rows],
            # Every row with another output is held: a row that leaves drops its output.
            "other": {int(np.searchsorted(rows, r)): o for r, o in self._other.items()},
        }

    def _load(self, state: dict[str, Any], room: int = 0) -> None:
        self.max_held = state["max_held"]
        self.limit = state["limit"]
        self.unsampled = state["unsampled"]
        count = len(state["request"])
        self._allocate(count + room)
        self._versions = state["versions"]
        self._widen()
        self._at[:count] = state["predicted_at"]
        self._at[:count] += state["base_ms"]
        self._score[:count] = state["score"]
        self._role[:count] = state["role"]
        self._version[:count] = state["version"]
        self._key[:count] = index_keys(state["role"], state["request"])
        self._entity[:count] = state["entity"]
        self._live[:count] = True
        self._rows = count
        self._other = state["other"]
        self._version_codes = {v: code for code, v in enumerate(self._versions)}
        self._slots = None
        self._per_role = np.bincount(state["role"], minlength=len(ROLES)).tolist()
        self._count = count

    def _indexed(self) -> npt.NDArray[np.int32]:
        """The key index's slots, built on first use after a load (at C speed, as
        ``KeyTable.of`` places them): a restored model that sees no record pays nothing for
        it."""
        if self._slots is not None:
            return self._slots
        # The held rows (after a load or a compaction, every row).
        rows = np.flatnonzero(self._live[: self._rows])
        self._slots = KeyTable.of(self._key[rows], rows, len(self._at)).rows
        return self._slots

    def _probe(self, key: int) -> tuple[int, int]:
        """The key's slot and row; if absent, the empty slot where it would go and -1."""
        slots = self._slots
        if slots is None:
            slots = self._indexed()
        return probe(slots, self._key, key, keyed_by_row=True)

    def _find_key(self, key: int) -> int:
        return self._probe(key)[1]

    def _vacate(self, hole: int) -> None:
        """Forget the key in slot ``hole``."""
        vacate(self._indexed(), self._key, hole, keyed_by_row=True)

    def __getstate__(self) -> dict[str, Any]:
        return self._held_rows()

    def run_items(self, run: JoinRun, fed: npt.NDArray[np.int64], first: int) -> RunItems:
        """What the records ``fed`` of ``run`` (numbers, in the order ``join_run`` took
        them; ``first``: the first one's number in the label join's batch) give the label
        join's streams, after ``join_run`` and before the table changes again: each held
        prediction's estimate input and each joined label's pairs, in that order (a
        label's pairs in its matches'), grouped by stream in a compiled loop."""
        names = {name: n for n, name in enumerate(run.versions)}
        # A stream's number: its role code times ``width``, plus its version's place
        # among the run's versions, then among the table's others.
        recode = np.array(
            [names.get(v, len(names) + n) for n, v in enumerate(self._versions)], np.intp
        )
        width = len(names) + len(self._versions)
        at, joined, groups, numbers, outputs, labels, delays = _items(
            fed,
            first,
            (run.kinds, run.outcome, run.at, run.roles, run.version_index, run.scores),
            run.matched,
            (self._role, self._version, self._score, self._at),
            recode,
            width,
        )
        versions = [*run.versions, *self._versions]
        return RunItems(
            at.tolist(),
            joined.tolist(),
            [
                (ROLES[number // width], versions[number % width], *bounds)
                for number, *bounds in groups.tolist()
            ],
            numbers.tolist(),
            outputs.tolist(),
            labels.tolist(),
            delays.tolist(),
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        own_attribute_dict(self)
        self._load(state)


_SALTS = np.array(_ROLE_SALTS, np.uint64)
# ``_join``'s table: rows in use, the first maybe held, held rows, held per role code, and
# the sample's ``unsampled``.
_ROWS, _HEAD, _COUNT, _PER_ROLE, _UNSAMPLED = 0, 1, 2, 3, 6


# ``_join``'s arguments are four tuples. ``run``: the run's columns (``JoinRun``'s, the
# version codes the table's); ``held``: the key index's slots, the table's columns and
# its ``_ROWS``... array; ``join``: the join's counts (``COUNTS``), whether each (role
# code, version code) has a stream, its TTL and report time, the sample's limit (0 when
# it holds everything), whether it holds everything, and ``max_held``; ``wait``: the
# ``Waiting``'s end, heap arrays and table, ``fed``, ``by`` and ``taken``. Their items:
_KINDS, _AT, _KEYS, _ENTITIES, _ROLES, _VERSIONS, _SIMPLE, _SCORES, _OUTCOME, _MATCHED = range(10)
_SLOTS, _KEY_COLUMN, _AT_COLUMN, _SCORE_COLUMN, _ENTITY_COLUMN = range(5)
_ROLE_COLUMN, _VERSION_COLUMN, _LIVE, _TABLE = range(5, 9)
_COUNTS, _STREAMS, _TTL_MS, _NEXT_REPORT_MS, _LIMIT, _EVERYTHING, _MAX_HELD = range(7)
_END, _WAIT_AT, _ARRIVAL, _NUMBER, _CLOCK, _FED, _BY, _TAKEN = range(8)


@compiled
def _join(run: Any, start: int, held: Any, join: Any, wait: Any) -> tuple[int, int, int]:
    """``JoinBatch._prediction`` and ``_label`` of the records from ``start`` on, as they
    change the held table and the counts, while they need nothing else: a prediction of a
    score whose stream exists and that makes no room in the table, a label by request
    that matches held predictions of scores whose streams exist, or a label that matches
    none when the wait releases it (``_unmatched``). Stops before any other (``STOP_*``);
    after the clock move of one that needs more, which the Python's own clock move then
    finds done. Each prediction moves the wait's clock. With a wait (``end`` >= 0:
    ``Waiting``), it releases the labels it caught up with, joined here as ``_label``
    joins them (the first that needs more stops the loop, released, and the next call
    goes on releasing before its first record); a label not held goes to the wait
    (``wait_add``), and to the Python (``STOP_RELEASED``) if it, or the label it pushed
    out, joins now and needs it. Without (``no_wait``), a label not held joins now if the
    clock reached its time, else it stops the loop (``STOP_LABEL``)."""
    kinds, at, keys, entities = run[_KINDS], run[_AT], run[_KEYS], run[_ENTITIES]
    roles, versions, simple, scores = run[_ROLES], run[_VERSIONS], run[_SIMPLE], run[_SCORES]
    outcome, slots, key_column, live = run[_OUTCOME], held[_SLOTS], held[_KEY_COLUMN], held[_LIVE]
    table, counts, streams = held[_TABLE], join[_COUNTS], join[_STREAMS]
    ttl_ms, next_report_ms = join[_TTL_MS], join[_NEXT_REPORT_MS]
    end, clock, fed, fed_by, taken = wait[_END], wait[_CLOCK], wait[_FED], wait[_BY], wait[_TAKEN]
    waiting = end >= 0
    if not waiting:
        end = kinds.shape[0]
    elif start > 0:
        why, label = _release(start - 1, run, held, join, wait)
        if why != STOP_END:
            return start - 1, why, label
    capacity = held[_AT_COLUMN].shape[0]
    for i in range(start, end):
        when = at[i]
        if kinds[i] == KIND_PREDICTION:
            if (
                next_report_ms == NO_REPORT
                or not simple[i]
                or versions[i] < 0
                or not streams[roles[i], versions[i]]
            ):
                return i, STOP_PREDICTION, -1
            _advance(when, held, join)
            key = keys[i]
            slot, row = probe_compiled(slots, key_column, key, True)
            if row >= 0:
                counts[DUPLICATES] += 1
                outcome[i] = DUPLICATE
            elif counts[NOW] - when > ttl_ms:
                counts[EXPIRED] += 1
                outcome[i] = LATE
            elif not _samples(join, entities[i]):
                table[_UNSAMPLED] += 1
                outcome[i] = QUEUED
            elif table[_COUNT] >= join[_MAX_HELD] or table[_ROWS] == capacity:
                return i, STOP_PREDICTION, -1  # room made, or the columns compacted
            else:
                row = table[_ROWS]
                key_column[row] = key
                held[_AT_COLUMN][row] = when
                held[_SCORE_COLUMN][row] = scores[i]
                held[_ENTITY_COLUMN][row] = entities[i]
                held[_ROLE_COLUMN][row] = roles[i]
                held[_VERSION_COLUMN][row] = versions[i]
                live[row] = True
                slots[slot] = row
                table[_ROWS] += 1
                table[_PER_ROLE + roles[i]] += 1
                table[_COUNT] += 1
                outcome[i] = QUEUED
            if not clock[CLOCKED] or when > clock[CLOCK]:
                clock[CLOCK] = when
                clock[CLOCKED] = 1
            if waiting:
                _take(i, i, fed, fed_by, taken)
                if counts[NOW] < next_report_ms:
                    why, label = _release(i, run, held, join, wait)
                    if why != STOP_END:
                        return i, why, label
        else:
            # A label naming only its entity is never held: it goes through the wait.
            found = _match(keys[i], i, held, run[_MATCHED]) if simple[i] else 0
            if found == 0 and waiting:
                # The wait takes it, or it joins now (the predictions reached it), or it
                # pushes out the label that waited longest, which joins now: either is
                # the Python's unless it joins nothing here.
                out = wait_add(i, when, wait[_WAIT_AT], wait[_ARRIVAL], wait[_NUMBER], clock)
                if out == WAITS:
                    continue
                if out != JOINS_NOW or not _unmatched(i, run, held, join):
                    return i, STOP_RELEASED, i if out == JOINS_NOW else out
                _take(i, i, fed, fed_by, taken)
            elif found == 0:
                # With no label waiting, the wait releases it at once if the predictions
                # reached its time (``wait_add``); else it waits, which is the Python's.
                if not (_caught_up(clock, when) and _unmatched(i, run, held, join)):
                    return i, STOP_LABEL, -1
            else:
                why = _joined(i, found, run, held, join)
                if why != STOP_END:
                    return i, why, -1
                if waiting:
                    _take(i, i, fed, fed_by, taken)
        if counts[NOW] >= next_report_ms:
            return i, STOP_REPORT, -1
    return end, STOP_END, -1


@compiled
def _unmatched(i: int, run: Any, held: Any, join: Any) -> bool:
    """Label ``i``, which matches no held prediction, joined as ``JoinBatch._label`` joins
    it: the clock moves, and the label counts as unmatched, or as left out by the sample
    (its entity outside it); False, changing nothing, when it needs the Python: the
    join's clock has not moved yet, or it names only an entity the sample holds (it
    matches the entity's latest held prediction). ``_join``'s tuples."""
    if join[_NEXT_REPORT_MS] == NO_REPORT:
        return False
    # The sample holds no prediction of an entity it left out: a label naming only such
    # an entity matches nothing either.
    sampled = _samples(join, run[_ENTITIES][i])
    if sampled and not run[_SIMPLE][i]:
        return False
    _advance(run[_AT][i], held, join)
    counts = join[_COUNTS]
    counts[LABELS] += 1
    if sampled:
        counts[UNMATCHED] += 1
    else:
        counts[UNSAMPLED_LABELS] += 1
    run[_OUTCOME][i] = 0
    return True


@compiled
def _joined(i: int, found: int, run: Any, held: Any, join: Any) -> int:
    """Label ``i``, which matched ``found`` held rows before its clock move, joined with
    them as ``JoinBatch._label`` joins it; ``STOP_HELD_LABEL`` when it needs the Python
    (after the clock move). ``_join``'s tuples."""
    matched, score_column, streams = run[_MATCHED], held[_SCORE_COLUMN], join[_STREAMS]
    role_column, version_column = held[_ROLE_COLUMN], held[_VERSION_COLUMN]
    if join[_NEXT_REPORT_MS] == NO_REPORT:
        return STOP_HELD_LABEL
    if _advance(run[_AT][i], held, join):
        # What expired may be what it matched.
        found = _match(run[_KEYS][i], i, held, matched)
        if found == 0:
            return STOP_HELD_LABEL
    for j in range(found):
        row = matched[i, j]
        if np.isnan(score_column[row]) or not streams[role_column[row], version_column[row]]:
            return STOP_HELD_LABEL
    counts = join[_COUNTS]
    counts[LABELS] += 1
    for j in range(found):
        row = matched[i, j]
        slot, _ = probe_compiled(held[_SLOTS], held[_KEY_COLUMN], held[_KEY_COLUMN][row], True)
        _drop(row, slot, held)
        counts[JOINED] += 1
    run[_OUTCOME][i] = found
    return STOP_END


@compiled
def _release(by: int, run: Any, held: Any, join: Any, wait: Any) -> tuple[int, int]:
    """``LabelWait.advance``'s release after record ``by``: the labels the clock caught
    up with, oldest first, each joined as record ``by``'s until one stops the loop: why
    (``STOP_RELEASED``: the label is left to the Python; ``STOP_REPORT``: it reached the
    report time), and that label. ``_join``'s tuples."""
    wait_at, wait_arrival, wait_number = wait[_WAIT_AT], wait[_ARRIVAL], wait[_NUMBER]
    clock = wait[_CLOCK]
    while clock[SIZE] and clock[CLOCKED] and wait_at[0] <= clock[CLOCK]:
        label = _pop(wait_at, wait_arrival, wait_number, clock)
        found = _match(run[_KEYS][label], label, held, run[_MATCHED]) if run[_SIMPLE][label] else 0
        if found:
            if _joined(label, found, run, held, join) != STOP_END:
                return STOP_RELEASED, label
        elif not _unmatched(label, run, held, join):
            return STOP_RELEASED, label
        _take(label, by, wait[_FED], wait[_BY], wait[_TAKEN])
        if join[_COUNTS][NOW] >= join[_NEXT_REPORT_MS]:
            return STOP_REPORT, label
    return STOP_END, -1


@compiled
def _take(record: int, by: int, fed: Any, fed_by: Any, taken: Any) -> None:
    fed[taken[0]] = record
    fed_by[taken[0]] = by
    taken[0] += 1


# ``wait_add``: the label joins now (the predictions reached it), or it waits.
JOINS_NOW, WAITS = -1, -2


@compiled
def wait_add(
    number: int, label_at: int, wait_at: Any, wait_arrival: Any, wait_number: Any, wait: Any
) -> int:
    """``LabelWait.add`` of label ``number`` (its ``label_at``) in ``LabelWait.columns``'
    arrays: ``JOINS_NOW``, ``WAITS``, or the number of the label it pushed out."""
    if _caught_up(wait, label_at):
        return JOINS_NOW
    # heapq.heappush, so that the heap is the list's, entry for entry.
    pos = wait[SIZE]
    wait[SIZE] += 1
    arrival = wait[ARRIVED]
    wait[ARRIVED] += 1
    _sift_down(pos, label_at, arrival, number, wait_at, wait_arrival, wait_number)
    if wait[SIZE] <= wait[MOST]:
        return WAITS
    wait[EARLY] += 1
    return _pop(wait_at, wait_arrival, wait_number, wait)


@compiled
def _samples(join: Any, entity: np.uint64) -> bool:
    """``HeldTable.samples`` in ``_join``'s tuples: whether the sample holds the
    predictions of the entity of hash ``entity``."""
    return bool(join[_EVERYTHING]) or entity < join[_LIMIT]


@compiled
def _caught_up(wait: Any, label_at: int) -> bool:
    """Whether the prediction clock in the wait's table has reached ``label_at``: the
    wait releases such a label at once."""
    return bool(wait[CLOCKED]) and label_at <= wait[CLOCK]


@compiled
def _before(at: int, arrival: int, other_at: int, other_arrival: int) -> bool:
    return at < other_at or (at == other_at and arrival < other_arrival)


@compiled
def _pop(wait_at: Any, wait_arrival: Any, wait_number: Any, wait: Any) -> int:
    """heapq.heappop of the wait's heap (its ``_siftup``, then ``_siftdown``): the number
    of the label that waited first among the earliest."""
    last = wait[SIZE] - 1
    wait[SIZE] = last
    top = wait_number[0]
    if last == 0:
        return top
    at, arrival, number = wait_at[last], wait_arrival[last], wait_number[last]
    pos, child = 0, 1
    while child < last:
        right = child + 1
        if right < last and not _before(
            wait_at[child], wait_arrival[child], wait_at[right], wait_arrival[right]
        ):
            child = right
        wait_at[pos], wait_arrival[pos] = wait_at[child], wait_arrival[child]
        wait_number[pos] = wait_number[child]
        pos = child
        child = 2 * pos + 1
    _sift_down(pos, at, arrival, number, wait_at, wait_arrival, wait_number)
    return top


@compiled
def _sift_down(
    pos: int, at: int, arrival: int, number: int, wait_at: Any, wait_arrival: Any, wait_number: Any
) -> None:
    """heapq's ``_siftdown`` from the top: the entry placed at ``pos`` or above it."""
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _before(at, arrival, wait_at[parent], wait_arrival[parent]):
            break
        wait_at[pos], wait_arrival[pos] = wait_at[parent], wait_arrival[parent]
        wait_number[pos] = wait_number[parent]
        pos = parent
    wait_at[pos], wait_arrival[pos], wait_number[pos] = at, arrival, number


@compiled
def _advance(when: int, held: Any, join: Any) -> int:
    """``label_join._advance`` (the report time is set): the clock moved to ``when`` if
    it is newer, and ``pop_older_than`` its TTL before it; how many expired."""
    counts, table, live = join[_COUNTS], held[_TABLE], held[_LIVE]
    if when <= counts[NOW]:
        return 0
    counts[NOW] = when
    oldest_kept = when - join[_TTL_MS]
    dropped = 0
    while table[_COUNT]:
        head = table[_HEAD]
        while not live[head]:
            head += 1
        table[_HEAD] = head
        if held[_AT_COLUMN][head] >= oldest_kept:
            break
        slot, _ = probe_compiled(held[_SLOTS], held[_KEY_COLUMN], held[_KEY_COLUMN][head], True)
        _drop(head, slot, held)
        dropped += 1
    counts[EXPIRED] += dropped
    return dropped


@compiled
def _match(request: np.uint64, i: int, held: Any, matched: Any) -> int:
    """``of_request``: the rows held of the request, in ``ROLES`` order, into
    ``matched[i]``; how many."""
    found = 0
    for role in range(_SALTS.shape[0]):
        if held[_TABLE][_PER_ROLE + role] > 0:
            _, row = probe_compiled(held[_SLOTS], held[_KEY_COLUMN], request ^ _SALTS[role], True)
            if row >= 0:
                matched[i, found] = row
                found += 1
    return found


@compiled
def _drop(row: int, slot: Any, held: Any) -> None:
    """``HeldTable._drop`` (a row's other output goes after the loop)."""
    table = held[_TABLE]
    held[_LIVE][row] = False
    vacate_compiled(held[_SLOTS], held[_KEY_COLUMN], slot, True)
    table[_PER_ROLE + held[_ROLE_COLUMN][row]] -= 1
    table[_COUNT] -= 1


@compiled
def _items(
    fed: Any, first: int, run: Any, matched: Any, held: Any, recode: Any, width: int
) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """``HeldTable.run_items``' loop: ``run`` the run's kinds, outcomes, times, role
    codes, version indices and scores; ``held`` the table's role codes, version codes,
    scores and times. The items in record order, then stably by stream number (a counting
    sort); per stream: number, ``low``, ``high``, ``pairs_low``, ``pairs_high``, time."""
    kinds, outcome, at, roles, version_index, scores = run
    role_column, version_column, score_column, at_column = held
    count = fed.shape[0]
    most = 0
    for j in range(count):
        most += outcome[fed[j]] if kinds[fed[j]] == KIND_LABEL else 1
    stream = np.empty(most, np.int64)
    number = np.empty(most, np.int64)
    output = np.empty(most, np.float64)
    label = np.empty(most, np.int64)
    delay = np.empty(most, np.float64)
    times = np.empty(count, np.int64)
    joined = np.zeros(count, np.int64)
    n = 0
    for j in range(count):
        r = fed[j]
        times[j] = at[r]
        if kinds[r] == KIND_LABEL:
            joined[j] = outcome[r]
            for m in range(outcome[r]):
                row = matched[r, m]
                stream[n] = role_column[row] * width + recode[version_column[row]]
                number[n], output[n], label[n] = first + j, score_column[row], r
                delay[n] = (at[r] - at_column[row]) / 1000.0
                n += 1
        elif outcome[r] == QUEUED:
            stream[n] = roles[r] * width + version_index[r]
            number[n], output[n], label[n], delay[n] = first + j, scores[r], -1, np.nan
            n += 1
    streams = len(ROLES) * width
    items = np.zeros(streams + 1, np.int64)
    pairs = np.zeros(streams + 1, np.int64)
    for k in range(n):
        items[stream[k] + 1] += 1
        if label[k] >= 0:
            pairs[stream[k] + 1] += 1
    found = 0
    for s in range(streams):
        if items[s + 1]:
            found += 1
        items[s + 1] += items[s]
        pairs[s + 1] += pairs[s]
    groups = np.empty((found, 6), np.int64)
    g = 0
    for s in range(streams):
        if items[s + 1] > items[s]:
            groups[g, 0], groups[g, 1], groups[g, 2] = s, items[s], items[s + 1]
            groups[g, 3], groups[g, 4] = pairs[s], pairs[s + 1]
            g += 1
    numbers = np.empty(n, np.int64)
    outputs = np.empty(n, np.float64)
    labels = np.empty(n, np.int64)
    delays = np.empty(pairs[streams], np.float64)
    for k in range(n):
        s = stream[k]
        place = items[s]
        items[s] += 1
        numbers[place], outputs[place], labels[place] = number[k], output[k], label[k]
        if label[k] >= 0:
            delays[pairs[s]] = delay[k]
            pairs[s] += 1
    for g in range(found):
        groups[g, 5] = times[numbers[groups[g, 2] - 1] - first]
    return times, joined, groups, numbers, outputs, labels, delays
