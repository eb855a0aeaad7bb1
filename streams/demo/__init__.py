"""``failsoft demo`` and ``failsoft report``: the whole loop on one machine, and its report.

- ``report``: the pure report of a run (timeline, commands, switches, alerts -> rows),
  rendered as Markdown and JSON;
- ``observe``: what the demo watches while it runs (control topic, the serving node's
  switches, Alerta);
- ``view``: the live view (rich);
- ``run``: the orchestration (stack, topics, key, portfolio, worker, node, simulator);
- ``cli``: the two commands.
"""
