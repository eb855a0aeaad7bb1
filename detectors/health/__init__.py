"""Per-model health state machine and portfolio false-alarm control."""
