"""Benchmark: per-run orchestration overhead of the Docker runner vs a bare `docker run`.

Overhead of one run = (container create -> result validated) minus the harness's own lifetime
(from its process start, as it reports in events.jsonl, to its `done` event). Baseline: a bare
`docker run --rm --entrypoint true IMAGE` on the same machine. Goal: median ratio <= 1.5.

    .venv/bin/python tests/perf/bench_orchestration.py [MODEL_DIR] [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.io import read_events, write_json
from harness.schema import ExperimentConfig
from harness.schema.run_spec import RunSpec
from orchestrator.runners.docker.runner import CPU_IMAGE, DockerRunner
from orchestrator.study_dir import validate_result


def one_run(runner: DockerRunner, root: Path, model_dir: Path, index: int) -> float:
    """Orchestration overhead of one run (s)."""
    run_dir = root / f"{index:03d}_bench_c1"
    run_dir.mkdir()
    config = ExperimentConfig(model=str(model_dir.resolve()), backend="pytorch",
                              precision="fp32", n=2, input_len=8, output_len=4,
                              warmup={"n_warmup": 0, "min_seconds": 0},
                              baseline={"enabled": False})
    write_json(run_dir / "experiment.json",
               RunSpec(run_id=run_dir.name, runner="docker", config=config))
    start = time.time()
    outcome = runner.run(run_dir, 600, lambda event: None)
    problem = validate_result(run_dir)
    end = time.time()
    if outcome.end != "ok" or problem:
        sys.exit(f"run failed: {outcome} {problem}")
    events = read_events(run_dir / "events.jsonl")
    harness_start = next(e["process_started_at"] for e in events if e["event"] == "start")
    harness_end = next(e["time"] for e in events if e["event"] == "done")
    return (end - start) - (harness_end - harness_start)


def bare_docker_run() -> float:
    """Wall time of `docker run --rm --entrypoint true IMAGE` (s)."""
    start = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--entrypoint", "true", CPU_IMAGE], check=True)
    return time.perf_counter() - start


def main() -> None:
    """Print median overhead, median bare run and their ratio."""
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".llem/models/tiny-llama")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    runner = DockerRunner(image=CPU_IMAGE)
    overheads, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            bare.append(bare_docker_run())
            overheads.append(one_run(runner, Path(tmp), model_dir, index))
    overhead, baseline = statistics.median(overheads), statistics.median(bare)
    print(f"orchestration overhead per run: median {overhead:.3f} s  "
          f"({', '.join(f'{v:.2f}' for v in overheads)})")
    print(f"bare docker run --rm true:      median {baseline:.3f} s  "
          f"({', '.join(f'{v:.2f}' for v in bare)})")
    print(f"ratio overhead/bare: {overhead / baseline:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    main()
