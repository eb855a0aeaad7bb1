"""The pure per-model core: one ``Monitor`` per model, fed a ``Batch`` at a time.

Nothing here does I/O, reads the clock, or imports Faust, Kafka clients or sinks: records
come in, ``Effects`` (points, alerts, commands to sign, whether to checkpoint) go out, and
the worker (``streams.worker``) carries them out.

- ``monitor``: the ``Monitor`` of one model, which holds the parts below;
- ``batch``: the columnar ``Batch`` of one model's records;
- ``effects``: points, alerts and commands to sign, as plain data;
- ``watch``: feature drift, values from the future, output monitoring, health policy;
- ``label_join``: predictions waiting for late labels, performance and its estimate;
- ``held``: the label join's held predictions, as numpy columns in arrival order;
- ``shadow_join``: a shadow against live, and the promotion verdict;
- ``leak_watch``: write lag, availability gaps, label leaks;
- ``label_wait``: labels that arrived ahead of their predictions;
- ``gauges``: the inputs the parts above could not use, and how full their capped
  structures are;
- ``warm_up``: compiles the loops of the parts above before the first record needs them.
"""

from streams.monitor.batch import Batch
from streams.monitor.effects import CommandToSign, Effects
from streams.monitor.monitor import (
    CHECKPOINT_EVERY,
    STATE_FORMAT,
    Monitor,
    StateFormatError,
    check_models,
)

__all__ = [
    "CHECKPOINT_EVERY",
    "STATE_FORMAT",
    "Batch",
    "CommandToSign",
    "Effects",
    "Monitor",
    "StateFormatError",
    "check_models",
]
