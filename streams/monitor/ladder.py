"""A model's fallback ladder in the worker: which level the fleet serves, and when to step.

Pure: no clock (event times are arguments), no I/O. A model whose portfolio ``fallback``
is a ladder of two or more levels (``["ranker-cpu-distilled", "top_n_popular"]``: levels
1 and 2; level 0 is the model itself) has a ``Ladder`` in its monitor. It hears two
things:

- the model's own health actions (``own``): ``fallback`` wants a fallback level, and
  ``restore`` wants the model back;
- the health of each level that is a monitored model (``level_health``): a level whose
  own policy serves its fallback is bad, and the ladder does not serve it.

The level it asks for is the best one that is wanted and not bad: 0 when the model is
restored, else the first level that is not bad (the last level when every one is).
Moves:

- **down** at once, to that level: the model falls back, or the level in use goes bad;
- **up** one level at a time (to the next level above that is not bad), and only once
  ``min_dwell`` seconds (the health policy's) have passed since the last step; a climb
  that is not yet due happens at a later ``tick``.

Each move is a ``Step``; the monitor turns it into a signed command carrying the level
(``restore`` for level 0, else ``fallback`` with the level).

>>> ladder = Ladder("ranker", ("ranker-cpu", "top_n_popular"), min_dwell=600.0)
>>> ladder.own("fallback", 0.0)
Step(level=1, at=0.0, reason='ranker fell back: serve ranker-cpu (level 1)')
>>> ladder.level_health("ranker-cpu", True, 60.0).level
2
>>> ladder.level_health("ranker-cpu", False, 300.0) is None, ladder.tick(660.0).level
(True, 1)
>>> ladder.own("restore", 700.0) is None, ladder.tick(1260.0).level
(True, 0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Literal

from streams.monitor.effects import CommandToSign, Point, point
from streams.portfolio import Model

__all__ = ["Ladder", "Step", "new_ladder", "relevel", "step_command", "step_point"]


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """The fleet is to serve ``level`` from event time ``at`` (seconds); ``reason`` is for
    humans and goes into the command."""

    level: int
    at: float
    reason: str


@dataclasses.dataclass
class Ladder:
    """One model's ladder; see the module docstring.

    Parameters
    ----------
    model_id
        The model, for the steps' reasons.
    levels
        The fallbacks, best first: level ``i`` is ``levels[i - 1]``.
    min_dwell
        Seconds after any step before the next climb.
    """

    model_id: str
    levels: tuple[str, ...]
    min_dwell: float
    level: int = 0
    wanted: bool = False
    bad: set[str] = dataclasses.field(default_factory=set)
    stepped_at: float = -math.inf

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("Ladder.levels: needs at least one level")
        if not (math.isfinite(self.min_dwell) and self.min_dwell >= 0):
            raise ValueError(f"Ladder.min_dwell={self.min_dwell!r}: expected seconds >= 0")

    def own(self, action: Literal["fallback", "restore"], at: float) -> Step | None:
        """The model's own policy asks for its fallback or for the model back."""
        self.wanted = action == "fallback"
        why = "fell back" if self.wanted else "is restored"
        return self._move(at, f"{self.model_id} {why}")

    def level_health(self, level_id: str, serves_fallback: bool, at: float) -> Step | None:
        """``level_id``, a level that is a monitored model, went bad or good again."""
        if level_id not in self.levels:
            raise ValueError(f"{level_id!r} is not a level of {self.model_id}'s ladder")
        if serves_fallback:
            self.bad.add(level_id)
        else:
            self.bad.discard(level_id)
        why = "serves its own fallback" if serves_fallback else "is restored"
        return self._move(at, f"{level_id} {why}")

    def tick(self, at: float) -> Step | None:
        """Event time passed: a climb that waited for the dwell may be due."""
        return self._move(at, "dwell passed")

    def target(self) -> int:
        """The level the ladder heads for: 0, or the first fallback level not bad."""
        if not self.wanted:
            return 0
        for level, name in enumerate(self.levels, start=1):
            if name not in self.bad:
                return level
        return len(self.levels)

    def _good(self, level: int) -> bool:
        return level == 0 or self.levels[level - 1] not in self.bad

    def _move(self, at: float, why: str) -> Step | None:
        target = self.target()
        if target > self.level:
            new = target
        elif target < self.level and at - self.stepped_at >= self.min_dwell:
            new = next(j for j in range(self.level - 1, target - 1, -1) if self._good(j))
        else:
            return None
        self.level, self.stepped_at = new, at
        served = self.model_id if new == 0 else f"{self.levels[new - 1]} (level {new})"
        return Step(new, at, f"{why}: serve {served}")


def new_ladder(model: Model, min_dwell: float) -> Ladder | None:
    """The model's ladder, or None when its fallback is a single level (its commands then
    carry no level, exactly as before ladders existed) or ``alert_only`` (failsoft never
    moves its fleet)."""
    if len(model.fallback.ladder) < 2 or not model.fallback.automatic:
        return None
    return Ladder(model.model_id, model.fallback.ladder, min_dwell)


def relevel(ladder: Ladder, commands: Iterable[CommandToSign]) -> list[CommandToSign]:
    """The model's own commands, through its ladder: a ``fallback`` or ``restore`` becomes
    the step the ladder takes (same seq: it is the same decision), or nothing when the
    ladder does not move yet (a climb waiting for the dwell; the seq is skipped, which
    nodes allow). Other actions pass unchanged."""
    out = []
    for command in commands:
        if command.action == "promote_shadow":
            out.append(command)
            continue
        step = ladder.own(command.action, command.issued_at / 1000.0)
        if step is not None:
            out.append(
                dataclasses.replace(
                    command,
                    action="restore" if step.level == 0 else "fallback",
                    reason=f"{command.reason}; {step.reason}",
                    level=step.level,
                )
            )
    return out


def step_command(ladder: Ladder, step: Step, last_seq: int) -> CommandToSign:
    """The command of a step the ladder took on its own (a level's health, a due climb)."""
    return CommandToSign.after(
        last_seq,
        model_id=ladder.model_id,
        action="restore" if step.level == 0 else "fallback",
        reason=step.reason,
        detector="ladder",
        issued_at=int(step.at * 1000),
        level=step.level,
    )


def step_point(ladder: Ladder, command: CommandToSign) -> Point:
    """The ``health`` point of a step: the level served from then on."""
    tags = {"model": ladder.model_id, "detector": "ladder"}
    return point("health", tags, {"level": command.level or 0}, command.issued_at)
