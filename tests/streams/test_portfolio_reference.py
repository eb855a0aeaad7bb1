"""The portfolio reference lists exactly the keys the code takes, and the README shows it.

The keys in the code are found by asking it: each table of the file, and each detector
group's monitor, is given a key it cannot know, and its refusal lists the valid ones;
where a group passes its keys to detectors (drift tests, the health policy, a prefix's
detector), their constructors' signatures list them. A key someone adds to the parser or
to a monitor therefore shows up here without anyone editing this test.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from detectors.leaks.availability_gap import AvailabilityGap
from detectors.leaks.label_coincidence import LabelCoincidentWrites
from detectors.leaks.write_lag import WriteLag
from detectors.shadow.agreement import ShadowAgreement
from detectors.shadow.promotion import ShadowPromotion
from streams.monitor import Monitor
from streams.monitor import watch as watch_module
from streams.portfolio import (
    DEFAULT_TRIP_SHARE,
    DETECTOR_DURATIONS,
    PortfolioError,
    parse_portfolio,
)
from streams.portfolio_reference import FILE_LEVEL, KEYS, MARK_BEGIN, MARK_END, render

README = Path(__file__).parents[2] / "README.md"
MODEL = """
[models.m]
owner = "o"
tier = "cpu"
fallback = "f"
label_delay = "1h"
shadow = "v2"
features = { x = "numeric" }
"""
UNKNOWN = "zz_not_a_key"
# The class each "<prefix>_<argument>" key goes to.
PREFIX_CLASSES: dict[str, type[Any]] = {
    "coincidence": LabelCoincidentWrites,
    "gap": AvailabilityGap,
    "write_lag": WriteLag,
    "agreement": ShadowAgreement,
    "promotion": ShadowPromotion,
}
# Arguments that the code sets from elsewhere and refuses in the group (each is checked
# to be refused below, so this list cannot hide a key the code takes).
SET_ELSEWHERE = {
    "detectors.leaks.write_lag_sla": "features.<name>.write_lag_sla",
    "detectors.shadow.promotion_min_stable_period": "shadow.min_stable_period",
    "detectors.health.escalate_after": "escalation_limit",
}


def refusal(text: str, *, monitor: bool = False) -> str:
    """The reason the parser (or, with ``monitor``, the model's Monitor) gives."""
    with pytest.raises(PortfolioError) as caught:
        portfolio = parse_portfolio(text)
        if monitor:
            Monitor(portfolio.models["m"])
    return caught.value.reason


def valid_keys(text: str, *, monitor: bool = False) -> list[str]:
    reason = refusal(text, monitor=monitor)
    match = re.search(r"valid: (.*)$", reason)
    assert match, reason
    return [key.strip() for key in match.group(1).split(",")]


def arguments(cls: type[Any]) -> set[str]:
    return set(inspect.signature(cls).parameters) - {"self", "reference"}


def group_keys(group: str) -> set[str]:
    table = f"[models.m.detectors.{group}]\n{UNKNOWN} = 1\n"
    if group == "drift":
        tests = [cls for methods in watch_module.DRIFT_METHODS.values() for cls in methods.values()]
        return set(watch_module._WATCH_KEYS).union(*map(arguments, tests))
    if group == "health":
        return arguments(watch_module.HealthPolicy)
    keys: set[str] = set()
    for key in valid_keys(MODEL + table, monitor=True):
        prefix, _, rest = key.partition("_<argument>")
        if not _ and not rest:
            keys.add(key)
            continue
        assert prefix in PREFIX_CLASSES, f"map the prefix {prefix!r} to its detector class"
        keys |= {f"{prefix}_{name}" for name in arguments(PREFIX_CLASSES[prefix])}
    return keys


def keys_in_code() -> set[str]:
    found = {
        key for key in valid_keys(f"{UNKNOWN} = 1\n" + MODEL) if key not in ("defaults", "models")
    }
    defaults = valid_keys(f"[defaults]\n{UNKNOWN} = 1\n" + MODEL)
    model_keys = valid_keys(MODEL + f"{UNKNOWN} = 1\n")
    found |= {f"defaults.{key}" for key in defaults if key not in model_keys}
    tables = {
        "fallback": MODEL.replace(
            'fallback = "f"', f'fallback = {{ strategy = "f", {UNKNOWN} = 1 }}'
        ),
        "features.<name>": MODEL.replace(
            'x = "numeric"', f'x = {{ kind = "numeric", {UNKNOWN} = 1 }}'
        ),
        "shadow": MODEL.replace('shadow = "v2"', f'shadow = {{ version = "v2", {UNKNOWN} = 1 }}'),
        "slo": MODEL + f"slo = {{ latency_p99_ms = 50, {UNKNOWN} = 1 }}\n",
    }
    for table, text in tables.items():
        found |= {f"{table}.{key}" for key in valid_keys(text)}
    groups = valid_keys(MODEL + f"[models.m.detectors.{UNKNOWN}]\n")
    for group in groups:
        found |= {f"detectors.{group}.{key}" for key in group_keys(group)}
    tables_done = {"fallback", "features", "shadow", "detectors", "slo"}
    found |= {key for key in model_keys if key not in tables_done}
    return found - set(SET_ELSEWHERE)


def test_every_key_in_the_code_is_in_the_reference_and_no_other() -> None:
    documented = [key.path for key in KEYS]
    assert len(documented) == len(set(documented)), "a key is listed twice"
    in_code = keys_in_code()
    assert sorted(in_code - set(documented)) == [], "keys the reference lacks"
    assert sorted(set(documented) - in_code) == [], "keys the code does not take"
    assert set(FILE_LEVEL) <= in_code


@pytest.mark.parametrize("path", sorted(SET_ELSEWHERE))
def test_keys_set_elsewhere_are_refused_in_their_group(path: str) -> None:
    _, group, name = path.split(".")
    text = MODEL + f"[models.m.detectors.{group}]\n{name} = 1\n"
    assert refusal(text, monitor=True)


def test_every_detector_duration_is_a_duration_in_the_reference() -> None:
    durations = {
        f"detectors.{group}.{name}" for group, names in DETECTOR_DURATIONS.items() for name in names
    }
    documented = {key.path for key in KEYS if key.type == "duration"}
    assert {path for path in documented if path.startswith("detectors.")} == durations


def test_the_readme_shows_the_reference_as_rendered() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(MARK_BEGIN), text.index(MARK_END) + len(MARK_END)
    # To update: python -m streams.portfolio_reference, pasted over the old table.
    assert text[start:end] == render()


def test_a_key_added_to_a_monitor_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a later per-model key (an effect floor, say) looks like to this check.
    monkeypatch.setattr(
        watch_module, "_OUTPUT_DEFAULTS", {**watch_module._OUTPUT_DEFAULTS, "effect_floor": 0.1}
    )
    assert "detectors.output.effect_floor" in keys_in_code() - {key.path for key in KEYS}


def code_defaults() -> dict[str, object]:
    """The defaults of detector keys, as the monitors and detectors define them."""
    from streams.monitor import label_join, leak_watch, shadow_join

    def signature_defaults(cls: type[Any]) -> dict[str, object]:
        return {
            name: p.default
            for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    found: dict[str, object] = {}
    for prefix, cls in PREFIX_CLASSES.items():
        group = "shadow" if prefix in ("agreement", "promotion") else "leaks"
        given = {**signature_defaults(cls), **leak_watch._DETECTOR_DEFAULTS.get(prefix, {})}
        found |= {f"detectors.{group}.{prefix}_{name}": v for name, v in given.items()}
    outputs = {"score_": watch_module.ResidualCUSUM, "error_": watch_module.BernoulliCUSUM}
    for prefix, cls in outputs.items():
        found |= {f"detectors.output.{prefix}{k}": v for k, v in signature_defaults(cls).items()}
    found |= {f"detectors.output.{k}": v for k, v in watch_module._OUTPUT_DEFAULTS.items()}
    found |= {f"detectors.performance.{k}": v for k, v in label_join.DEFAULTS.items()}
    health = signature_defaults(watch_module.HealthPolicy)
    found |= {f"detectors.health.{k}": v for k, v in health.items()}
    found |= {
        "detectors.leaks.report_every": leak_watch.DEFAULT_REPORT_EVERY,
        "detectors.leaks.max_bytes": leak_watch.DEFAULT_MAX_BYTES,
        "detectors.shadow.pair_ttl": shadow_join.DEFAULT_PAIR_TTL,
        "detectors.shadow.report_every": shadow_join.DEFAULT_REPORT_EVERY,
        "detectors.shadow.max_pending": shadow_join.DEFAULT_MAX_PENDING,
        "slo.trip_share": DEFAULT_TRIP_SHARE,
    }
    return found


def test_numeric_defaults_in_the_reference_are_the_codes() -> None:
    defaults = code_defaults()
    checked = []
    for key in KEYS:
        first = key.default.split(" ")[0]
        try:
            documented = float(first)
        except ValueError:
            continue  # "required", "none", "learnt", a formula: said in words
        if key.path in defaults:
            code = defaults[key.path]
            assert isinstance(code, int | float), (key.path, code)
            assert documented == float(code), key.path
            checked.append(key.path)
    assert len(checked) >= 55  # the check reaches most keys
