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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, ParamSpec, Protocol, TypeVar

from schemas.contracts import Role

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger(__name__)

# A model failing on every request logs one traceback per this many seconds, not per call.
ERROR_LOG_EVERY_S = 10.0


class ModeSource(Protocol):
    """Anything that knows each model's mode, such as a ``ControlListener``."""

    def mode(self, model_id: str) -> str: ...


class Routed(Generic[P, R]):
    """A model behind the router: calling it calls the function its mode picks.

    In ``fallback`` mode it calls ``fallback``; in ``shadow`` mode the shadow (or the live
    function, if no shadow is registered); otherwise the live function. When the live or
    shadow function raises and ``fallback_on_error`` is set, the fallback answers and the
    error is counted in ``errors``: the node fails soft before the detectors notice. The
    first error is logged with its traceback, then at most one every ``ERROR_LOG_EVERY_S``.
    """

    def __init__(
        self,
        modes: ModeSource,
        model_id: str,
        live: Callable[P, R],
        fallback: Callable[P, R],
        shadow: Callable[P, R] | None,
        fallback_on_error: bool,
    ) -> None:
        self.model_id = model_id
        self.live = live
        self.fallback = fallback
        self.shadow = shadow
        self.fallback_on_error = fallback_on_error
        self.errors = 0
        self._modes = modes
        self._next_error_log = -float("inf")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.call(*args, **kwargs)[0]

    def call(self, *args: P.args, **kwargs: P.kwargs) -> tuple[R, Role]:
        """The answer and the role of the function that gave it (to log the prediction)."""
        mode = self._modes.mode(self.model_id)
        if mode == "fallback":
            return self.fallback(*args, **kwargs), "fallback"
        chosen: Callable[P, R] = self.live
        role: Role = "live"
        if mode == "shadow" and self.shadow is not None:
            chosen, role = self.shadow, "shadow"
        try:
            return chosen(*args, **kwargs), role
        except Exception:
            if not self.fallback_on_error:
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
            return self.fallback(*args, **kwargs), "fallback"


class Router:
    """Registers each served model with its fallback, and routes calls by mode."""

    def __init__(self, modes: ModeSource) -> None:
        self.modes = modes
        self.models: dict[str, Routed[..., object]] = {}

    def register(
        self,
        model_id: str,
        *,
        live: Callable[P, R],
        fallback: Callable[P, R],
        shadow: Callable[P, R] | None = None,
        fallback_on_error: bool = True,
    ) -> Routed[P, R]:
        routed = Routed(self.modes, model_id, live, fallback, shadow, fallback_on_error)
        self.models[model_id] = routed  # type: ignore[assignment]
        return routed

    def serve(
        self,
        model_id: str,
        *,
        fallback: Callable[P, R],
        shadow: Callable[P, R] | None = None,
        fallback_on_error: bool = True,
    ) -> Callable[[Callable[P, R]], Routed[P, R]]:
        """Decorator form of ``register``: the decorated function is the live model."""

        def decorate(live: Callable[P, R]) -> Routed[P, R]:
            return self.register(
                model_id,
                live=live,
                fallback=fallback,
                shadow=shadow,
                fallback_on_error=fallback_on_error,
            )

        return decorate
