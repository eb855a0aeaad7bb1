"""The label-coincidence detector's batch update as one compiled loop (``detectors._compiled``).

``coincide`` reads a batch's events, parsed into columns, one after the other, doing on
the detector's state arrays what ``LabelCoincidentWrites.update`` does for each: mark a
write in its entity's control windows and open label, open a label, then judge the lag
bins due and test the features whose looks fall due. Every step is the same float64
operation on the same values, in the same order, as the Python path's, and tiles are
integers (``floor(at * inverse - phase)``: a time over a bin's width, shifted by its
entity's phase), so the state it leaves is equal, not close. The tests' exact tails are
``detectors._exact``'s compiled ones, which Python's ``_test`` calls too (``best_cell``).

What is rare, or needs Python objects, goes back to the caller, which handles it and calls
``coincide`` again: a write of a feature without a column yet (``NEW_COLUMN``: the caller
adds it, the event is read again), an event of a new entity when the table is full
(``ROOM``: the caller makes room, forgetting or moving entities or halving the sample, and
the event is read again), an event of times too large for integer tiles (``ALONE``: the
caller reads the event through ``update``'s code, and the loop goes on after it), a test
that flags its feature or whose next look the anytime correction's decimal rounding leaves
too close to call (``TESTS``: the caller runs it and the judgment's later ones), and a flag
(``FLAGS``: the caller keeps its evidence as it is after the event). Where to go on is in
``context``: the event, whether its lag bins are being judged, and how far the current
pass of judgments got.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._compiled import compiled
from detectors._exact import binomial_tail, hypergeom_tail
from detectors.leaks._memory import probe_compiled

# Kinds of events, per event of a batch.
MALFORMED, WRITE, LABEL = -1, 0, 1
# A write's column when its feature is not followed (``max_features`` reached).
IGNORED = -1
# Why ``coincide`` returned.
DONE, NEW_COLUMN, ALONE, TESTS, FLAGS, ROOM = 0, 1, 2, 3, 4, 5
# ``context``: the event to read, whether its lag bins are being judged (1) or it is still
# to read (0), the position and end of the current pass of judgments in ``work`` (no pass
# when the end is 0), whether a test of this event flagged, the tests due in ``tests``, and
# the entries of the heap of due times (``_judge_due``).
EVENT, JUDGING, PASS_AT, PASS_END, FLAGGED, DUE_TESTS, HEAP_SIZE = range(7)
CONTEXT = 7
# ``times``: the stream time (the latest ``written_at`` of a write), the latest time
# forgotten entities held, the earliest due time.
STREAM_TIME, FORGOTTEN_UNTIL, MIN_DUE = range(3)
# ``counters``: the key table's entities, events rejected, labels outside the sample,
# features followed, and the sample's bits.
TABLE_SIZE, REJECTED, UNSAMPLED, COLUMNS, SAMPLE_BITS = range(5)
# ``settings``: tolerance, lateness, how long an entity is kept, and the largest absolute
# time whose tiles an int64 holds exactly (``tile_limit``), then ``min_labels``, ``alpha``
# and the looks' growth.
TOLERANCE, LATENESS, TTL, TILE_LIMIT, MIN_LABELS, ALPHA, GROWTH = range(7)

# Shared with label_coincidence, which imports them: the bits of any writes in the low
# half, of writes of null in the high half; three control windows; the statistics' order.
_NULL_SHIFT = 16
_ANY_KIND = 0xFFFF
_NULL_KINDS = 0xFFFFFFFF
_WINDOWS = 3
_NEAR, _CONTROL, _NEAR_ONLY, _CONTROL_ONLY = 0, 1, 2, 3


def tile_limit(inverse: np.ndarray) -> float:
    """The largest absolute time whose tiles (``floor(at * inverse - phase)``) are below
    ``2**61`` in size, so that an int64 holds them and their differences exactly, as
    ``math.floor``'s Python integers are."""
    return 2.0**61 / float(np.max(inverse))


@compiled
def _spread(bins: int) -> int:
    return bins | (bins << _NULL_SHIFT)


@compiled
def _tile(at: float, inverse: float, phase: float) -> int:
    return int(np.floor(at * inverse - phase))


@compiled
def _lag_bits(lag: float, edges: np.ndarray) -> int:
    """``LabelCoincidentWrites._lag_bits``: the bit of the bin ``lag`` falls in, in both
    halves; 0 outside the bins."""
    last = edges.shape[0] - 1
    if not (edges[0] <= lag < edges[last]):
        return 0
    # bisect_right: the edges at or below the lag.
    found = 0
    while found < last + 1 and edges[found] <= lag:
        found += 1
    return _spread(1 << (found - 1))


@compiled
def _in_sample(key: np.uint64, bits: int) -> bool:
    # A shift by 64 is undefined in machine code: every key is in the sample of 0 bits.
    return bool(bits == 0 or (key >> np.uint64(64 - bits)) == np.uint64(0))


@compiled
def _advance(row, at, phase, latest, inverse, windows, latest_of, steps):
    """``_advance``: moves the entity's control windows on to those of a write at ``at``,
    later than its ``latest``."""
    if latest == -math.inf:
        windows[row] = 0
    else:
        steps[:] = 0
        moved = False
        for b in range(inverse.shape[0]):
            step = _tile(at, inverse[b], phase) - _tile(latest, inverse[b], phase)
            if step != 0:
                moved = True
            if step < _WINDOWS:
                steps[step] |= 1 << b
        if moved:
            # Window j takes window j - s of the bins that moved s windows on.
            for column in range(windows.shape[1]):
                for j in range(_WINDOWS - 1, -1, -1):
                    taken = 0
                    for s in range(j + 1):
                        taken |= int(windows[row, column, j - s]) & _spread(steps[s])
                    windows[row, column, j] = np.uint32(taken)
    latest_of[row] = at


@compiled
def _write(
    row, column, event_at, written_at, null, settings, edges, inverse,
    phase_of, latest_of, label_at_of, due_of, windows, near, control, last_write, last_null,
    steps,
):  # fmt: skip
    """``_mark`` of a write's ``event_at``, then of its ``written_at`` if it differs: the
    write in the entity's control windows and open label. (One call for both: a call
    counts a reference to each array it is given.)"""
    phase = phase_of[row]
    kinds = _NULL_KINDS if null else _ANY_KIND
    for mark in range(2):
        at = event_at if mark == 0 else written_at
        if mark == 1 and written_at == event_at:
            break
        latest = latest_of[row]
        if at > latest:
            _advance(row, at, phase, latest, inverse, windows, latest_of, steps)
            # The entity's windows are now this write's.
            latest = at
        steps[:] = 0
        for b in range(inverse.shape[0]):
            back = _tile(latest, inverse[b], phase) - _tile(at, inverse[b], phase)
            if 0 <= back < _WINDOWS:
                steps[back] |= 1 << b
        for back in range(_WINDOWS):
            if steps[back]:
                held = np.int64(windows[row, column, back])
                windows[row, column, back] = np.uint32(held | (_spread(steps[back]) & kinds))
        if at > last_write[row, column]:
            last_write[row, column] = at
        if null and at > last_null[row, column]:
            last_null[row, column] = at
        if due_of[row] < math.inf:
            label_at = label_at_of[row]
            bits = np.int64(near[row, column]) | (_lag_bits(at - label_at, edges) & kinds)
            near[row, column] = np.uint32(bits)
            before = label_at - settings[TOLERANCE]
            hit = 0
            for b in range(inverse.shape[0]):
                if _tile(at, inverse[b], phase) == _tile(before, inverse[b], phase) - 1:
                    hit |= 1 << b
            bits = np.int64(control[row, column]) | (_spread(hit) & kinds)
            control[row, column] = np.uint32(bits)


@compiled
def _open(
    row, label_at, label, columns, times, settings, edges, inverse, widths,
    phase_of, since_of, latest_of, expires, label_at_of, label_class, judgeable, next_bin,
    due_of, windows, near, control, last_write, last_null, unjudged, steps,
):  # fmt: skip
    """``_add_label`` for an entity with a row: opens its label at ``label_at``."""
    bins = inverse.shape[0]
    if due_of[row] < math.inf:
        # ``_close``: the bins of the last label not judged yet never will be.
        unjudged[:columns] += bins - next_bin[row]
        due_of[row] = math.inf
    for c in range(columns):
        near[row, c] = np.uint32(
            (_lag_bits(last_write[row, c] - label_at, edges) & _ANY_KIND)
            | _lag_bits(last_null[row, c] - label_at, edges)
        )
    phase, since = phase_of[row], since_of[row]
    before = label_at - settings[TOLERANCE]
    latest = latest_of[row]
    lost = 0
    control[row] = 0
    known = 0
    steps[:] = 0
    for b in range(bins):
        tile = _tile(before, inverse[b], phase) - 1
        if latest > -math.inf:
            back = _tile(latest, inverse[b], phase) - tile
            if 0 <= back < _WINDOWS:
                steps[back] |= 1 << b
            elif back > _WINDOWS - 1:
                lost |= 1 << b
        if (float(tile) + phase) * widths[b] >= since and label_at + edges[b] >= since:
            known |= 1 << b
    for back in range(_WINDOWS):
        if steps[back]:
            spread = _spread(steps[back])
            for c in range(control.shape[1]):
                taken = np.int64(control[row, c]) | (np.int64(windows[row, c, back]) & spread)
                control[row, c] = np.uint32(taken)
    judgeable[row] = np.uint32(known & ~lost)
    label_at_of[row] = label_at
    label_class[row] = label
    next_bin[row] = 0
    due_of[row] = (label_at + edges[1]) + settings[LATENESS]
    if due_of[row] < times[MIN_DUE]:
        times[MIN_DUE] = due_of[row]
    if label_at + settings[TTL] > expires[row]:
        expires[row] = label_at + settings[TTL]


@compiled
def _may_test(column, labels, counts, min_labels):
    """``_open_cells`` of one feature, any bin: whether ``_test`` could find a p-value
    below 1.0."""
    for b in range(labels.shape[2]):
        judged0, judged1 = labels[column, 0, b], labels[column, 1, b]
        if min(judged0, judged1) < min_labels:
            continue
        total = judged0 + judged1
        for kind in range(2):
            near = counts[column, kind, 0, b, _NEAR] + counts[column, kind, 1, b, _NEAR]
            for label in range(2):
                draws = judged0 if label == 0 else judged1
                low = max(0, draws - (total - near))
                cell = counts[column, kind, label, b]
                if cell[_NEAR_ONLY] > 0 and cell[_NEAR] > low:
                    return True
    return False


@compiled
def best_cell(labels, counts, min_labels):
    """``LabelCoincidentWrites._test``'s search, on one feature's ``labels`` (class, bin)
    and ``counts`` (kind, class, bin, statistic): the smallest p-value of the cells, each
    the larger of an exact sign test within its class and Fisher's test across classes,
    and its cell (kind, class, bin), the first in that order of those as small. Python's
    ``_test`` calls it too, so that both give the same p-value."""
    best, best_kind, best_label, best_bin = 1.0, 0, 0, 0
    for b in range(labels.shape[1]):
        judged0, judged1 = labels[0, b], labels[1, b]
        if min(judged0, judged1) < min_labels:
            continue
        for kind in range(2):
            near0, near1 = counts[kind, 0, b, _NEAR], counts[kind, 1, b, _NEAR]
            for label in range(2):
                near_only = counts[kind, label, b, _NEAR_ONLY]
                control_only = counts[kind, label, b, _CONTROL_ONLY]
                tied_to_outcome = binomial_tail(near_only, near_only + control_only, 0.5)
                if tied_to_outcome >= best:
                    # The p-value is the larger of the two: never below the best.
                    continue
                class_specific = hypergeom_tail(
                    near0 if label == 0 else near1,
                    judged0 + judged1,
                    near0 + near1,
                    judged0 if label == 0 else judged1,
                )
                p_value = max(tied_to_outcome, class_specific)
                if p_value < best:
                    best, best_kind, best_label, best_bin = p_value, kind, label, b
    return best, best_kind, best_label, best_bin


@compiled
def next_look_compiled(size, growth):
    """``AnytimePValues.record``'s next look, ``max(size + 1, ceil(round(size * growth,
    9)))``; -1 when the rounding to 9 decimals is too close to call without Python's.

    Rounded to 9 decimals, a product within 4e-10 of an integer is that integer, one more
    than 6e-10 from every integer has the ceiling it had (that far from an integer, the
    rounding does not cross it)."""
    product = size * growth
    nearest = math.floor(product + 0.5)
    off = abs(product - nearest)
    if off < 4e-10:
        up = nearest
    elif off > 6e-10:
        up = math.ceil(product)
    else:
        return -1
    return max(size + 1, int(up))


@compiled
def record_look(column, size, p_value, growth, alpha, flagged, looks, next_look, p_values):
    """``AnytimePValues.record`` of a test of ``column`` at sample ``size`` whose p-value is
    ``p_value``, done in a compiled loop; whether it is recorded. One that flags a test not
    ``flagged`` before, or whose next look is too close to call (``next_look_compiled``),
    is left unrecorded, for the caller's Python."""
    upcoming = next_look_compiled(size, growth)
    looked = looks[column] + 1
    charged = min(p_values[column], p_value * looked * (looked + 1), 1.0)
    if upcoming < 0 or (charged <= alpha and not flagged):
        return False
    looks[column] = looked
    p_values[column] = charged
    next_look[column] = upcoming
    return True


@compiled
def _look(column, size, settings, labels, counts, looks, next_look, p_values, best, flagged):
    """``LabelCoincidentWrites._test`` of the feature at ``column`` at sample ``size``, and
    the look's record (``AnytimePValues.record``); whether it is done. A test that flags the
    feature (the caller keeps its evidence) or whose next look is too close to call is
    left undone, for the caller's ``_test``."""
    found, kind, label, b = best_cell(labels[column], counts[column], int(settings[MIN_LABELS]))
    if found == 1.0:
        return True
    charged_once = min(1.0, 4 * labels.shape[2] * found)
    if not record_look(
        column, size, charged_once, settings[GROWTH], settings[ALPHA], flagged[column],
        looks, next_look, p_values,
    ):  # fmt: skip
        return False
    best[column, 0], best[column, 1], best[column, 2] = kind, label, b
    return True


@compiled
def _judge_one(
    row, columns, settings, edges, label_at_of, label_class, judgeable, next_bin, due_of,
    near, control, labels, counts, unjudged, next_look, tests,
):  # fmt: skip
    """``_judge_one``: judges the next lag bin of the entity's open label; the tests due
    after it, (column, sample size) in ``tests``, and how many."""
    b = next_bin[row]
    due = 0
    if (np.int64(judgeable[row]) >> b) & 1:
        label = label_class[row]
        for c in range(columns):
            for kind in range(2):
                shift = b + kind * _NULL_SHIFT
                is_near = (np.int64(near[row, c]) >> shift) & 1
                is_control = (np.int64(control[row, c]) >> shift) & 1
                cell = counts[c, kind, label, b]
                cell[_NEAR] += is_near
                cell[_CONTROL] += is_control
                cell[_NEAR_ONLY] += is_near & (1 - is_control)
                cell[_CONTROL_ONLY] += is_control & (1 - is_near)
            labels[c, label, b] += 1
        for c in range(columns):
            size = 0
            for lag in range(labels.shape[2]):
                size = max(size, labels[c, 0, lag] + labels[c, 1, lag])
            if size >= next_look[c] and _may_test(c, labels, counts, settings[MIN_LABELS]):
                tests[due, 0] = c
                tests[due, 1] = size
                due += 1
    else:
        unjudged[:columns] += 1
    b += 1
    next_bin[row] = b
    if b < edges.shape[0] - 1:
        due_of[row] = (label_at_of[row] + edges[b + 1]) + settings[LATENESS]
    else:
        due_of[row] = math.inf
    return due


@compiled
def _before(due: float, row: int, other_due: float, other_row: int) -> bool:
    return due < other_due or (due == other_due and row < other_row)


@compiled
def _push(heap_due, heap_row, context, due, row):
    """Adds (``due``, ``row``) to the heap of due times, ordered by due time then row."""
    at = context[HEAP_SIZE]
    context[HEAP_SIZE] += 1
    while at > 0:
        parent = (at - 1) // 2
        if not _before(due, row, heap_due[parent], heap_row[parent]):
            break
        heap_due[at], heap_row[at] = heap_due[parent], heap_row[parent]
        at = parent
    heap_due[at], heap_row[at] = due, row


@compiled
def _pop(heap_due, heap_row, context):
    """Removes the heap's first (due time, row)."""
    size = context[HEAP_SIZE] - 1
    context[HEAP_SIZE] = size
    due, row = heap_due[size], heap_row[size]
    at = 0
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size and _before(
            heap_due[child + 1], heap_row[child + 1], heap_due[child], heap_row[child]
        ):
            child += 1
        if not _before(heap_due[child], heap_row[child], due, row):
            break
        heap_due[at], heap_row[at] = heap_due[child], heap_row[child]
        at = child
    heap_due[at], heap_row[at] = due, row


@compiled
def _heap_of(due_of, heap_due, heap_row, context):
    """The heap of the open labels' due times (a due time of inf: none open)."""
    context[HEAP_SIZE] = 0
    for row in range(due_of.shape[0]):
        if due_of[row] < math.inf:
            _push(heap_due, heap_row, context, due_of[row], np.int64(row))


@compiled
def _note(due_of, heap_due, heap_row, context, row):
    """Adds the row's new due time to the heap, if a label is open; a full heap is made
    again from the due times (it holds more than the rows)."""
    if due_of[row] < math.inf:
        if context[HEAP_SIZE] == heap_due.shape[0]:
            _heap_of(due_of, heap_due, heap_row, context)
        else:
            _push(heap_due, heap_row, context, due_of[row], row)


@compiled
def _judge_due(
    context, columns, times, settings, edges, label_at_of, label_class, judgeable, next_bin,
    due_of, near, control, labels, counts, unjudged, looks, next_look, p_values, best, flagged,
    tests, work, heap_due, heap_row,
):  # fmt: skip
    """``_judge_due``, pass after pass of ``_judge_one`` (its numpy form, ``_judge_all``,
    gives the same), from where ``context`` says, with the tests of the looks due after
    each judgment (``_look``); whether it stopped for tests left to the caller.

    The heap holds (due time, row) of every open label, and entries whose row's due time
    changed since (a label closed or judged), dropped as they come first: a pass takes the
    rows due, earliest first, then by row, and the earliest due time is the first entry
    left, without a pass over every row.
    """
    while True:
        if context[PASS_END] == 0:
            if not times[MIN_DUE] < times[STREAM_TIME]:
                return False
            found = 0
            while context[HEAP_SIZE] and heap_due[0] < times[STREAM_TIME]:
                due, row = heap_due[0], heap_row[0]
                _pop(heap_due, heap_row, context)
                # Entries left by a due time that came back to the same value are alike.
                if due_of[row] == due and not (found and work[found - 1] == row):
                    work[found] = row
                    found += 1
            context[PASS_AT] = 0
            context[PASS_END] = found
        while context[PASS_AT] < context[PASS_END]:
            row = work[context[PASS_AT]]
            context[PASS_AT] += 1
            due = _judge_one(
                row, columns, settings, edges, label_at_of, label_class, judgeable, next_bin,
                due_of, near, control, labels, counts, unjudged, next_look, tests,
            )  # fmt: skip
            _note(due_of, heap_due, heap_row, context, row)
            done = 0
            while done < due and _look(
                tests[done, 0], tests[done, 1], settings, labels, counts, looks, next_look,
                p_values, best, flagged,
            ):  # fmt: skip
                done += 1
            if done < due:
                # That test and the later ones (of other features: apart) go to the caller.
                tests[: due - done] = tests[done:due].copy()
                context[DUE_TESTS] = due - done
                return True
        context[PASS_END] = 0
        while context[HEAP_SIZE] and due_of[heap_row[0]] != heap_due[0]:
            _pop(heap_due, heap_row, context)
        times[MIN_DUE] = heap_due[0] if context[HEAP_SIZE] else math.inf


@compiled
def _free_row(in_use: np.ndarray, start: int) -> int:
    """The first free row from ``start`` on (rows are freed only outside the loop)."""
    row = start
    while in_use[row]:
        row += 1
    return row


@compiled
def coincide(
    write_ok, write_keys, write_columns, write_event_at, write_written_at, write_nulls,
    label_keys, label_at, label_classes, places,
    context, times, counters, settings, edges, inverse, widths,
    table_keys, table_rows, in_use, row_keys, phase_of, since_of, latest_of, expires,
    label_at_of, label_class, judgeable, next_bin, due_of, windows, near, control,
    last_write, last_null, labels, counts, unjudged, looks, next_look, p_values, best, flagged,
    tests, work,
):  # fmt: skip
    """Reads the events from ``context[EVENT]`` on, as ``update`` one by one would, up to
    the end or to one that needs the caller; why it returned (``DONE``, ``NEW_COLUMN``,
    ``ALONE``, ``TESTS``, ``FLAGS``, ``ROOM``), the event concerned in ``context[EVENT]``. After
    ``ALONE`` (the caller read the event) and ``FLAGS`` (its lag bins are judged), the
    caller moves ``context[EVENT]`` on.

    The events are the writes' columns and the labels' (a class of -1: malformed), label
    ``j`` at event ``places[j]`` (increasing), the writes in order at the events left:
    read where they are, not merged into columns of every event first, whose numpy steps
    cost a batch of a few dozen events more than this loop. ``write_columns`` holds each
    write's feature column as it is or will be when the features come in order
    (``IGNORED`` past ``max_features``).
    """
    steps = np.zeros(_WINDOWS, np.int64)
    # Room for every row's entry and as many left behind: the rows' due times change.
    heap_due = np.empty(2 * due_of.shape[0] + 1, np.float64)
    heap_row = np.empty(heap_due.shape[0], np.int64)
    _heap_of(due_of, heap_due, heap_row, context)
    limit = settings[TILE_LIMIT]
    tolerance = settings[TOLERANCE]
    free = 0
    i = context[EVENT]
    labels_count = label_keys.shape[0]
    # The labels before event ``i``; event ``i`` is label ``j`` if it is at its place.
    j = 0
    while j < labels_count and places[j] < i:
        j += 1
    while i < write_ok.shape[0] + labels_count:
        context[EVENT] = i
        is_label = j < labels_count and places[j] == i
        if context[JUDGING] == 0:
            if is_label:
                kind = LABEL if label_classes[j] >= 0 else MALFORMED
                key = label_keys[j]
                column = np.int64(IGNORED)
                at = written = label_at[j]
            else:
                w = i - j
                kind = WRITE if write_ok[w] else MALFORMED
                key = write_keys[w]
                column = np.int64(write_columns[w])
                at, written = write_event_at[w], write_written_at[w]
            if kind == MALFORMED:
                counters[REJECTED] += 1
                i += 1
                j += is_label
                continue
            if kind == WRITE and column >= counters[COLUMNS]:
                return NEW_COLUMN
            row = -1
            slot = -1
            touches = (kind == LABEL or column != IGNORED) and _in_sample(
                key, counters[SAMPLE_BITS]
            )
            if touches:
                probed = probe_compiled(table_rows, table_keys, key, False)
                slot, row = int(probed[0]), int(probed[1])
                if row < 0 and counters[TABLE_SIZE] == in_use.shape[0]:
                    # Room is made by forgetting or moving other entities, or halving the
                    # sample.
                    return ROOM
                # The times it tiles: a label's control windows, or a write's two marks;
                # the entity's latest write, and its open label's control windows.
                if kind == LABEL:
                    fits = abs(at - tolerance) < limit
                else:
                    fits = abs(at) < limit and abs(written) < limit
                if row >= 0:
                    latest = latest_of[row]
                    open_at = label_at_of[row] - tolerance
                    fits = (
                        fits
                        and (latest == -math.inf or abs(latest) < limit)
                        and (due_of[row] == math.inf or abs(open_at) < limit)
                    )
                if not fits:
                    return ALONE
            # What came before the first event is unknown (``_start``): never here, as the
            # table has no room before the first event (``ROOM``).
            if kind == WRITE and written > times[STREAM_TIME]:
                times[STREAM_TIME] = written
            if touches and row < 0:
                # ``_make_row``, in the lowest free row.
                free = _free_row(in_use, free)
                row = free
                table_keys[slot] = key
                table_rows[slot] = row
                counters[TABLE_SIZE] += 1
                row_keys[row] = key
                in_use[row] = True
                phase_of[row] = float(key >> np.uint64(11)) / float(1 << 53)
                since_of[row] = times[FORGOTTEN_UNTIL]
            if kind == LABEL and row < 0:
                counters[UNSAMPLED] += 1
            elif kind == LABEL:
                _open(
                    row, at, label_classes[j], counters[COLUMNS], times, settings, edges, inverse,
                    widths, phase_of, since_of, latest_of, expires, label_at_of, label_class,
                    judgeable, next_bin, due_of, windows, near, control, last_write, last_null,
                    unjudged, steps,
                )  # fmt: skip
                _note(due_of, heap_due, heap_row, context, row)
            elif row >= 0:
                _write(
                    row, column, at, written, write_nulls[i - j], settings, edges, inverse,
                    phase_of, latest_of, label_at_of, due_of, windows, near, control,
                    last_write, last_null, steps,
                )  # fmt: skip
                if written + settings[TTL] > expires[row]:
                    expires[row] = written + settings[TTL]
            context[JUDGING] = 1
        # Most events judge nothing: the call, whose arrays are counted references, costs
        # more than the check.
        judging = context[PASS_END] or times[MIN_DUE] < times[STREAM_TIME]
        if judging and _judge_due(
            context, counters[COLUMNS], times, settings, edges, label_at_of, label_class,
            judgeable, next_bin, due_of, near, control, labels, counts, unjudged, looks,
            next_look, p_values, best, flagged, tests, work, heap_due, heap_row,
        ):  # fmt: skip
            return TESTS
        context[JUDGING] = 0
        if context[FLAGGED]:
            context[FLAGGED] = 0
            return FLAGS
        i += 1
        j += is_label
    context[EVENT] = i
    return DONE


@compiled
def telling(best, labels, counts, columns):
    """Per column of ``columns``: its most telling kind, class and lag bin (``best``), the
    labels judged there per class, the writes there per class (its cells of ``counts``)
    and the score, the excess of near over control writes per label judged (at least
    one) of the class less the other class's. One pass rather than numpy's gathers, a
    dozen calls for the few features a round of points reads."""
    n = columns.shape[0]
    kinds = np.empty(n, np.int64)
    classes = np.empty(n, np.int64)
    bins = np.empty(n, np.int64)
    judged = np.empty((n, 2), np.int64)
    cells = np.empty((n, 2, counts.shape[4]), np.int64)
    scores = np.empty(n, np.float64)
    for i in range(n):
        c = columns[i]
        kind, label, b = best[c, 0], best[c, 1], best[c, 2]
        kinds[i], classes[i], bins[i] = kind, label, b
        excess = np.empty(2, np.float64)
        for k in range(2):
            judged[i, k] = labels[c, k, b]
            cells[i, k] = counts[c, kind, k, b]
            excess[k] = (cells[i, k, _NEAR] - cells[i, k, _CONTROL]) / max(judged[i, k], 1)
        scores[i] = excess[label] - excess[1 - label]
    return kinds, classes, bins, judged, cells, scores
