"""The fallback ladder: its transitions on pinned event sequences, and in a model's monitor."""

from __future__ import annotations

import pickle

import pytest

from schemas.codec import decode_control_command, encode
from schemas.signing import CommandGate, Keyring
from streams.monitor import Batch, CommandToSign, Monitor
from streams.monitor.ladder import Ladder, Step, new_ladder
from streams.portfolio import Model, PortfolioError, parse_portfolio
from tests.streams.test_watch import SMALL, shifted_then_normal, small_model

KEYRING = Keyring.parse(private_key="k1=" + "5a" * 32)
LADDER = 'fallback = ["ranker-cpu", "top_n_popular"]\n'


def ladder_model() -> Model:
    model = parse_portfolio(SMALL.replace('fallback = "top_n_popular"\n', LADDER)).get("ranker")
    assert model is not None
    return model


def _levels(steps: list[Step | None]) -> list[int | None]:
    return [None if step is None else step.level for step in steps]


def test_a_level_going_bad_steps_down_at_once_and_climbs_back_one_level_after_the_dwell() -> None:
    ladder = Ladder("ranker", ("ranker-cpu", "top_n_popular"), min_dwell=600.0)
    steps = [
        ladder.own("fallback", 0.0),  # the GPU model falls back: the CPU model serves
        ladder.level_health("ranker-cpu", True, 60.0),  # the CPU model too: static default
        ladder.level_health("ranker-cpu", False, 300.0),  # CPU fine again, dwell not passed
        ladder.tick(659.0),
        ladder.tick(660.0),  # climbs to the CPU model
        ladder.own("restore", 700.0),  # the GPU model is well, but the last step is recent
        ladder.tick(1259.0),
        ladder.tick(1260.0),  # climbs to the GPU model
        ladder.tick(5000.0),
    ]
    assert _levels(steps) == [1, 2, None, None, 1, None, None, 0, None]
    assert [s.reason for s in steps if s is not None] == [
        "ranker fell back: serve ranker-cpu (level 1)",
        "ranker-cpu serves its own fallback: serve top_n_popular (level 2)",
        "dwell passed: serve ranker-cpu (level 1)",
        "dwell passed: serve ranker",
    ]
    assert (ladder.level, ladder.wanted, ladder.bad, ladder.stepped_at) == (0, False, set(), 1260.0)


def test_falling_back_skips_a_level_already_bad_and_every_level_bad_serves_the_last() -> None:
    ladder = Ladder("ranker", ("ranker-cpu", "ranker-small", "top_n_popular"), min_dwell=60.0)
    assert ladder.level_health("ranker-cpu", True, 0.0) is None  # not in use: nothing moves
    assert _levels([ladder.own("fallback", 10.0)]) == [2]
    assert _levels([ladder.level_health("ranker-small", True, 20.0)]) == [3]
    # A climb goes to the nearest level above that is not bad, one step at a time.
    assert _levels([ladder.level_health("ranker-cpu", False, 100.0)]) == [1]
    everything_bad = Ladder("ranker", ("a", "b"), min_dwell=0.0)
    everything_bad.level_health("a", True, 0.0)
    everything_bad.level_health("b", True, 0.0)
    assert _levels([everything_bad.own("fallback", 1.0)]) == [2]


def test_a_restore_from_the_second_level_climbs_through_the_first() -> None:
    ladder = Ladder("ranker", ("ranker-cpu", "top_n_popular"), min_dwell=100.0)
    ladder.level_health("ranker-cpu", True, 0.0)
    steps = [
        ladder.own("fallback", 0.0),
        ladder.level_health("ranker-cpu", False, 50.0),
        ladder.own("restore", 150.0),  # due: one level only
        ladder.tick(200.0),
        ladder.tick(250.0),
    ]
    assert _levels(steps) == [2, None, 1, None, 0]


def test_the_ladder_refuses_what_it_does_not_know_and_pickles() -> None:
    ladder = Ladder("ranker", ("ranker-cpu", "top_n_popular"), min_dwell=60.0)
    with pytest.raises(ValueError, match="'other' is not a level of ranker's ladder"):
        ladder.level_health("other", True, 0.0)
    with pytest.raises(ValueError, match="needs at least one level"):
        Ladder("ranker", (), min_dwell=60.0)
    with pytest.raises(ValueError, match="min_dwell=-1"):
        Ladder("ranker", ("a",), min_dwell=-1)
    ladder.own("fallback", 0.0)
    assert pickle.loads(pickle.dumps(ladder)) == ladder


def test_a_single_level_fallback_has_no_ladder_and_its_commands_no_level() -> None:
    assert new_ladder(small_model(), 60.0) is None
    alert_only = SMALL.replace(
        'fallback = "top_n_popular"\n',
        'fallback = { strategy = ["ranker-cpu", "top_n_popular"], mode = "alert_only" }\n',
    )
    model = parse_portfolio(alert_only).get("ranker")
    assert model is not None and new_ladder(model, 60.0) is None
    model = small_model()
    monitor = Monitor(model)
    records = shifted_then_normal(7)
    commands = monitor.observe(Batch.from_records("ranker", records)).commands
    assert [(c.action, c.level) for c in commands] == [("fallback", None), ("restore", None)]


def test_the_monitor_steps_the_ladder_with_signed_commands_in_seq() -> None:
    model = ladder_model()
    assert model.fallback.ladder == ("ranker-cpu", "top_n_popular")
    monitor = Monitor(model)
    records = shifted_then_normal(7)
    made: list[CommandToSign] = []
    # Up to the drift's fallback (prediction 2999, at 3,999 s of event time: see test_watch).
    made += monitor.observe(Batch.from_records("ranker", records[:3000])).commands
    # The CPU model goes bad, then recovers, while the GPU model is on fallback.
    made += monitor.level_health("ranker-cpu", True, 4_000.5).commands
    made += monitor.level_health("ranker-cpu", False, 4_010.0).commands
    for n in range(3000, len(records), 250):
        made += monitor.observe(Batch.from_records("ranker", records[n : n + 250])).commands
    assert [(c.action, c.level, c.detector, c.issued_at) for c in made] == [
        ("fallback", 1, "drift_psi", 3_999_000),
        ("fallback", 2, "ladder", 4_000_500),
        # The policy's min_dwell (60 s) after the step down has passed at the next batch's
        # last prediction (3249, at 4,249 s).
        ("fallback", 1, "ladder", 4_249_000),
        ("restore", 0, "health", 6_199_000),
    ]
    gate = CommandGate(KEYRING)
    for command in made:
        wire = decode_control_command(encode(command.signed(KEYRING)))
        assert not isinstance(wire, Exception) and gate.admit(wire, command.issued_at) is None
    assert [c.seq for c in made] == sorted({c.seq for c in made})


def test_the_portfolio_reads_a_ladder_and_knows_whose_ladders_pass_through_a_model() -> None:
    text = SMALL.replace('fallback = "top_n_popular"\n', LADDER) + (
        '[models.ranker-cpu]\nowner = "team-search"\ntier = "cpu"\nlabel_delay = "1h"\n'
        'fallback = { strategy = ["top_n_popular"], mode = "alert_only" }\n'
    )
    portfolio = parse_portfolio(text)
    ranker, cpu = portfolio.get("ranker"), portfolio.get("ranker-cpu")
    assert ranker is not None and cpu is not None
    assert (ranker.fallback.strategy, ranker.fallback.below) == ("ranker-cpu", ("top_n_popular",))
    assert (cpu.fallback.ladder, cpu.fallback.automatic) == (("top_n_popular",), False)
    assert portfolio.ladders_through("ranker-cpu") == ("ranker",)
    assert portfolio.ladders_through("top_n_popular") == ("ranker", "ranker-cpu")


@pytest.mark.parametrize(
    ("fallback", "reason"),
    [
        ("[]", "or an array of 1 to 255 of them"),
        ('["a", 3]', "or an array of 1 to 255 of them"),
        ('["a", "a"]', "a ladder names each level once and never the model itself"),
        ('["ranker", "a"]', "a ladder names each level once and never the model itself"),
    ],
)
def test_a_bad_ladder_is_refused_by_key(fallback: str, reason: str) -> None:
    text = SMALL.replace('fallback = "top_n_popular"', f"fallback = {fallback}")
    with pytest.raises(PortfolioError, match=r"models\.ranker\.fallback\.strategy: ") as caught:
        parse_portfolio(text)
    assert reason in caught.value.reason


def test_a_step_from_a_levels_health_makes_the_next_batch_a_checkpoint() -> None:
    monitor = Monitor(ladder_model())
    records = shifted_then_normal(7)
    monitor.observe(Batch.from_records("ranker", records[:3000]))
    assert monitor.level_health("ranker-cpu", False, 4_000.0).checkpoint is False  # no step
    assert monitor.observe(Batch.from_records("ranker", records[3000:3001])).checkpoint is False
    assert monitor.level_health("ranker-cpu", True, 4_001.0).checkpoint is True
    assert monitor.observe(Batch.from_records("ranker", records[3001:3002])).checkpoint is True
