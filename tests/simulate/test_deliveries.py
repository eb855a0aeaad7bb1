"""The simulator's delivery watch: a stall of delivery reports is said once, with what
librdkafka's statistics show, and its end is said too."""

from __future__ import annotations

import json
from typing import Any

from streams.simulate.deliveries import DeliveryWatch, describe_stats
from streams.simulate.publish import Pacer, publish
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario
from streams.simulate.traffic import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS

NAMES = {PREDICTIONS: "t.predictions", FEATURE_WRITES: "t.features", GROUND_TRUTH: "t.truth"}

# The shape of librdkafka's statistics (only the fields read): the learned broker is up
# and serves one partition; the other, holding messages, is on the internal handle.
STATS = json.dumps(
    {
        "msg_cnt": 1234,
        "brokers": {
            "127.0.0.1:9092/1": {
                "nodeid": 1,
                "state": "UP",
                "stateage": 42_000_000,
                "outbuf_cnt": 0,
                "waitresp_cnt": 2,
                "toppars": {"t.predictions-0": {"topic": "t.predictions", "partition": 0}},
            },
            ":0/internal": {
                "nodeid": -1,
                "state": "UP",
                "stateage": 90_000_000,
                "outbuf_cnt": 0,
                "waitresp_cnt": 0,
                "toppars": {"t.predictions-1": {"topic": "t.predictions", "partition": 1}},
            },
        },
        "topics": {
            "t.predictions": {
                "partitions": {
                    "0": {"leader": 1, "msgq_cnt": 0, "xmit_msgq_cnt": 0},
                    "1": {"leader": 1, "msgq_cnt": 1200, "xmit_msgq_cnt": 34},
                    "-1": {"leader": -1, "msgq_cnt": 0, "xmit_msgq_cnt": 0},
                }
            }
        },
    }
)


def test_statistics_name_the_brokers_and_the_partitions_that_hold_messages() -> None:
    line = describe_stats(STATS)
    assert line.startswith("librdkafka holds 1234 messages; brokers: ")
    assert "127.0.0.1:9092/1 UP 42s out 0 wait 2 partitions 1" in line
    assert ":0/internal UP 90s out 0 wait 0 partitions 1" in line
    assert (
        "t.predictions[1] leader 1 queued 1200 sending 34 on :0/internal (not its leader's)" in line
    )
    assert "t.predictions[0]" not in line
    assert line.endswith(
        "; 1 partitions holding messages are not on their leader's handle although it is up"
    )
    # In an outage (the leader's handle is not up), messages waiting anywhere are no sign.
    down = json.loads(STATS)
    down["brokers"]["127.0.0.1:9092/1"]["state"] = "TRY_CONNECT"
    assert "not its leader's" not in describe_stats(json.dumps(down))
    assert describe_stats(None) == "no librdkafka statistics yet"
    assert describe_stats("{") == "unreadable librdkafka statistics"


def test_a_stall_is_said_once_with_the_statistics_and_so_is_its_end() -> None:
    now = [0.0]
    lines: list[str] = []
    watch = DeliveryWatch(lines.append, stall_s=30.0, clock=lambda: now[0])
    watch.on_stats(STATS)
    watch.check(outstanding=10, reported=5)
    now[0] = 29.0
    watch.check(outstanding=500, reported=5)
    assert lines == []
    now[0] = 31.0
    watch.check(outstanding=600, reported=5)
    now[0] = 45.0
    watch.check(outstanding=700, reported=5)
    assert len(lines) == 1 and watch.stalls == 1
    assert lines[0].startswith("no delivery report for 31 s with 600 messages outstanding; ")
    assert "t.predictions[1] leader 1 queued 1200" in lines[0]
    now[0] = 50.0
    watch.check(outstanding=100, reported=605)
    assert lines[1].startswith("deliveries resumed after 50 s without a report; ")
    # Nothing outstanding is no stall, however long no report comes.
    now[0] = 500.0
    watch.check(outstanding=0, reported=605)
    now[0] = 900.0
    watch.check(outstanding=0, reported=605)
    assert len(lines) == 2
    assert watch.config()["stats_cb"] == watch.on_stats


class SilentProducer:
    """Takes every message and never reports one: a producer whose deliveries stalled."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.queued = 0

    def produce(
        self, topic: str, *, value: bytes, key: bytes, timestamp: int, on_delivery: Any
    ) -> None:
        self.queued += 1

    def poll(self, timeout: float) -> int:
        self.clock[0] += timeout
        return 0

    def flush(self, timeout: float) -> int:
        self.clock[0] += timeout
        return self.queued


def test_publish_says_so_when_nothing_is_reported_even_during_the_final_flush() -> None:
    run = SimulationRun.prepare(
        load_scenario(SCENARIOS / "short.toml"), start_ms=1_800_000_000_000, rate=200.0
    )
    events = list(run.events())[:50]
    now = [0.0]
    lines: list[str] = []
    watch = DeliveryWatch(lines.append, stall_s=20.0, clock=lambda: now[0])
    producer = SilentProducer(now)
    stats = publish(
        events,
        producer,
        NAMES,
        Pacer(0, realtime=False),
        watch=watch,
        flush_timeout_s=60.0,
        clock=lambda: now[0],
    )
    assert stats.undelivered == 50 and stats.outstanding == 50
    assert now[0] == 60.0  # the flush's whole time, in slices
    assert len(lines) == 1
    assert lines[0].startswith("no delivery report for 20 s with 50 messages outstanding; ")
    assert lines[0].endswith("no librdkafka statistics yet")
