"""Phase-split error on the 60 ms prefill scenario, both methods side by side.

Ten static batches (60 ms prefill at 600 W, 1 s decode at 300 W) read through a counter that,
like NVML, moves only every 100 ms; ten positions of the counter's update grid. Prints the
prefill and decode error of cutting the window's counter at the phase edges (what llem used to
publish as "exact", now refused: phases under 5 s) and of the measured prefill-only pass (what
llem publishes now), against the trace's exact energies.

    .venv/bin/python tests/perf/bench_phase_split.py
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

from harness import phases

_SCENARIO = Path(__file__).parents[1] / "unit" / "harness" / "test_phases.py"


def _load_scenario():  # the unit test's scenario, so the figure and the test cannot drift
    spec = importlib.util.spec_from_file_location("phase_scenario", _SCENARIO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Print both methods' errors over ten update-grid positions."""
    scenario_module = _load_scenario()
    edges_pct, pass_prefill_pct, pass_decode_pct = [], [], []
    for k in range(10):
        scenario = scenario_module.Scenario(update_phase_s=k * 0.01)
        energy_j, output = scenario.run_window()
        cut = phases.split_by_edges(scenario.meter, output.phase_marks)
        edges_pct.append(100 * (cut.prefill.energy_j / scenario.true_prefill_j() - 1))
        backend = scenario_module.PrefillOnlyBackend(scenario)
        split = phases.run_prefill_pass(backend, scenario_module.requests(), scenario.meter,
                                        energy_j, scenario.window_end_s - 0.5, 10.0,
                                        clock=scenario.clock)
        pass_prefill_pct.append(100 * (split.prefill.energy_j / scenario.true_prefill_j() - 1))
        pass_decode_pct.append(100 * (split.decode.energy_j / scenario.true_decode_j() - 1))
    print("60 ms prefill, 100 ms counter updates, 10 update-grid positions")
    for name, values in (("window edges, prefill", edges_pct),
                         ("prefill pass, prefill", pass_prefill_pct),
                         ("prefill pass, decode", pass_decode_pct)):
        print(f"{name:<24} error min {min(values):+6.2f} %  median "
              f"{statistics.median(values):+6.2f} %  max {max(values):+6.2f} %")
    print(f"window edges refused: {phases.edges_problem(output)}")


if __name__ == "__main__":
    main()
