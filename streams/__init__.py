"""Everything that runs: the Faust app, agents, sinks, CLI, local stack and fleet client."""
