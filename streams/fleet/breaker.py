"""A per-model circuit breaker for the serving path: a call deadline, trips on latency and
failures, and half-open probes back to the model (Hystrix and resilience4j semantics).

``BreakerCore`` is the pure state machine: every time is an argument, so a test replays a
call sequence exactly. ``Breaker`` is the shell a ``Router`` puts around a model: it runs
each call on a small bounded pool of threads and waits at most the deadline for it, feeds
the core, and tells its listeners when the state changes. On an asyncio server,
``call_async`` awaits a coroutine model in the caller's own task instead, its deadline on
one event-loop timer shared by all of the model's calls on that loop: no thread hand-off
and no timer per call, so the deadline costs about 1.5 us at the median instead of two
thread wake-ups (about 20 us, and the scheduler's delay on a loaded machine).

States:

- ``closed``: calls go to the model. It opens when ``failures_to_trip`` calls in a row
  failed (raised, missed the deadline, or found every pool thread busy), or when the p99
  latency of the last ``window_calls`` calls is above ``slo_p99_ms``.
- ``open``: calls go to the fallback at once, until ``cool_down_s`` has passed.
- ``half_open``: a share ``probe_share`` of calls (the first one first) goes to the model
  as a probe, the rest to the fallback. A probe that fails or is slower than the SLO opens
  the breaker again for another cool-down; ``probes_to_close`` good probes close it.

>>> core = BreakerCore(BreakerSettings(failures_to_trip=2, cool_down_s=5.0, probes_to_close=1))
>>> core.admit(0.0), core.record("timeout", 100.0, 0.1, probe=False), core.state
('call', None, 'closed')
>>> core.record("timeout", 100.0, 0.2, probe=False), core.reason
('open', 'timeouts')
>>> core.admit(1.0), core.admit(5.2), core.state
('fallback', 'probe', 'half_open')
>>> core.record("ok", 12.0, 5.21, probe=True), core.trips, core.recoveries
('closed', 1, 1)
"""

from __future__ import annotations

import _thread
import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from typing import Any, Literal, TypeAlias, TypeVar

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
Outcome: TypeAlias = Literal["ok", "error", "timeout", "saturated"]
"""How one model call ended: answered, raised, missed the deadline, or never started
because every pool thread was busy."""
Admission: TypeAlias = Literal["call", "probe", "fallback"]

R = TypeVar("R")

_log = logging.getLogger(__name__)

# A trip on consecutive failures is named for the kind of failure that completed the run.
_TRIP_REASON: dict[str, str] = {"error": "errors", "timeout": "timeouts", "saturated": "saturated"}


@dataclasses.dataclass(frozen=True)
class BreakerSettings:
    """One model's breaker settings; every field has a default.

    Parameters
    ----------
    deadline_ms
        Milliseconds the serving thread waits for the model before it serves the fallback.
        ``None``: no deadline, the model is called on the serving thread itself (no thread
        hand-off, but a hung model holds the request; trips still come from latency,
        errors, and the ``TimeoutError`` of a client that keeps its own deadline).
        Default 100.
    slo_p99_ms
        The model's latency objective: the breaker opens when the p99 of the last
        ``window_calls`` call latencies is above it, and a probe slower than it fails.
        Default 50.
    window_calls
        How many of the latest call latencies the p99 is taken over; the latency rule
        waits until that many calls were made since the breaker last closed. Default 100.
    failures_to_trip
        Consecutive failed calls (raised, timed out or saturated) that open it. Default 5.
    cool_down_s
        Seconds the breaker stays open before it probes the model. Default 5.
    probe_share
        Share of calls sent to the model while half-open, in (0, 1]. Default 0.1.
    probes_to_close
        Good probes in a row that close the breaker. Default 3.
    max_concurrent_calls
        Threads the model's calls may hold at once; a call that finds them all busy (say,
        hung on a slow model) is a ``saturated`` failure and served the fallback at once.
        Default 16.
    """

    deadline_ms: float | None = 100.0
    slo_p99_ms: float = 50.0
    window_calls: int = 100
    failures_to_trip: int = 5
    cool_down_s: float = 5.0
    probe_share: float = 0.1
    probes_to_close: int = 3
    max_concurrent_calls: int = 16

    def __post_init__(self) -> None:
        if self.deadline_ms is not None and not self.deadline_ms > 0:
            raise ValueError(f"deadline_ms={self.deadline_ms}: must be None or above 0")
        if not self.slo_p99_ms > 0:
            raise ValueError(f"slo_p99_ms={self.slo_p99_ms}: must be above 0")
        if not self.cool_down_s >= 0:
            raise ValueError(f"cool_down_s={self.cool_down_s}: must be 0 or more")
        if not 0 < self.probe_share <= 1:
            raise ValueError(f"probe_share={self.probe_share}: must be in (0, 1]")
        for name in ("window_calls", "failures_to_trip", "probes_to_close", "max_concurrent_calls"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer of at least 1")


class BreakerCore:
    """The breaker's state machine; see the module docstring. Not thread-safe.

    ``admit(now_s)`` says where the next call goes; ``record(...)`` feeds back how a call to
    the model ended. Neither reads the clock, logs or raises.

    The p99 is the nearest-rank one: with ``n = window_calls`` and ``k = ceil(0.99 n)``, it
    is above the SLO exactly when at least ``m = n - k + 1`` of the window's latencies are.
    With ``n = 100`` that is 2 slow calls; below 100 it is 1 (the p99 is then the maximum).
    So the core keeps only the numbers of the latest ``m`` slow calls: the p99 is above the
    SLO when the oldest of them is among the last ``n`` calls. A call in time costs a
    counter and no allocation, and memory is ``m`` numbers whatever the window.
    """

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._reset()

    def _reset(self) -> None:
        window = self.settings.window_calls
        self._window = window
        self._slo_ms = self.settings.slo_p99_ms
        self._slow_to_trip = window - (-(-99 * window // 100)) + 1
        self._state: BreakerState = "closed"
        self._reason: str | None = None
        self._opened_at: float | None = None
        self._trips = 0
        self._recoveries = 0
        self._half_open_calls = 0
        self._good_probes = 0
        self._clear_closed()

    def _clear_closed(self) -> None:
        # Calls recorded since the breaker last closed, and the numbers of the latest slow ones.
        self._calls = 0
        self._slow_calls: deque[int] = deque(maxlen=self._slow_to_trip)
        self._consecutive_failures = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def reason(self) -> str | None:
        """Why the breaker last opened: ``latency``, ``timeouts``, ``errors``, ``saturated``,
        or ``probe_`` and the failed probe's outcome (``probe_slow`` for a slow one)."""
        return self._reason

    @property
    def opened_at(self) -> float | None:
        """When (seconds, the caller's clock) the breaker last opened."""
        return self._opened_at

    @property
    def trips(self) -> int:
        """Times it opened from closed (a failed probe reopening it is not counted)."""
        return self._trips

    @property
    def recoveries(self) -> int:
        """Times it closed again after good probes."""
        return self._recoveries

    def admit(self, now_s: float) -> Admission:
        """Where the call arriving at ``now_s`` goes; may move ``open`` to ``half_open``."""
        state = self._state
        if state == "closed":
            return "call"
        if state == "open":
            assert self._opened_at is not None
            if now_s - self._opened_at < self.settings.cool_down_s:
                return "fallback"
            self._state = "half_open"
            self._half_open_calls = 0
            self._good_probes = 0
        # The n-th half-open call (from 0) probes when n * share crosses an integer, so the
        # first one probes and then one in 1/share.
        n = self._half_open_calls
        self._half_open_calls = n + 1
        share = self.settings.probe_share
        return "probe" if math.floor(n * share) != math.floor((n - 1) * share) else "fallback"

    def record(
        self, outcome: Outcome, latency_ms: float, now_s: float, *, probe: bool
    ) -> BreakerState | None:
        """Feed how a call to the model ended; return the new state if this changed it.

        Results of calls admitted in another state (a call that outlived a trip, say) are
        ignored, except that a probe's result counts in ``closed`` like any call.
        """
        state = self._state
        slow = latency_ms > self._slo_ms
        if state == "half_open":
            if not probe:
                return None
            if outcome != "ok" or slow:
                self._open("probe_slow" if outcome == "ok" else f"probe_{outcome}", now_s)
                return "open"
            self._good_probes += 1
            if self._good_probes < self.settings.probes_to_close:
                return None
            self._state, self._reason = "closed", None
            self._recoveries += 1
            self._clear_closed()
            return "closed"
        if state == "open":
            return None
        if outcome == "ok":
            self._consecutive_failures = 0
        else:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.settings.failures_to_trip:
                self._trips += 1
                self._open(_TRIP_REASON[outcome], now_s)
                return "open"
        calls = self._calls = self._calls + 1
        window = self._window
        # The window's slow count grows only with a slow call, and is first judged when the
        # window fills: a call in time at any other point cannot trip it.
        if slow:
            self._slow_calls.append(calls)
        elif calls != window:
            return None
        slow_calls = self._slow_calls
        if (
            calls >= window
            and len(slow_calls) == self._slow_to_trip
            and slow_calls[0] > calls - window
        ):
            self._trips += 1
            self._open("latency", now_s)
            return "open"
        return None

    def _open(self, reason: str, now_s: float) -> None:
        self._state, self._reason, self._opened_at = "open", reason, now_s


class Unavailable(Exception):
    """The breaker served no model answer for this call; ``reason`` says why: ``timeout``,
    ``saturated``, or ``breaker_open:`` and the breaker's ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class BreakerChange:
    """A breaker changed state at ``at_s`` (``time.monotonic``); ``reason`` is why it
    opened (None when it closes or goes half-open)."""

    model_id: str
    old: BreakerState
    new: BreakerState
    reason: str | None
    at_s: float


@dataclasses.dataclass(frozen=True)
class BreakerStats:
    """Counters since start."""

    state: BreakerState
    reason: str | None
    trips: int
    recoveries: int
    timeouts: int
    errors: int
    saturated: int
    short_circuited: int
    """Calls served the fallback without trying the model (open, or half-open not probing)."""
    callback_errors: int


class _PendingCall:
    """One call handed to a pool thread; ``done`` is released when it has ended."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None


_Job: TypeAlias = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], _PendingCall]


class _CallPool:
    """At most ``size`` daemon threads, each with its own inbox, started when first needed.

    Leaner than ``concurrent.futures``: a hand-off is one queue put and one lock, which is
    most of the breaker's cost on the serving path.
    """

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._started = 0
        self._idle: list[SimpleQueue[_Job]] = []  # append and pop are atomic under the GIL
        self._grow = threading.Lock()

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _PendingCall | None:
        """Start ``fn`` on an idle thread; ``None`` when all ``size`` threads are busy."""
        try:
            inbox = self._idle.pop()
        except IndexError:
            inbox_or_none = self._start_thread()
            if inbox_or_none is None:
                return None
            inbox = inbox_or_none
        pending = _PendingCall()
        inbox.put((fn, args, kwargs, pending))
        return pending

    def _start_thread(self) -> SimpleQueue[_Job] | None:
        with self._grow:
            if self._started >= self._size:
                return None
            inbox: SimpleQueue[_Job] = SimpleQueue()
            thread = threading.Thread(
                target=self._work,
                args=(inbox,),
                name=f"failsoft-breaker-{self._name}-{self._started}",
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError:  # the process cannot start another thread: saturated
                return None
            self._started += 1
            return inbox

    def _work(self, inbox: SimpleQueue[_Job]) -> None:
        while True:
            fn, args, kwargs, pending = inbox.get()
            try:
                pending.value = fn(*args, **kwargs)
            except BaseException as error:  # the serving thread raises it, as if inline
                pending.error = error
            del fn, args, kwargs
            # Idle again before the waiter wakes, so its next call finds this thread.
            self._idle.append(inbox)
            pending.done.release()


_RUNNING, _ENDED, _EXPIRED = 0, 1, 2

# How much earlier than a deadline its timer is armed. asyncio's selector on Linux (epoll)
# sleeps whole milliseconds, rounded up: a timer armed at the deadline runs up to 1 ms
# after it. Armed this much before, it runs before the deadline, and the loop then runs
# without sleeping until the deadline comes (see ``_LoopDeadlines._expire``).
_EARLY_S = 1e-3


class _AwaitedCall:
    """One awaited model call under a ``_LoopDeadlines`` timer: its task, its deadline
    (the loop's clock), the task's cancel requests before the call (more after the
    deadline's own one means a cancel from elsewhere, which must propagate, as under
    ``asyncio.timeout``), and whether it is running, ended, or cancelled by its deadline."""

    __slots__ = ("cancelling", "deadline", "state", "task")

    task: asyncio.Task[Any]
    deadline: float
    cancelling: int
    state: int


class _LoopDeadlines:
    """The deadlines of one breaker's awaited calls on one event loop, on a single timer.

    Every call has the same delay, so deadlines fall in the order the calls started: the
    calls wait in a FIFO and one timer is armed for the oldest call still running. A call
    that answers in time costs an append and a flag (about 1.5 us at the median in
    ``bench_fleet_breaker``), where ``asyncio.timeout`` builds a context manager and pushes
    a timer handle on the loop's heap per call (about 7 us). Only the loop's own thread
    touches it.

    The timer is armed ``_EARLY_S`` before the oldest running call's deadline, so that the
    loop's millisecond sleep does not make it late; when it runs, a call whose deadline is
    still to come is left running and the loop goes round again without sleeping until
    it comes. That happens only while a call is within ``_EARLY_S`` of its deadline: in
    practice, a call about to miss it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self._time = loop.time
        self._delay_s = delay_s
        # Whether ``clock``, the breaker's, is the loop's (the default loops' ``time()`` is
        # ``time.monotonic()``): a call's start on it is then the start of its deadline,
        # one clock read fewer per call.
        self._loop_clock = clock is time.monotonic and type(loop).time is asyncio.BaseEventLoop.time
        self._calls: deque[_AwaitedCall] = deque()
        self._timer: asyncio.Handle | None = None

    def start(self, task: asyncio.Task[Any], started: float) -> _AwaitedCall:
        """Put the call of ``task`` that started at ``started`` (the breaker's clock) under
        its deadline."""
        call = _AwaitedCall()
        call.task = task
        now = started if self._loop_clock else self._time()
        call.deadline = deadline = now + self._delay_s
        call.cancelling = task.cancelling()
        call.state = _RUNNING
        calls = self._calls
        # Calls end mostly in the order they started: this keeps the FIFO short.
        while calls and calls[0].state != _RUNNING:
            calls.popleft()
        calls.append(call)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline - _EARLY_S, self._expire)
        return call

    def _expire(self) -> None:
        """Cancel every running call whose deadline has come, and wait for the oldest one
        left: on a timer if its deadline is further than ``_EARLY_S``, otherwise on the
        loop's next round. A call is never cancelled before its deadline."""
        self._timer = None
        loop = self.loop
        now = loop.time()
        calls = self._calls
        while calls:
            call = calls[0]
            if call.state == _RUNNING:
                if call.deadline > now:
                    if call.deadline - _EARLY_S > now:
                        self._timer = loop.call_at(call.deadline - _EARLY_S, self._expire)
                    else:
                        self._timer = loop.call_soon(self._expire)
                    return
                call.state = _EXPIRED
                call.task.cancel()
            calls.popleft()


class Breaker:
    """One model's breaker: ``call(fn, args, kwargs)`` returns ``fn``'s answer or raises
    ``Unavailable`` (the caller serves the fallback), or whatever ``fn`` raised;
    ``await call_async(fn, args, kwargs)`` does the same for a coroutine function. A
    ``TimeoutError`` that ``fn`` raises is a timeout like a missed deadline: a model whose
    client keeps its own deadline (a socket timeout) can then run with
    ``deadline_ms=None``, on the serving thread, and still trip on timeouts; the serving
    thread then waits as long as that client's deadline.

    Thread-safe: concurrent serving threads share the core under a lock held for a few
    attribute updates. A state change is logged (warning when it opens, info otherwise)
    and passed to every ``on_change`` callback on the serving thread that caused it; a
    callback that raises is logged and counted, never raised into serving.
    """

    def __init__(
        self,
        model_id: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_id = model_id
        self.settings = settings or BreakerSettings()
        self.core = BreakerCore(self.settings)
        self._clock = clock
        deadline_ms = self.settings.deadline_ms
        # Used only with a deadline: by the pool, and by the event loops' timers.
        self._deadline_s = (deadline_ms or 0.0) / 1e3
        self._pool = (
            None if deadline_ms is None else _CallPool(model_id, self.settings.max_concurrent_calls)
        )
        self._loop_deadlines: dict[asyncio.AbstractEventLoop, _LoopDeadlines] = {}
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[BreakerChange], None]] = []
        self._timeouts = 0
        self._errors = 0
        self._saturated = 0
        self._short_circuited = 0
        self._callback_errors = 0

    def on_change(self, callback: Callable[[BreakerChange], None]) -> None:
        self._callbacks.append(callback)

    def stats(self) -> BreakerStats:
        with self._lock:
            core = self.core
            return BreakerStats(
                state=core.state,
                reason=core.reason,
                trips=core.trips,
                recoveries=core.recoveries,
                timeouts=self._timeouts,
                errors=self._errors,
                saturated=self._saturated,
                short_circuited=self._short_circuited,
                callback_errors=self._callback_errors,
            )

    def call(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        started, probe = self._admit()
        outcome: Outcome
        error: BaseException | None = None
        value: Any = None
        if self._pool is None:
            try:
                value = fn(*args, **kwargs)
                outcome = "ok"
            except TimeoutError:
                outcome = "timeout"
            except Exception as raised:
                error, outcome = raised, "error"
        else:
            pending = self._pool.submit(fn, args, kwargs)
            if pending is None:
                outcome = "saturated"
            elif not pending.done.acquire(timeout=self._deadline_s) or isinstance(
                pending.error, TimeoutError
            ):
                outcome = "timeout"
            elif pending.error is not None:
                error, outcome = pending.error, "error"
            else:
                value, outcome = pending.value, "ok"
        return self._end(started, probe, outcome, value, error)

    async def call_async(
        self, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        """``call`` for a coroutine function, on an asyncio server: it is awaited in the
        caller's own task and, at the deadline, the event loop's timer cancels that task's
        await: no thread hand-off. The model's calls on one loop share one timer, so a call
        that answers in time costs an append and a flag, not a timer of its own.

        The deadline holds for a model that awaits (an HTTP or gRPC client does) and lets
        itself be cancelled: its await raises ``CancelledError`` at the deadline and the
        fallback serves. A call the deadline cancelled is a timeout whatever the model then
        does: re-raise, answer late, or raise another error; a model that swallows the
        cancel and keeps awaiting holds the request as long as it awaits. A cancel from
        elsewhere (the server cancelling the request) propagates, as under
        ``asyncio.timeout``. A coroutine that computes without awaiting holds the event
        loop itself, deadline or not: give such a model to ``call`` (a pool thread).
        """
        started, probe = self._admit()
        outcome: Outcome
        error: BaseException | None = None
        value: Any = None
        if self._pool is None:
            try:
                value = await fn(*args, **kwargs)
                outcome = "ok"
            except TimeoutError:
                outcome = "timeout"
            except Exception as raised:
                error, outcome = raised, "error"
            return self._end(started, probe, outcome, value, error)
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("call_async with a deadline must run in an asyncio task")
        # Not get_running_loop(): in CPython 3.11 it makes a system call (getpid) each time,
        # as current_task() already did.
        loop = task.get_loop()
        deadlines = self._loop_deadlines.get(loop) or self._new_deadlines(loop)
        call = deadlines.start(task, started)
        try:
            value = await fn(*args, **kwargs)
            outcome = "ok"
        except asyncio.CancelledError:
            if call.state != _EXPIRED or task.uncancel() > call.cancelling:
                raise
            call.state = _ENDED  # the deadline's cancel is undone
            outcome = "timeout"
        except TimeoutError:
            outcome = "timeout"
        except Exception as raised:
            error, outcome = raised, "error"
        finally:
            expired = call.state == _EXPIRED
            call.state = _ENDED
        if expired:  # the model swallowed the deadline's cancel, then answered or raised
            task.uncancel()
            value, error, outcome = None, None, "timeout"
        return self._end(started, probe, outcome, value, error)

    def _new_deadlines(self, loop: asyncio.AbstractEventLoop) -> _LoopDeadlines:
        """The timer of ``loop``'s calls, on its first call: each loop (a thread's, or each
        ``asyncio.run``) gets its own, and those of closed loops are dropped then."""
        with self._lock:
            kept = {k: v for k, v in self._loop_deadlines.items() if not k.is_closed()}
            deadlines = kept[loop] = _LoopDeadlines(loop, self._deadline_s, self._clock)
            self._loop_deadlines = kept
        return deadlines

    def _admit(self) -> tuple[float, bool]:
        """When the call started and whether it is a probe; raises ``Unavailable`` when the
        breaker serves the fallback without trying the model."""
        core = self.core
        started = self._clock()
        # Closed, admitting is "call" and changes nothing, so it needs no lock: a breaker
        # that opens meanwhile sees this call as one that came just before it opened.
        if core._state == "closed":
            return started, False
        with self._lock:
            before = core.state
            admission = core.admit(started)
            after = core.state
            if admission == "fallback":
                self._short_circuited += 1
            reason = core.reason
        if after != before:
            self._changed(before, after, None, started)
        if admission == "fallback":
            raise Unavailable(f"breaker_open:{reason}")
        return started, admission == "probe"

    def _end(
        self,
        started: float,
        probe: bool,
        outcome: Outcome,
        value: Any,
        error: BaseException | None,
    ) -> Any:
        ended = self._clock()
        latency_ms = (ended - started) * 1e3
        core = self.core
        with self._lock:
            if outcome != "ok":
                if outcome == "timeout":
                    self._timeouts += 1
                elif outcome == "error":
                    self._errors += 1
                else:
                    self._saturated += 1
            before = core._state
            new = core.record(outcome, latency_ms, ended, probe=probe)
            reason = core._reason
        if new is not None:
            self._changed(before, new, reason, ended)
        if outcome == "ok":
            return value
        if error is not None:
            raise error
        raise Unavailable(outcome)

    def _changed(
        self, old: BreakerState, new: BreakerState, reason: str | None, at_s: float
    ) -> None:
        change = BreakerChange(self.model_id, old, new, reason, at_s)
        if new == "open":
            _log.warning("breaker of %s opened (%s), was %s", self.model_id, reason, old)
        else:
            _log.info("breaker of %s is %s, was %s", self.model_id, new, old)
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:
                self._callback_errors += 1
                _log.exception("breaker on-change callback failed for %s", self.model_id)
