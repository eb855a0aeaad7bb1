"""``failsoft simulate``: seeded traffic for a portfolio of models, with scheduled incidents.

- ``scenario``: the scenario file (incidents, run defaults) and its checks;
- ``population``: how each model of a portfolio behaves, and a synthetic portfolio;
- ``traffic``: the pure generator of predictions, feature writes and labels;
- ``timeline``: the ground truth of what was injected, as JSON Lines;
- ``run``: one run, with every choice made explicit;
- ``publish`` and ``cli``: encoding, pacing and producing to Kafka.
"""
