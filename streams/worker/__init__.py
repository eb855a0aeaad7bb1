"""The worker: the I/O shell around the per-model monitors (``streams.monitor``).

- ``app``: the Faust app, ``create_app(settings)``, which wires the rest;
- ``readers``: the ingest reader, which reads every input topic in batches on the
  partitions Faust assigns this worker and feeds each model's monitor micro-batches;
  every record is processed or dead-lettered, and counted;
- ``shell``: one state table of monitors; feeds them batches and carries out their
  effects (sinks, signed commands, checkpoints);
- ``views``: the timers and web views (``/failsoft/models``, ``/metrics``);
- ``ingest``: decoding and the books; ``metrics``: the Prometheus collector;
- ``cli``: ``failsoft worker``.

This package's ``__init__`` imports nothing, so the CLI loads Faust only to run a worker.
"""
