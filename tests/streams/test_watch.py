"""A model's watch as pure code: predictions in, evidence, transitions and actions out."""

from __future__ import annotations

import collections
import gc
import itertools
import json
import math
import pickle
import types
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contracts import FeatureSeen, Prediction, Score
from schemas.signing import Keyring
from streams.monitor.watch import (
    Effects,
    Filling,
    ModelWatch,
    Observation,
    consequences,
    describe,
    detect,
    new_watch,
    observe,
)
from streams.portfolio import Model, PortfolioError, load_portfolio, parse_portfolio
from tests.detectors.batching import same_state

ROOT = Path(__file__).resolve().parents[2]

SMALL = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
label_delay = "1h"
escalation_limit = "30m"
features = { age = "numeric", country = "categorical" }
[models.ranker.detectors.drift]
window_size = 500
reference_size = 1000
[models.ranker.detectors.health]
confirm = 2
min_dwell = 60
clear_after = 600
"""


def small_model(extra: str = "") -> Model:
    model = parse_portfolio(SMALL + extra).get("ranker")
    assert model is not None
    return model


def prediction(n: int, age: float, country: str, role: str = "live") -> Prediction:
    return Prediction(
        schema_version=1,
        request_id=f"r{n}",
        model_id="ranker",
        model_version="v1",
        role=role,  # type: ignore[arg-type]
        entity_id=f"u{n}",
        predicted_at=1_000_000 + n * 1000,  # one per second of event time
        output=Score(score=0.5),
        features={"age": FeatureSeen(age, 0), "country": FeatureSeen(country, 0)},
        latency_ms=1.0,
    )


def stream(rng: np.random.Generator, start: int, count: int, shift: float) -> list[Prediction]:
    ages = rng.normal(40.0 + shift, 5.0, count)
    countries = rng.choice(["de", "fr", "it"], count, p=[0.5, 0.3, 0.2])
    return [
        prediction(start + i, float(a), str(c))
        for i, (a, c) in enumerate(zip(ages, countries, strict=True))
    ]


def run(watch: ModelWatch, predictions: list[Prediction]) -> list[tuple[int, Observation]]:
    return [(n, o) for n, p in enumerate(predictions) if (o := observe(watch, p))]


def test_example_portfolio_builds_a_watch_per_model() -> None:
    for model in load_portfolio(ROOT / "deploy" / "portfolio.example.toml"):
        watch = new_watch(model)
        assert set(watch.drift.features) == {feature.name for feature in model.features}
        assert watch.policy.escalate_after == model.escalation_limit.total_seconds()


def shifted_then_normal(seed: int) -> list[Prediction]:
    """2,000 normal, 2,000 with age shifted by three standard deviations, 4,000 normal."""
    rng = np.random.default_rng(seed)
    return stream(rng, 0, 2000, 0.0) + stream(rng, 2000, 2000, 15.0) + stream(rng, 4000, 4000, 0.0)


def test_drift_falls_back_once_and_restores_once_when_the_stream_returns() -> None:
    watch = new_watch(small_model())
    observations = run(watch, shifted_then_normal(7))

    actions = [(n, a.action, a.seq) for n, o in observations for a in o.actions]
    # Reference: the first 1,000; windows of 500 end at 1499, 1999, ... The first shifted
    # window (2499) degrades, the second (2999) confirms; the last shifted window is 3999,
    # then 600 s of quiet move to probing (4599) and 600 more restore (5199).
    assert actions == [(2999, "fallback", 1), (5199, "restore", 2)]
    alarms = [(n, e.feature) for n, o in observations for e in o.evidence if e.alarm]
    assert alarms == [(2499, "age"), (2999, "age"), (3499, "age"), (3999, "age")]
    states = [(n, t.to_state.value) for n, o in observations for t in o.transitions]
    assert states == [(2499, "degraded"), (2999, "fallback"), (4599, "probing"), (5199, "healthy")]


def test_a_stationary_stream_never_acts() -> None:
    watch = new_watch(small_model())
    observations = run(watch, stream(np.random.default_rng(11), 0, 8000, 0.0))
    assert [a for _, o in observations for a in o.actions] == []
    evidence = [e for _, o in observations for e in o.evidence]
    drift = [e.feature for e in evidence if e.feature is not None]
    assert len(drift) == 2 * 14  # two features, 14 windows after the reference
    # Output reports every 500 scores (the score's warm-up is 50) and every 500 requests
    # after the error rate's warm-up of 2,000.
    output = collections.Counter(e.detector for e in evidence if e.feature is None)
    assert output == {"score": 16, "error_rate": 12}
    assert not any(e.alarm for e in evidence)


def test_a_pickled_watch_continues_exactly_where_it_stopped() -> None:
    predictions = shifted_then_normal(7)
    expected = [(n, o.actions) for n, o in run(new_watch(small_model()), predictions)]

    first = new_watch(small_model())
    run(first, predictions[:3100])
    restored = pickle.loads(pickle.dumps(first))  # what the changelog table stores
    rest = [(n + 3100, o.actions) for n, o in run(restored, predictions[3100:])]
    assert rest == [x for x in expected if x[0] >= 3100]
    assert [a.action for _, actions in rest for a in actions] == ["restore"]


def test_shadow_predictions_do_not_feed_drift_but_still_move_time() -> None:
    watch = new_watch(small_model())
    for n in range(500):
        observe(watch, prediction(n, 40.0, "de", role="shadow"))
    assert all(state == Filling(state.spec) for state in watch.drift.features.values())
    assert watch.policy.since == 1_000_000 / 1000


def test_escalation_is_due_once_per_fallback_episode() -> None:
    rng = np.random.default_rng(7)
    watch = new_watch(small_model())
    predictions = stream(rng, 0, 2000, 0.0) + stream(rng, 2000, 6000, 15.0)
    observations = run(watch, predictions)
    due = [n for n, o in observations if o.escalation_due]
    # Fallback at 2999; the escalation limit, 30 min, is 1,800 predictions later.
    assert due == [2999 + 1800]
    assert [a.action for _, o in observations for a in o.actions] == ["fallback"]


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ("window_size = 500", 'method = "chi_square"', "detectors.drift.method", "numeric"),
        ("window_size = 500", "window = 10", "detectors.drift", "window"),
        ("reference_size = 1000", "reference_size = 1", "detectors.drift.reference_size", ">= 2"),
        ("window_size = 500", "threshold = -1.0", "detectors.drift", "threshold"),
    ],
)
def test_bad_drift_settings_name_the_model_and_key(
    old: str, new: str, key: str, reason: str
) -> None:
    model = parse_portfolio(SMALL.replace(old, new)).get("ranker")
    assert model is not None
    with pytest.raises(PortfolioError) as caught:
        new_watch(model)
    assert (caught.value.model, caught.value.key) == ("ranker", key)
    assert reason in caught.value.reason


def test_bad_health_settings_name_the_model_and_key() -> None:
    model = parse_portfolio(SMALL.replace("confirm = 2", "confirm = 0")).get("ranker")
    assert model is not None
    with pytest.raises(PortfolioError) as caught:
        new_watch(model)
    assert (caught.value.model, caught.value.key) == ("ranker", "detectors.health")
    assert "confirm" in caught.value.reason


KEYRING = Keyring.parse(private_key="k1=" + "3c" * 32)


def effects_of(model: Model, predictions: list[Prediction]) -> list[Effects]:
    watch = new_watch(model)
    # As the monitor does: each observation's consequences right after it, on the same watch.
    return [consequences(model, watch, o) for p in predictions if (o := observe(watch, p))]


def test_consequences_sign_one_command_per_action_with_growing_seq() -> None:
    effects = effects_of(small_model(), shifted_then_normal(7))
    commands = [c.signed(KEYRING) for e in effects for c in e.commands]
    assert [(c.model_id, c.action, c.detector) for c in commands] == [
        ("ranker", "fallback", "drift_psi"),
        ("ranker", "restore", "health"),
    ]
    assert all(KEYRING.verify(c) for c in commands)
    assert [c.issued_at for c in commands] == [1_000_000 + 2999_000, 1_000_000 + 5199_000]
    assert commands[0].seq == commands[0].issued_at < commands[1].seq
    assert [w for e in effects for w in e.withheld] == []


def test_consequences_raise_one_alert_per_state_and_detector_and_write_points() -> None:
    effects = effects_of(small_model(), shifted_then_normal(7))
    alerts = [(a.event, a.severity, a.attributes.get("feature")) for e in effects for a in e.alerts]
    assert alerts == [
        ("drift_psi", "warning", "age"),
        ("ModelDegraded", "warning", None),
        ("ModelFallback", "major", None),
        ("drift_psi", "normal", None),
        ("ModelProbing", "minor", None),
        ("FallbackEscalated", "critical", None),  # 30 min after the fallback, still probing
        ("ModelHealthy", "normal", None),
        ("EscalationCleared", "normal", None),
    ]
    points = [p for e in effects for p in e.points]
    drift = [p for p in points if p.measurement == "drift" and "feature" in p.tags]
    assert len(drift) == 2 * 14
    assert {p.tags["feature"] for p in drift} == {"age", "country"}
    output = [p for p in points if p.measurement == "drift" and "feature" not in p.tags]
    assert {p.tags["detector"] for p in output} == {"score", "error_rate"}
    assert all(p.fields["drift"] == 0 for p in output)
    health = [
        (p.fields["state"], p.fields["state_code"]) for p in points if p.measurement == "health"
    ]
    assert health == [("degraded", 1), ("fallback", 3), ("probing", 2), ("healthy", 0)]


def test_alert_only_model_withholds_commands() -> None:
    model = parse_portfolio(
        SMALL.replace(
            'fallback = "top_n_popular"', 'fallback = { strategy = "x", mode = "alert_only" }'
        )
    ).get("ranker")
    assert model is not None
    # The shell withholds a worker's commands when it has no signing key (test_app_drift).
    effects = effects_of(model, shifted_then_normal(7))
    assert [c for e in effects for c in e.commands] == []
    assert [w.action for e in effects for w in e.withheld] == ["fallback", "restore"]


def test_escalation_alert_once_and_cleared_on_restore() -> None:
    rng = np.random.default_rng(7)
    predictions = (
        stream(rng, 0, 2000, 0.0) + stream(rng, 2000, 3000, 15.0) + stream(rng, 5000, 3000, 0.0)
    )
    effects = effects_of(small_model(), predictions)
    events = [a.event for e in effects for a in e.alerts if a.group == "escalation"]
    assert events == ["FallbackEscalated", "EscalationCleared"]
    [escalation] = [a for e in effects for a in e.alerts if a.event == "FallbackEscalated"]
    assert escalation.severity == "critical"
    assert escalation.value == "30 min"


def test_describe_tells_state_since_why_and_last_evidence() -> None:
    model = small_model()
    assert describe(model, None)["state"] == "unknown"
    watch = new_watch(model)
    for p in shifted_then_normal(7)[:3000]:
        observation = observe(watch, p)
        if observation:
            consequences(model, watch, observation)
    entry = describe(model, watch)
    assert (entry["state"], entry["detector"], entry["why"]) == (
        "fallback",
        "drift_psi",
        "2 alarms confirmed",
    )
    assert entry["since"] == entry["fallback_since"] == "1970-01-01T01:06:39.000+00:00"
    assert entry["alarming"] == {"drift_psi": ["age"]}
    assert entry["last_evidence"]["feature"] in {"age", "country"}
    assert entry["last_seq"] > 0
    json.dumps(entry)  # the view serves it as JSON


def with_future_value(predictions: list[Prediction], n: int, skew_ms: int) -> list[Prediction]:
    """The predictions, with ``age`` of prediction ``n`` written ``skew_ms`` after it."""
    p = predictions[n]
    age = FeatureSeen(p.features["age"].value, p.predicted_at + skew_ms)
    changed = msgspec.structs.replace(p, features=p.features | {"age": age})
    return [*predictions[:n], changed, *predictions[n + 1 :]]


def test_a_value_from_the_future_falls_back_at_once_and_the_model_recovers() -> None:
    model = small_model()
    normal = stream(np.random.default_rng(3), 0, 4000, 0.0)
    future_stream = with_future_value(normal, 1500, skew_ms=3_600_000)
    effects = effects_of(model, future_stream)
    commands = [c for e in effects for c in e.commands]
    assert [(c.action, c.detector, c.issued_at) for c in commands] == [
        ("fallback", "future_values", future_stream[1500].predicted_at),
        ("restore", "health", future_stream[1500].predicted_at + 1_200_000),  # 2 x clear_after
    ]
    leak_alerts = [
        (a.severity, a.attributes.get("feature"))
        for e in effects
        for a in e.alerts
        if a.event == "future_values"
    ]
    assert leak_alerts == [("critical", "age"), ("normal", None)]
    [leak] = [p for e in effects for p in e.points if p.measurement == "leak"]
    assert leak.tags == {"model": "ranker", "feature": "age", "detector": "future_values"}
    assert (leak.fields["skew_ms"], leak.fields["future_values"]) == (3_600_000, 1)


def test_a_write_within_the_skew_tolerance_is_not_from_the_future() -> None:
    model = small_model("[models.ranker.detectors.leaks]\nskew_tolerance = 50\n")
    stream = with_future_value([prediction(n, 40.0, "de") for n in range(100)], 10, skew_ms=50)
    assert effects_of(model, stream) == []
    late = with_future_value([prediction(n, 40.0, "de") for n in range(100)], 10, skew_ms=51)
    assert [c.action for e in effects_of(model, late) for c in e.commands] == ["fallback"]


def test_bad_skew_tolerance_names_the_model_and_key() -> None:
    # A negative duration is refused as the file is read.
    with pytest.raises(PortfolioError) as caught:
        new_watch(small_model("[models.ranker.detectors.leaks]\nskew_tolerance = -1\n"))
    assert (caught.value.model, caught.value.key) == ("ranker", "detectors.leaks.skew_tolerance")


OUTPUT_FALLBACK_SCORE = 0.27  # what the fleet serves when the model raised


def output_stream(
    rng: np.random.Generator,
    start: int,
    count: int,
    constant: float | None = None,
    error_rate: float = 0.01,
    role: str = "live",
    shift: float = 0.0,
) -> list[Prediction]:
    """Logit-normal scores (``constant`` instead when given; ``shift`` moves the logit's
    mean); a share ``error_rate`` of requests served by the fallback because the model
    raised."""
    predictions = []
    for n in range(start, start + count):
        score = float(1.0 / (1.0 + np.exp(-rng.normal(-1.0 + shift, 1.0))))
        age, country = float(rng.normal(40.0, 5.0)), str(rng.choice(["de", "fr"]))
        served = role
        if constant is not None:
            score = constant
        if served == "fallback" or rng.random() < error_rate:
            served, score = "fallback", OUTPUT_FALLBACK_SCORE
        predictions.append(
            msgspec.structs.replace(prediction(n, age, country, served), output=Score(score=score))
        )
    return predictions


def output_alarms(observations: list[tuple[int, Observation]]) -> list[tuple[int, str]]:
    return [(n, e.detector) for n, o in observations for e in o.evidence if e.alarm]


def actions_of(observations: list[tuple[int, Observation]]) -> list[tuple[int, str]]:
    return [(n, a.action) for n, o in observations for a in o.actions]


def test_a_constant_output_falls_back_through_the_score_cusum() -> None:
    rng = np.random.default_rng(3)
    predictions = output_stream(rng, 0, 3000) + output_stream(rng, 3000, 3000, constant=0.0)
    observations = run(new_watch(small_model()), predictions)
    # The constant 0.0 is about 1.5 standard deviations below the mean. The CUSUM's alarm
    # renews its reference; from 20 scores after the change, every 10 scores measure the
    # change against the reference before it, and keep the model on its fallback (no
    # restore in 3,000 scores) once the degraded state is min_dwell (60 s) old.
    alarms = output_alarms(observations)
    assert alarms[:3] == [(3003, "score"), (3019, "score"), (3029, "score")]
    assert {e.details.get("cause") for _, o in observations for e in o.evidence if e.alarm} == {
        "mean_down",
        "sustained",
    }
    assert actions_of(observations) == [(3079, "fallback")]


def few_scores_a_clear_after() -> list[Prediction]:
    """3,000 healthy scores a second apart, then 400 constant ones 75 s apart: 8 in
    clear_after (600 s), fewer than the 10 between two looks of the score's episode. The
    scores keep coming on the fallback."""
    rng = np.random.default_rng(3)
    predictions = output_stream(rng, 0, 3000) + output_stream(rng, 3000, 400, constant=0.0)
    slow = [
        msgspec.structs.replace(p, predicted_at=p.predicted_at + (n - 3000) * 74_000)
        for n, p in enumerate(predictions[3000:], start=3000)
    ]
    return predictions[:3000] + slow


def test_a_constant_output_of_a_few_scores_a_clear_after_stays_on_its_fallback() -> None:
    observations = run(new_watch(small_model()), few_scores_a_clear_after())
    # The score's episode looks again at the first score clear_after / 2 (300 s) after its
    # last look: the second look confirms the degraded model, and on its fallback it is
    # never quiet long enough to probe and be restored while the change lasts. With a
    # look every 10 scores only (750 s), the degraded model cleared before the second
    # look, again and again, and never fell back.
    assert actions_of(observations) == [(3023, "fallback")]


def test_an_output_alarm_names_the_model_not_an_empty_feature() -> None:
    rng = np.random.default_rng(3)
    model = small_model()
    watch = new_watch(model)
    predictions = output_stream(rng, 0, 3000) + output_stream(rng, 3000, 20, constant=0.0)
    observations = run(watch, predictions)
    alerts = [
        alert
        for _, observation in observations
        for alert in consequences(model, watch, observation).alerts
        if alert.event == "score"
    ]
    # The alarm measures 3 changed scores among 20: below the floor until the next look.
    assert [(a.severity, a.text) for a in alerts] == [
        ("informational", "ranker: score alarms, below its effect-size floor"),
        ("warning", "ranker: score alarms"),
    ]
    assert all("feature" not in alert.attributes for alert in alerts)
    assert describe(model, watch)["alarming"] == {"score": []}


def test_an_error_spike_falls_back_through_the_error_rate_cusum() -> None:
    rng = np.random.default_rng(3)
    predictions = output_stream(rng, 0, 3000) + output_stream(rng, 3000, 3000, error_rate=0.3)
    watch = new_watch(small_model())
    assert watch.output is not None
    # 0.01 false fallbacks per model-day over drift, score and error_rate, 2,000
    # predictions a day: alpha = 0.01 / 3 / 2000, threshold = ln(1 / alpha).
    assert watch.output.error_rate.detector.threshold == pytest.approx(np.log(6e5))
    observations = run(watch, predictions)
    assert output_alarms(observations)[:2] == [(3045, "error_rate"), (3104, "error_rate")]
    # While on fallback (and probing) errors are not counted: the restore comes after 1,200
    # quiet seconds, and the errors that continue send the model back.
    assert actions_of(observations) == [
        (3105, "fallback"),
        (4305, "restore"),
        (4534, "fallback"),
        (5734, "restore"),
        (5955, "fallback"),
    ]


def test_the_fallback_the_watch_ordered_is_not_an_error() -> None:
    rng = np.random.default_rng(3)
    # The constant output sends the model to its fallback at 3079; from then on the fleet
    # serves the fallback, also for 30 s after the restore (4279) until it obeys.
    predictions = (
        output_stream(rng, 0, 3000)
        + output_stream(rng, 3000, 80, constant=0.0)
        + output_stream(rng, 3080, 1230, role="fallback")
        + output_stream(rng, 4310, 3000)
    )
    observations = run(new_watch(small_model()), predictions)
    assert actions_of(observations) == [(3079, "fallback"), (4279, "restore")]
    assert "error_rate" not in {detector for _, detector in output_alarms(observations)}


def test_output_detectors_stay_silent_on_a_stationary_stream() -> None:
    watch = new_watch(small_model())
    observations = run(watch, output_stream(np.random.default_rng(11), 0, 30_000))
    assert output_alarms(observations) == []
    assert actions_of(observations) == []
    reports = collections.Counter(
        e.detector for _, o in observations for e in o.evidence if e.feature is None
    )
    # Every 500 live scores, and every 500 requests after the error rate's warm-up.
    assert reports == {"score": 59, "error_rate": 56}


def test_output_detectors_can_be_turned_off() -> None:
    watch = new_watch(small_model("[models.ranker.detectors.output]\nenabled = false\n"))
    assert watch.output is None
    rng = np.random.default_rng(3)
    observations = run(
        watch, output_stream(rng, 0, 3000) + output_stream(rng, 3000, 3000, constant=0.0)
    )
    assert actions_of(observations) == []


@pytest.mark.parametrize(
    ("setting", "key", "reason"),
    [
        ("score_alowance = 0.5", "detectors.output.score_alowance", "unknown key"),
        ('error_odds_ratio = "2"', "detectors.output.error_odds_ratio", "a number"),
        ("enabled = 1", "detectors.output.enabled", "true or false"),
        ("score_allowance = -1.0", "detectors.output.score_allowance", "allowance"),
        ("error_odds_ratio = 0.5", "detectors.output.error_odds_ratio", "odds_ratio"),
        ("score_warm_up = 2.5", "detectors.output.score_warm_up", "warm_up"),
        (
            "false_fallbacks_per_model_day = 2.0",
            "detectors.output.false_fallbacks_per_model_day",
            "0 < value < 1",
        ),
        ("predictions_per_day = 0", "detectors.output.predictions_per_day", "> 0"),
        ("restore_grace = -1", "detectors.output.restore_grace", "duration must be 0 or more"),
    ],
)
def test_bad_output_settings_name_the_model_and_key(setting: str, key: str, reason: str) -> None:
    with pytest.raises(PortfolioError) as caught:
        new_watch(small_model(f"[models.ranker.detectors.output]\n{setting}\n"))
    assert (caught.value.model, caught.value.key) == ("ranker", key)
    assert reason in caught.value.reason


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-5.0, 5.0), st.just(math.nan), st.just(math.inf)),
        min_size=0,
        max_size=260,
    ),
    cuts=st.lists(st.integers(0, 260), max_size=6),
)
def test_feature_drift_in_batches_finds_the_windows_one_by_one_does(
    values: list[float | None], cuts: list[int]
) -> None:
    small = SMALL.replace(
        "window_size = 500\nreference_size = 1000", "window_size = 20\nreference_size = 30"
    )
    model = parse_portfolio(small).models["ranker"]
    one, many = new_watch(model).drift, new_watch(model).drift
    expected = []
    for n, value in enumerate(values):
        expected += [(n, *rest) for _, *rest in one.update("age", value)]
    found = []
    bounds = [0, *sorted(c for c in cuts if c <= len(values)), len(values)]
    for start, stop in itertools.pairwise(bounds):
        found += [(start + n, *rest) for n, *rest in many.update_many("age", values[start:stop])]
    assert [(n, s, d) for n, s, _, d, _ in found] == [(n, s, d) for n, s, _, d, _ in expected]
    assert [p for _, _, p, _, _ in found] == pytest.approx(
        [p for _, _, p, _, _ in expected], nan_ok=True
    )
    assert [e for *_, e in found] == pytest.approx([e for *_, e in expected])
    kept, expected_kept = many.features["age"], one.features["age"]
    if isinstance(expected_kept, Filling):
        assert kept == expected_kept
    else:
        assert same_state(kept, expected_kept)
    assert many.skipped_values() == one.skipped_values()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    change=st.integers(0, 300),
    missing=st.lists(st.integers(0, 399), max_size=20),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_feature_drift_in_batches_cuts_the_reference_as_one_by_one_does(
    seed: int, change: int, missing: list[int], cuts: list[int]
) -> None:
    # A reference of 240 can hold a change (100 values on either side of it at least):
    # the values after it then come back as the first windows, at the value that
    # completed the reference.
    small = SMALL.replace(
        "window_size = 500\nreference_size = 1000", "window_size = 20\nreference_size = 240"
    )
    model = parse_portfolio(small).models["ranker"]
    one, many = new_watch(model).drift, new_watch(model).drift
    rng = np.random.default_rng(seed)
    values: list[float | None] = rng.normal(0.0, 1.0, 400).tolist()
    values[change:] = [v + 3.0 for v in rng.normal(0.0, 1.0, 400 - change)]
    for i in missing:
        values[i] = None if i % 2 else math.nan
    expected = []
    for n, value in enumerate(values):
        expected += [(n, *rest) for _, *rest in one.update("age", value)]
    found = []
    bounds = [0, *sorted(cuts), len(values)]
    for start, stop in itertools.pairwise(bounds):
        found += [(start + n, *rest) for n, *rest in many.update_many("age", values[start:stop])]
    assert [(n, s, d) for n, s, _, d, _ in found] == [(n, s, d) for n, s, _, d, _ in expected]
    assert [e for *_, e in found] == pytest.approx([e for *_, e in expected])
    assert np.array_equal(many.features["age"].reference, one.features["age"].reference)
    assert same_state(many.features["age"], one.features["age"])


def test_a_drift_inside_the_reference_cuts_it_and_falls_back() -> None:
    watch = new_watch(small_model())
    rng = np.random.default_rng(7)
    # Age shifts by three standard deviations after 300 predictions, while the
    # reference of 1,000 fills: without the cut the reference holds mostly shifted ages,
    # and the windows' alarms, 1,499 to 2,999, stay below the floor and move nothing.
    predictions = stream(rng, 0, 300, 0.0) + stream(rng, 300, 2700, 15.0)
    observations = run(watch, predictions)
    # The reference keeps the 300 ages before the change; the 700 after it are one
    # window of 500 at once (999) and most of the next (1299).
    assert len(watch.drift.features["age"].reference) == 300
    assert drift_alarms(observations) == [(n, True) for n in (999, 1299, 1799, 2299, 2799)]
    assert actions_of(observations) == [(1299, "fallback")]
    # Country, unchanged, keeps its whole reference and stays silent.
    assert sum(watch.drift.features["country"].reference.values()) == 1000


def test_a_watch_pickled_while_its_reference_fills_cuts_it_as_one_never_pickled() -> None:
    rng = np.random.default_rng(7)
    predictions = stream(rng, 0, 300, 0.0) + stream(rng, 300, 2700, 15.0)
    expected = run(new_watch(small_model()), predictions)
    first = new_watch(small_model())
    run(first, predictions[:700])
    restored = pickle.loads(pickle.dumps(first))
    rest = [(n + 700, o) for n, o in run(restored, predictions[700:])]
    assert (
        drift_alarms(rest)
        == drift_alarms(expected)
        == [(n, True) for n in (999, 1299, 1799, 2299, 2799)]
    )
    assert actions_of(rest) == actions_of(expected)


@pytest.mark.parametrize("seed", range(8))
def test_a_stationary_skewed_or_seasonal_reference_is_never_cut(seed: int) -> None:
    model = small_model()
    rng = np.random.default_rng(seed)
    # 2,000 predictions a day, as the null portfolio's: the reference is half a day.
    phase = 2.0 * np.pi * np.arange(1000) / 2000
    streams = [
        rng.normal(40.0, 5.0, 1000),
        rng.lognormal(1.0, 0.8, 1000),
        rng.poisson(3.0, 1000).astype(float),
        # A daily mix of two segments over the reference's day, as the null portfolio's.
        rng.lognormal(1.0 + 0.3 * (rng.random(1000) < 0.5 + 0.2 * np.sin(phase)), 0.8),
    ]
    for ages in streams:
        drift = new_watch(model).drift
        drift.update_many("age", ages.tolist())
        assert len(drift.features["age"].reference) == 1000


# KS tests numeric features only: age alone is declared (predictions still carry country).
KS_DRIFT = SMALL.replace(
    "window_size = 500", 'window_size = 500\nmethod = "ks"\nalpha = 0.001'
).replace(', country = "categorical"', "")


def drift_alarms(observations: list[tuple[int, Observation]]) -> list[tuple[int, bool]]:
    return [(n, e.material) for n, o in observations for e in o.evidence if e.alarm and e.feature]


def test_a_feature_shift_below_the_floor_alarms_but_moves_no_model() -> None:
    model = parse_portfolio(KS_DRIFT).get("ranker")
    assert model is not None
    rng = np.random.default_rng(5)
    # Age moves by 0.3 standard deviations: KS sees it in every window of 500, yet it
    # moves a fifth of the floor's share of the population.
    predictions = stream(rng, 0, 1000, 0.0) + stream(rng, 1000, 3000, 1.5)
    watch = new_watch(model)
    observations = run(watch, predictions)
    assert drift_alarms(observations) == [(n, False) for n in range(1499, 4000, 500)]
    assert actions_of(observations) == []
    assert watch.policy.state.value == "healthy"
    alerts = [
        (alert.severity, alert.text)
        for observation in effects_of(model, predictions)
        for alert in observation.alerts
    ]
    assert alerts == [
        ("informational", "ranker: drift_ks alarms on age, below its effect-size floor")
    ]


def test_a_feature_shift_above_the_floor_is_material_and_falls_back() -> None:
    model = parse_portfolio(KS_DRIFT).get("ranker")
    assert model is not None
    rng = np.random.default_rng(5)
    predictions = stream(rng, 0, 1000, 0.0) + stream(rng, 1000, 2000, 5.0)
    observations = run(new_watch(model), predictions)
    assert drift_alarms(observations) == [(1499, True), (1999, True), (2499, True), (2999, True)]
    assert actions_of(observations) == [(1999, "fallback")]


def test_the_floor_is_a_setting_per_model() -> None:
    strict = KS_DRIFT.replace('method = "ks"', 'method = "ks"\nmin_effect = 0.0')
    model = parse_portfolio(strict).get("ranker")
    assert model is not None
    rng = np.random.default_rng(5)
    predictions = stream(rng, 0, 1000, 0.0) + stream(rng, 1000, 3000, 1.5)
    observations = run(new_watch(model), predictions)
    assert drift_alarms(observations)[0] == (1499, True)
    assert actions_of(observations) == [(1999, "fallback")]


def test_a_feature_that_wanders_slowly_alarms_but_moves_no_model() -> None:
    # Age's level walks (0.15 standard deviations every 100 predictions) far from where
    # its reference was; KS alarms at most windows. Each window below the floor widens the
    # noise the next is read against, so the walk is never material (against the
    # reference's blocks alone, the windows ending at 5999 and 6499 were).
    strict = KS_DRIFT.replace('method = "ks"', 'method = "ks"\nmin_effect = 0.2')
    model = parse_portfolio(strict).get("ranker")
    assert model is not None
    watch = new_watch(model)
    assert watch.drift.spec("age").settings["min_effect"] == 0.2
    rng = np.random.default_rng(2)
    level = np.repeat(np.cumsum(rng.normal(0.0, 0.75, 80)), 100)
    ages = 40.0 + level + rng.normal(0.0, 5.0, level.size)
    observations = run(watch, [prediction(n, float(a), "de") for n, a in enumerate(ages)])
    alarms = drift_alarms(observations)
    assert len(alarms) >= 8
    assert [n for n, material in alarms if material] == []
    assert actions_of(observations) == []
    assert watch.drift.features["age"].min_effect == 0.2


def shifted_scores(shift: float) -> list[tuple[int, Observation]]:
    """2,000 warm-up and 1,000 more logit-normal scores, then 3,000 with the logit's mean
    moved by ``shift`` of its standard deviation, through a fresh watch."""
    rng = np.random.default_rng(3)
    predictions = output_stream(rng, 0, 3000, error_rate=0.0)
    predictions += output_stream(rng, 3000, 3000, error_rate=0.0, shift=shift)
    return run(new_watch(small_model()), predictions)


def test_the_score_detector_works_from_the_first_hundred_scores() -> None:
    # Ready after 50 scores: a shift of two standard deviations of the logit after 100
    # alarms 15 scores later and is material at the first look on its own 20 scores.
    rng = np.random.default_rng(4)
    predictions = output_stream(rng, 0, 100, error_rate=0.0)
    predictions += output_stream(rng, 100, 200, error_rate=0.0, shift=2.0)
    observations = run(new_watch(small_model()), predictions)
    score = [(n, e.material) for n, o in observations for e in o.evidence if e.alarm]
    assert score[:3] == [(115, False), (129, True), (139, True)]
    assert actions_of(observations) == [(189, "fallback")]
    # The same first 300 scores without the shift: silence.
    rng = np.random.default_rng(4)
    observations = run(new_watch(small_model()), output_stream(rng, 0, 300, error_rate=0.0))
    assert [n for n, o in observations for e in o.evidence if e.alarm] == []


def test_a_small_score_shift_moves_no_model() -> None:
    # A shift moving about a tenth of the population: the renewing reference takes it in.
    observations = shifted_scores(0.3)
    assert [n for n, o in observations for e in o.evidence if e.alarm] == []
    assert actions_of(observations) == []


def test_a_large_score_shift_is_material_once_measured_on_its_own_scores() -> None:
    observations = shifted_scores(1.5)
    score = [(n, e.material) for n, o in observations for e in o.evidence if e.alarm]
    # The alarm's effect reads 20 scores, some from before the change; the next look, 20
    # scores after it, is material.
    assert score[:3] == [(3014, False), (3025, True), (3035, True)]
    assert actions_of(observations) == [(3085, "fallback")]


@pytest.mark.parametrize(
    ("section", "setting", "key"),
    [
        ("drift", "min_effect = 1.5", "detectors.drift.min_effect"),
        ("output", "score_min_effect = -0.1", "detectors.output.score_min_effect"),
        ("output", 'error_min_effect = "0.1"', "detectors.output.error_min_effect"),
    ],
)
def test_bad_floors_name_the_model_and_key(section: str, setting: str, key: str) -> None:
    text = SMALL.replace(
        "[models.ranker.detectors.health]", f"{setting}\n[models.ranker.detectors.health]"
    )
    if section == "output":
        text = SMALL + f"[models.ranker.detectors.output]\n{setting}\n"
    with pytest.raises(PortfolioError) as caught:
        new_watch(parse_portfolio(text).get("ranker"))  # type: ignore[arg-type]
    assert (caught.value.model, caught.value.key) == ("ranker", key)


def test_an_informational_alert_becomes_a_warning_when_the_change_grows() -> None:
    model = parse_portfolio(KS_DRIFT).get("ranker")
    assert model is not None
    rng = np.random.default_rng(5)
    predictions = stream(rng, 0, 1000, 0.0) + stream(rng, 1000, 1000, 1.5)
    predictions += stream(rng, 2000, 1000, 5.0) + stream(rng, 3000, 3000, 0.0)
    alerts = [
        alert.severity
        for observation in effects_of(model, predictions)
        for alert in observation.alerts
        if alert.event == "drift_ks"
    ]
    assert alerts == ["informational", "warning", "normal"]


def score_episode_outlasting_its_fallback(after: int) -> list[Prediction]:
    """A prediction every 10 s: 1,000 scores, 100 shifted, then ``after`` as before."""
    rng = np.random.default_rng(0)
    predictions = output_stream(rng, 0, 1000, error_rate=0.0)
    predictions += output_stream(rng, 1000, 100, error_rate=0.0, shift=2.0)
    predictions += output_stream(rng, 1100, after, error_rate=0.0)
    start = predictions[0].predicted_at
    return [
        msgspec.structs.replace(p, predicted_at=start + (p.predicted_at - start) * 10)
        for p in predictions
    ]


def test_a_restore_inside_a_batch_judges_the_later_scores_as_one_by_one() -> None:
    """A prediction every 10 s: the score's episode outlasts the fallback, so the restore
    (at 1228, inside a batch) moves the change the later scores are measured from. Fed in
    batches (``detect``, then ``observe`` per prediction), every prediction's evidence is
    what it is one by one, the reports at 1499 and 1999 included."""
    predictions = score_episode_outlasting_its_fallback(3000)
    expected = run(new_watch(small_model()), predictions)
    assert actions_of(expected) == [(1028, "fallback"), (1228, "restore")]
    reports = [n for n, o in expected for e in o.evidence if e.detector == "score" and not e.alarm]
    assert {1499, 1999} <= set(reports)
    for size in (500, 37):
        watch = new_watch(small_model())
        batched = []
        for start_at in range(0, len(predictions), size):
            batch = predictions[start_at : start_at + size]
            found = detect(watch, batch)
            for n, p in enumerate(batch):
                if observation := observe(watch, p, found.share(n)):
                    batched.append((start_at + n, observation))
        assert batched == expected, size


TWENTY = [f"f{k:02d}" for k in range(20)]


def twenty_numeric_features(extra: str = "") -> Model:
    """Model ``m`` with the numeric features ``TWENTY``, ``extra`` after them."""
    features = "\n".join(f'"{name}" = "numeric"' for name in TWENTY)
    return parse_portfolio(
        '[models.m]\nowner = "o"\ntier = "cpu"\nfallback = "keep_all"\nlabel_delay = "1h"\n'
        f"[models.m.features]\n{features}\n{extra}"
    ).models["m"]


def test_a_frozen_numeric_reference_is_held_once_as_floats() -> None:
    watch = new_watch(twenty_numeric_features())
    rng = np.random.default_rng(0)
    for name in watch.drift.features:
        watch.drift.update_many(name, rng.normal(0.0, 1.0, 1500).tolist())
    test = watch.drift.features["f00"]
    assert test.reference.dtype == np.float64 and not test.reference.flags.writeable
    assert test._reference_values is test.reference
    # 20 features of 8,000 bytes of reference and 8,000 of window each, and the output
    # detectors; a list of floats beside a sorted copy of it took 526,738 bytes.
    assert len(pickle.dumps(watch, pickle.HIGHEST_PROTOCOL)) < 360_000


def tracked_objects(root: object) -> list[object]:
    """The objects the garbage collector tracks among those reachable from ``root``
    (classes, modules and functions left out: they are shared, not state)."""
    # A collection stops tracking the tuples and dicts that hold no tracked object; an
    # outer one whose items it reached first, at the next.
    gc.collect()
    gc.collect()
    found: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in found or not gc.is_tracked(obj):
            continue
        found[id(obj)] = obj
        stack.extend(r for r in gc.get_referents(obj) if not isinstance(r, type | types.ModuleType))
    return list(found.values())


def tracked(root: object) -> collections.Counter[str]:
    """``tracked_objects`` by type."""
    return collections.Counter(type(obj).__name__ for obj in tracked_objects(root))


def references(root: object) -> int:
    """The references a full garbage collection visits in ``tracked_objects(root)``."""
    return sum(len(gc.get_referents(obj)) for obj in tracked_objects(root))


def test_a_restored_watch_gives_the_garbage_collector_few_objects() -> None:
    watch = new_watch(small_model())
    run(watch, output_stream(np.random.default_rng(3), 0, 3000))
    restored = pickle.loads(pickle.dumps(watch))  # what the changelog table stores
    # A numeric feature's state once its reference is complete: its test alone, whose
    # attributes (no reference list left, its last windows' events a tuple of numbers)
    # hold nothing the collector tracks, nor then does their dict. It took 6 objects: a
    # dict each, the emptied reference list, the list of events.
    assert tracked(restored.drift.features["age"]) == {"PSIDrift": 1}
    # A categorical test's dict holds dicts (its reference and window counts), which keep
    # it tracked; a rare category tail no more, None while there is none (an empty
    # frozenset was a fourth object).
    assert tracked(restored.drift.features["country"]) == {"CategoricalPSIDrift": 1, "dict": 1}
    # The future values' counts per feature, two dicts of ints, and its last batch's
    # events, a tuple, are none the collector tracks (a list per feature and one of
    # events were); the two dicts are in slots, so its attribute dict is untracked too.
    assert tracked(restored.future) == {"FutureValues": 1}
    # The output detectors keep their last scores and inputs in arrays, and the score's
    # fitted model its residuals in a tuple: no float is visited one by one (two deques and
    # a list held 1,399 of them); the error rate's CUSUMs keep their last batch's events
    # in a tuple, and their dicts are untracked. The score CUSUM's fitted model is in a
    # slot, so its dict is untracked too (its running sums and starts and its last
    # alarms' positions are tuples; they were three lists).
    output = tracked(restored.output)
    assert output == {
        "OutputWatch": 1,
        "ScoreDetector": 1,
        "OutputDetector": 1,
        "Window": 2,
        "ResidualCUSUM": 1,
        "_Model": 1,
        "BernoulliCUSUM": 2,
    }


def test_a_restored_drift_watch_keeps_its_tests_and_one_spec() -> None:
    # Every full garbage collection visits each reference a model's state holds. Twenty
    # numeric features, their references complete: the tests, the dict naming them and
    # the one spec they share (its settings dict holds nothing tracked). A dataclass of
    # nine fields beside each test took 41 objects and 260 references.
    watch = new_watch(twenty_numeric_features("[models.m.detectors.drift]\nwindow_size = 100\n"))
    rng = np.random.default_rng(0)
    predictions = [
        msgspec.structs.replace(
            prediction(n, 0.0, ""),
            model_id="m",
            features={name: FeatureSeen(float(v), 0) for name, v in zip(TWENTY, row, strict=True)},
        )
        for n, row in enumerate(rng.normal(0.0, 1.0, (150, 20)).tolist())
    ]
    detect(watch, predictions)
    restored = pickle.loads(pickle.dumps(watch))
    assert tracked(restored.drift) == {
        "DriftTests": 1,
        "dict": 1,
        "tuple": 1,
        "DriftSpec": 1,
        "PSIDrift": 20,
    }
    # The tests 2 each (their dict and class), the dict 20, DriftTests 4, the spec 7, the
    # tuple of specs 1.
    assert references(restored.drift) == 72
