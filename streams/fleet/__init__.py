"""The serving fleet's client: obey the control topic, publish predictions, route by mode.

Imports confluent-kafka and msgspec only, never Faust, so a serving node stays small::

    from streams.fleet import ControlListener, PopularItems, PredictionLogger, Router

    listener = ControlListener(settings).start()
    logger = PredictionLogger(settings)
    router = Router(listener)
    recommend = router.register("home-recs", live=model.predict, fallback=popular.top)
    ranker = router.register("ranker", live=gpu.rank, fallback=[cpu.rank, popular.top],
                             breaker=BreakerSettings(deadline_ms=100, slo_p99_ms=50))
"""

from streams.fleet.breaker import (
    Breaker,
    BreakerChange,
    BreakerCore,
    BreakerSettings,
    BreakerStats,
    Unavailable,
)
from streams.fleet.listener import ControlListener, ListenerStats, Mode, ModeChange
from streams.fleet.popular import PopularItems
from streams.fleet.prediction_logger import LoggerStats, PredictionLogger
from streams.fleet.producer import FleetProducer
from streams.fleet.router import Routed, Router, Served

__all__ = [
    "Breaker",
    "BreakerChange",
    "BreakerCore",
    "BreakerSettings",
    "BreakerStats",
    "ControlListener",
    "FleetProducer",
    "ListenerStats",
    "LoggerStats",
    "Mode",
    "ModeChange",
    "PopularItems",
    "PredictionLogger",
    "Routed",
    "Router",
    "Served",
    "Unavailable",
]
