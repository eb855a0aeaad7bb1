"""Router with a fallback ladder: a commanded level picks the rung, local fallbacks take 1."""

from __future__ import annotations

import pytest

from streams.fleet import BreakerSettings, Router
from tests.fleet.test_router import Modes


class LeveledModes(Modes):
    """Modes and ladder levels, as a ``ControlListener`` keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[str, int] = {}

    def level(self, model_id: str) -> int:
        return self.levels.get(model_id, 0)


def _cpu(user: str) -> str:
    return f"cpu:{user}"


def _top(user: str) -> str:
    return f"top:{user}"


def _gpu(user: str) -> str:
    raise RuntimeError("GPU out of memory")


@pytest.mark.parametrize(
    ("level", "answer", "served_level"),
    [(0, "cpu:u", 1), (1, "cpu:u", 1), (2, "top:u", 2), (7, "top:u", 2)],
)
def test_a_commanded_fallback_serves_its_level_of_the_ladder(
    level: int, answer: str, served_level: int
) -> None:
    modes = LeveledModes()
    routed = Router(modes).register("ranker", live=lambda u: f"gpu:{u}", fallback=[_cpu, _top])
    modes.now["ranker"], modes.levels["ranker"] = "fallback", level
    assert routed.route("u") == (answer, "fallback", "control", served_level)


def test_live_failures_fall_to_the_first_level_and_restore_serves_the_model() -> None:
    modes = LeveledModes()
    routed = Router(modes).register(
        "ranker", live=_gpu, fallback=[_cpu, _top], breaker=BreakerSettings(failures_to_trip=2)
    )
    assert [routed.route("u") for _ in range(3)] == [
        ("cpu:u", "fallback", "error", 1),
        ("cpu:u", "fallback", "error", 1),
        ("cpu:u", "fallback", "breaker_open:errors", 1),
    ]
    modes.now["ranker"], modes.levels["ranker"] = "fallback", 2
    assert routed.route("u") == ("top:u", "fallback", "control", 2)


def test_a_mode_source_without_levels_serves_the_first_fallback() -> None:
    modes = Modes()
    routed = Router(modes).register("ranker", live=_gpu, fallback=(_cpu, _top))
    modes.now["ranker"] = "fallback"
    assert routed.route("u") == ("cpu:u", "fallback", "control", 1)
    assert routed.fallback is _cpu and routed.ladder == (_cpu, _top)


def test_an_empty_ladder_is_refused() -> None:
    with pytest.raises(ValueError, match="ranker: fallback must be a callable or a sequence"):
        Router(Modes()).register("ranker", live=_gpu, fallback=[])
