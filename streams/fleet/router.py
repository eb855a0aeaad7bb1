"""``Router``: call a model's live function, its fallback or its shadow, by the model's mode.

>>> class Modes:
...     def __init__(self): self.now = {}
...     def mode(self, model_id): return self.now.get(model_id, "live")
>>> modes = Modes()
>>> router = Router(modes)
>>> recommend = router.register("recs", live=lambda user: ["fresh"], fallback=lambda user: ["top"])
>>> recommend("u1")
['fresh']
>>> modes.now["recs"] = "fallback"
>>> recommend.call("u1")
(['top'], 'fallback')
>>> recommend.route("u1")
Served(value=['top'], role='fallback', fallback_reason='control', level=1)

A fallback ladder is a sequence of fallbacks, best first: ``fallback=[cpu_model, popular]``
makes the CPU model level 1 and the popular items level 2. A commanded ``fallback`` serves
the level the command names (``ControlListener.level``; the first without one, the last
if it names a deeper one); any other fallback, below, serves level 1.

A model registered with ``breaker=BreakerSettings(...)`` is called through its own
``Breaker`` (see ``streams.fleet.breaker``): the call has a deadline, and a model that is
slow or failing is skipped until half-open probes find it well again. A commanded
``fallback`` mode still wins: the model is not called at all. On an asyncio server, a
model whose live function is a coroutine function is served by ``await
routed.route_async(...)``: the deadline is then the event loop's timer, with no thread
hand-off.

Every fallback answer carries why it was served (``Served.fallback_reason``):

- ``control``: the control topic put the model in ``fallback`` mode;
- ``error``: the model raised (and ``fallback_on_error`` is set);
- ``timeout``: the model missed its breaker's deadline;
- ``saturated``: every thread of its breaker's pool was busy with earlier calls;
- ``breaker_open:<why>``: its breaker is open (``latency``, ``timeouts``, ``errors``,
  ``saturated`` or ``probe_<outcome>``), or half-open and this call was not a probe.

A prediction logs both in its own fields: ``Prediction(..., latency_ms,
served.fallback_reason, served.level)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, NamedTuple, ParamSpec, Protocol, TypeVar

from schemas.contracts import Role
from streams.fleet.breaker import Breaker, BreakerChange, BreakerSettings, Unavailable

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger(__name__)

# A model failing on every request logs one traceback per this many seconds, not per call.
ERROR_LOG_EVERY_S = 10.0


class Served(NamedTuple, Generic[R]):
    """An answer, the role of the function that gave it, why a fallback served it, and
    the level of the model's ladder that answered (0: the live or shadow model)."""

    value: R
    role: Role
    fallback_reason: str | None
    level: int = 0


class ModeSource(Protocol):
    """Anything that knows each model's mode, such as a ``ControlListener``. One that
    also has ``level(model_id) -> int`` names the ladder level a ``fallback`` serves."""

    def mode(self, model_id: str) -> str: ...


class Routed(Generic[P, R]):
    """A model behind the router: calling it calls the function its mode picks.

    In ``fallback`` mode it calls the ladder's commanded level (``ladder``: the fallbacks,
    best first); in ``shadow`` mode the shadow (or the live function, if no shadow is
    registered); otherwise the live function. When the live or
    shadow function raises and ``fallback_on_error`` is set, the fallback answers and the
    error is counted in ``errors``: the node fails soft before the detectors notice. The
    first error is logged with its traceback, then at most one every ``ERROR_LOG_EVERY_S``.

    With a ``breaker``, the chosen function (live or shadow) is called through it, and
    whenever the breaker gives no answer the fallback serves, ``fallback_on_error`` or not.
    """

    def __init__(
        self,
        modes: ModeSource,
        model_id: str,
        live: Callable[P, R],
        fallback: Callable[P, R] | Sequence[Callable[P, R]],
        shadow: Callable[P, R] | None,
        fallback_on_error: bool,
        breaker: Breaker | None = None,
    ) -> None:
        self.model_id = model_id
        self.live = live
        self.ladder: tuple[Callable[P, R], ...] = (
            (fallback,) if callable(fallback) else tuple(fallback)
        )
        if not self.ladder or not all(callable(rung) for rung in self.ladder):
            raise ValueError(f"{model_id}: fallback must be a callable or a sequence of them")
        self.fallback = self.ladder[0]
        self.shadow = shadow
        self.fallback_on_error = fallback_on_error
        self.breaker = breaker
        self.errors = 0
        self._modes = modes
        self._level: Callable[[str], int] | None = getattr(modes, "level", None)
        self._next_error_log = -float("inf")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.call(*args, **kwargs)[0]

    def call(self, *args: P.args, **kwargs: P.kwargs) -> tuple[R, Role]:
        """The answer and the role of the function that gave it (to log the prediction)."""
        served = self.route(*args, **kwargs)
        return served.value, served.role

    def route(self, *args: P.args, **kwargs: P.kwargs) -> Served[R]:
        """The answer, its role, and why the fallback served it (see the module docstring)."""
        mode = self._modes.mode(self.model_id)
        if mode == "fallback":
            return self._commanded(args, kwargs)
        chosen, role = self._chosen(mode)
        try:
            if self.breaker is None:
                return Served(chosen(*args, **kwargs), role, None)
            return Served(self.breaker.call(chosen, args, kwargs), role, None)
        except Unavailable as unavailable:
            return Served(self.fallback(*args, **kwargs), "fallback", unavailable.reason, 1)
        except Exception:
            return self._failed(role, args, kwargs)

    async def route_async(self, *args: P.args, **kwargs: P.kwargs) -> Served[Any]:
        """``route`` on an asyncio server whose live (and shadow) function is a coroutine
        function: it is awaited, through the breaker's ``call_async`` (the deadline on the
        event loop's timer, no thread hand-off). The fallbacks are plain functions (a
        static strategy, a local model), called as in ``route``."""
        mode = self._modes.mode(self.model_id)
        if mode == "fallback":
            return self._commanded(args, kwargs)
        # Annotated, not cast(): cast(Callable[..., Awaitable[Any]], ...) builds the generic
        # alias on every call, about 1 us of the serving path.
        chosen: Callable[..., Awaitable[Any]]
        chosen, role = self._chosen(mode)  # type: ignore[assignment]
        try:
            if self.breaker is None:
                return Served(await chosen(*args, **kwargs), role, None)
            return Served(await self.breaker.call_async(chosen, args, kwargs), role, None)
        except Unavailable as unavailable:
            return Served(self.fallback(*args, **kwargs), "fallback", unavailable.reason, 1)
        except Exception:
            return self._failed(role, args, kwargs)

    def _commanded(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Served[R]:
        """The commanded level's answer, in ``fallback`` mode."""
        level = 1 if self._level is None else self._level(self.model_id)
        level = min(max(level, 1), len(self.ladder))
        return Served(self.ladder[level - 1](*args, **kwargs), "fallback", "control", level)

    def _chosen(self, mode: str) -> tuple[Callable[P, R], Role]:
        if mode == "shadow" and self.shadow is not None:
            return self.shadow, "shadow"
        return self.live, "live"

    def _failed(self, role: Role, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Served[R]:
        """In an ``except`` block: the fallback's answer to a model that raised, or the
        model's error raised again when ``fallback_on_error`` is not set."""
        if not self.fallback_on_error:
            # Only ever called in an ``except`` block: this is the model's error.
            raise
        self.errors += 1
        now = time.monotonic()
        if now >= self._next_error_log:
            # Logging is formatting and a handler's I/O, which may block: on the serving
            # path, a model that fails on every request must not log every request.
            self._next_error_log = now + ERROR_LOG_EVERY_S
            _log.exception(
                "%s (%s) raised; the fallback answers (error %d since start)",
                self.model_id,
                role,
                self.errors,
            )
        return Served(self.fallback(*args, **kwargs), "fallback", "error", 1)


class Router:
    """Registers each served model with its fallback, and routes calls by mode.

    ``register(..., breaker=BreakerSettings())`` puts the model behind its own breaker;
    ``on_breaker_change(callback)`` hears every breaker's state changes, registered
    before or after the callback.
    """

    def __init__(self, modes: ModeSource) -> None:
        self.modes = modes
        self.models: dict[str, Routed[..., object]] = {}
        self._breaker_callbacks: list[Callable[[BreakerChange], None]] = []

    def on_breaker_change(self, callback: Callable[[BreakerChange], None]) -> None:
        """Call ``callback`` on the serving thread whenever a model's breaker changes state."""
        self._breaker_callbacks.append(callback)
        for routed in self.models.values():
            if routed.breaker is not None:
                routed.breaker.on_change(callback)

    def register(
        self,
        model_id: str,
        *,
        live: Callable[P, R],
        fallback: Callable[P, R] | Sequence[Callable[P, R]],
        shadow: Callable[P, R] | None = None,
        fallback_on_error: bool = True,
        breaker: BreakerSettings | None = None,
    ) -> Routed[P, R]:
        """Route ``model_id``; ``fallback`` is one function or a ladder of them, best first."""
        guard = None
        if breaker is not None:
            guard = Breaker(model_id, breaker)
            for callback in self._breaker_callbacks:
                guard.on_change(callback)
        routed = Routed(self.modes, model_id, live, fallback, shadow, fallback_on_error, guard)
        self.models[model_id] = routed  # type: ignore[assignment]
        return routed

    def serve(
        self,
        model_id: str,
        *,
        fallback: Callable[P, R] | Sequence[Callable[P, R]],
        shadow: Callable[P, R] | None = None,
        fallback_on_error: bool = True,
        breaker: BreakerSettings | None = None,
    ) -> Callable[[Callable[P, R]], Routed[P, R]]:
        """Decorator form of ``register``: the decorated function is the live model."""

        def decorate(live: Callable[P, R]) -> Routed[P, R]:
            return self.register(
                model_id,
                live=live,
                fallback=fallback,
                shadow=shadow,
                fallback_on_error=fallback_on_error,
                breaker=breaker,
            )

        return decorate
