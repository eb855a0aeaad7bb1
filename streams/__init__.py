"""Everything that runs: the Faust app, agents, sinks, the CLI, the local stack and the fleet client."""
