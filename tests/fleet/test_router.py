"""Router: the mode picks live, fallback or shadow, and a failing model fails soft."""

from __future__ import annotations

import logging

import pytest

from streams.fleet import Router


class Modes:
    def __init__(self) -> None:
        self.now: dict[str, str] = {}

    def mode(self, model_id: str) -> str:
        return self.now.get(model_id, "live")


def _live(user: str) -> str:
    return f"live:{user}"


def _fallback(user: str) -> str:
    return f"top:{user}"


def _shadow(user: str) -> str:
    return f"shadow:{user}"


@pytest.mark.parametrize(
    ("mode", "answer", "role"),
    [
        ("live", "live:u", "live"),
        ("fallback", "top:u", "fallback"),
        ("shadow", "shadow:u", "shadow"),
        ("something-newer", "live:u", "live"),
    ],
)
def test_mode_picks_the_function(mode: str, answer: str, role: str) -> None:
    modes = Modes()
    routed = Router(modes).register("recs", live=_live, fallback=_fallback, shadow=_shadow)
    modes.now["recs"] = mode
    assert routed.call("u") == (answer, role)
    assert routed("u") == answer


def test_shadow_mode_without_a_shadow_serves_live() -> None:
    modes = Modes()
    routed = Router(modes).register("recs", live=_live, fallback=_fallback)
    modes.now["recs"] = "shadow"
    assert routed.call("u") == ("live:u", "live")


def test_modes_are_per_model_and_the_decorator_registers() -> None:
    modes = Modes()
    router = Router(modes)

    @router.serve("recs", fallback=_fallback)
    def recommend(user: str) -> str:
        return f"fresh:{user}"

    other = router.register("other", live=_live, fallback=_fallback)
    modes.now["other"] = "fallback"
    assert recommend("u") == "fresh:u"
    assert other("u") == "top:u"
    assert set(router.models) == {"recs", "other"}


def _broken(user: str) -> str:
    raise RuntimeError("model server down")


def test_a_raising_model_fails_soft_and_is_counted() -> None:
    routed = Router(Modes()).register("recs", live=_broken, fallback=_fallback)
    assert routed.call("u") == ("top:u", "fallback")
    assert routed.errors == 1


def test_a_model_failing_on_every_call_logs_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routed = Router(Modes()).register("recs", live=_broken, fallback=_fallback)
    with caplog.at_level(logging.ERROR, logger="streams.fleet.router"):
        answers = [routed.call("u") for _ in range(1_000)]
    assert answers == [("top:u", "fallback")] * 1_000
    assert routed.errors == 1_000
    assert [record.getMessage() for record in caplog.records] == [
        "recs (live) raised; the fallback answers (error 1 since start)"
    ]


def test_fail_soft_on_error_can_be_turned_off() -> None:
    routed = Router(Modes()).register(
        "recs", live=_broken, fallback=_fallback, fallback_on_error=False
    )
    with pytest.raises(RuntimeError, match="model server down"):
        routed("u")
