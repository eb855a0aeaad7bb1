"""Wire contracts: one JSON Schema per topic, the Python types, the codec and control-command signing."""
