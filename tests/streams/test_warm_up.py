"""The warm-up compiles what the monitors' batches need, so that no batch compiles."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# In a process of its own: this one's earlier tests have compiled the loops already.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from detectors._compiled import compiled_functions
    from schemas.contracts import FeatureWrite, GroundTruth, Prediction
    from streams.demo.run import DEMO_DETECTOR_DEFAULTS
    from streams.monitor import Batch, Monitor
    from streams.monitor.warm_up import warm_up
    from streams.portfolio import parse_portfolio
    from streams.simulate.population import portfolio_toml
    from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario

    run = SimulationRun.prepare(load_scenario(SCENARIOS / "default.toml"), start_ms=0)
    portfolio = parse_portfolio(
        portfolio_toml(run.portfolio, run.time_scale) + DEMO_DETECTOR_DEFAULTS
    )
    models = list(portfolio)
    warm_up(models[1:])

    def signatures():
        return {f"{d.py_func.__module__}.{d.__name__}": sorted(map(str, d.signatures))
                for d in compiled_functions()}

    warmed = signatures()
    pending = {m.model_id: [] for m in models}
    monitors = {m.model_id: Monitor(m) for m in models}
    numeric = {m.model_id: frozenset(f.name for f in m.features if f.kind == "numeric")
               for m in models}
    for n, event in enumerate(run.events()):
        if n == int(sys.argv[1]):
            break
        record = event.record
        owners = (portfolio.models_monitoring(record.feature)
                  if isinstance(record, FeatureWrite) else [record.model_id])
        for model_id in owners:
            pending[model_id].append(record)
            if len(pending[model_id]) == 500:
                monitors[model_id].observe(
                    Batch.from_records(model_id, pending[model_id], numeric[model_id]))
                pending[model_id] = []
    # As the worker checkpoints them.
    for monitor in monitors.values():
        monitor.dumps()
    print(json.dumps({"warmed": warmed, "after": signatures()}))
    """
)


def test_after_the_warm_up_the_demo_scenario_compiles_nothing_more() -> None:
    # Warmed on another model than most batches come from: the compiled types must not
    # depend on the model.
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "60000"], capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    # The loops that Python calls; compiled with an empty cache, those they call are
    # compiled (and listed) with them.
    called = {
        "detectors.drift.residual_cusum._run",
        "detectors.drift.residual_cusum._fit_numbers",
        "detectors.leaks._coincide.coincide",
        "detectors.leaks.availability_gap._read_compiled",
        "detectors.leaks.availability_gap._take_oldest_first",
        "streams.monitor.held._join",
        "detectors.performance.drop._cusum",
    }
    assert called <= {name for name, signatures in found["warmed"].items() if signatures}
    assert found["after"] == found["warmed"]


# A model of 20 features whose first batch holds 500 records of thousands of entities (the
# replay benchmark's synthetic model): its leak detectors forget entities past their share
# of the model's memory at once, and its first label join report reads a window of one
# pair, two paths the made-up warm-up batch reaches with other array types or not at all.
_SYNTHETIC_SCRIPT = textwrap.dedent(
    """
    import json
    from detectors._compiled import compiled_functions
    from streams.monitor import Batch, Monitor
    from streams.monitor.warm_up import warm_up
    from tests.benchmarks.bench_monitor_replay import synthetic, synthetic_portfolio

    warm_up()
    warmed = {d: set(d.signatures) for d in compiled_functions()}
    [model] = synthetic_portfolio(1, 20)
    numeric = frozenset(f.name for f in model.features)
    records = [record for _, record in synthetic([model], 500, seed=1)]
    Monitor(model).observe(Batch.from_records(model.model_id, records, numeric))
    print(json.dumps(sorted(
        f"{d.py_func.__module__}.{d.__name__} {sorted(map(str, set(d.signatures) - warmed[d]))}"
        for d in compiled_functions() if set(d.signatures) - warmed[d]
    )))
    """
)


def test_after_the_warm_up_a_model_of_many_entities_and_features_compiles_nothing_more() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SYNTHETIC_SCRIPT], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
