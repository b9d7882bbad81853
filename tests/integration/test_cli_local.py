"""The CLI's contract, exercised as a user would: `llem` as a subprocess, local runner."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from llem_testkit.cli import (
    LLEM,
    llem,
    only_study_dir,
    start_llem,
    tree_digest,
    wait_for_event,
)

from harness.schema import ExperimentResult
from harness.schema.result import ErrorRecord
from orchestrator.manifest import Manifest
from orchestrator.summary import StudySummary

SPEC_RUN_FILES = {"experiment.json", "result.json", "timeseries.parquet", "events.jsonl",
                  "container.log"}
SERIES_COLUMNS = {"t_s", "phase", "gpu_index", "power_w", "energy_counter_j", "temperature_c",
                  "sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct", "mem_used_mb",
                  "throttle_reasons"}


def study_text(model: Path, body: str, **top: object) -> str:
    head = {
        "name": "t", "model": str(model), "backend": "pytorch", "precision": "fp32",
        "n": 4, "input_len": 16, "output_len": 8,
        "warmup": {"n_warmup": 1, "min_seconds": 0}, **top,
    }
    lines = [f"{key}: {json.dumps(value)}" for key, value in head.items()]
    return "\n".join(lines) + "\n" + body


@pytest.mark.slow
def test_study_writes_every_spec_file_and_validates(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1, 2]\n",
        execution={"config_gap_s": 0, "cycle_gap_s": 0}))
    done = llem("run", str(study), "--runner", "local", "--output", "out", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study_dir = only_study_dir(tmp_path / "out")
    assert {"study.yaml", "manifest.json", "summary.json", "results.parquet"} <= {
        p.name for p in study_dir.iterdir()}
    assert (study_dir / "study.yaml").read_text() == study.read_text()
    manifest = Manifest.load(study_dir)
    assert [r.status for r in manifest.runs] == ["completed", "completed"]
    summary = StudySummary.load(study_dir)
    assert summary.counts == {"completed": 2} and len(summary.result_files) == 2
    for run in manifest.runs:
        run_dir = study_dir / run.run_id
        assert {p.name for p in run_dir.iterdir()} >= SPEC_RUN_FILES
        result = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        assert result.throughput.output_tokens == 4 * 8
        assert result.energy.energy_j is None and "no_energy_sensor" in result.warning_codes()
        series = pq.read_table(run_dir / "timeseries.parquet")
        assert set(series.column_names) == SERIES_COLUMNS
        assert {"baseline", "warmup", "measure"} <= set(series.column("phase").to_pylist())
    table = pq.read_table(study_dir / "results.parquet")
    assert table.num_rows == 2
    assert sorted(table.column("config.pytorch.batch_size").to_pylist()) == [1, 2]
    assert "runs" not in done.stdout or "completed" in done.stdout


@pytest.mark.slow
def test_failed_run_does_not_stop_the_study(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(tiny_model_dir, (
        "experiments:\n"  # generate() refuses an argument it does not know, inside the run
        "  - passthrough_kwargs: {not_a_generate_argument: 1}\n"
        "  - pytorch: {batch_size: 2}\n"
    ), execution={"config_gap_s": 0}))
    done = llem("run", str(study), "--runner", "local", "--output", "out", "-q", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    study_dir = only_study_dir(tmp_path / "out")
    manifest = Manifest.load(study_dir)
    failed, completed = manifest.runs
    assert (failed.status, completed.status) == ("failed", "completed")
    assert failed.failure is not None and failed.failure.cause == "error"
    assert "not_a_generate_argument" in failed.failure.message
    error = ErrorRecord.model_validate_json((study_dir / failed.run_id / "error.json").read_text())
    assert error.phase == "warmup" and "Traceback" in error.traceback


@pytest.mark.slow
def test_timeout_stops_the_run_and_records_log_tail(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1]\n",
        warmup={"n_warmup": 1, "min_seconds": 900, "max_seconds": 1200},
        execution={"timeout_s": 25}))
    done = llem("run", str(study), "--runner", "local", "--output", "out", "-q", cwd=tmp_path)
    assert done.returncode == 1
    (run,) = Manifest.load(only_study_dir(tmp_path / "out")).runs
    assert run.status == "failed" and run.failure is not None
    assert run.failure.cause == "timeout" and "25 s" in run.failure.message
    assert any("run directory" in line for line in run.failure.log_tail)


@pytest.mark.slow
def test_sigint_stops_the_run_marks_it_interrupted_and_exits_130(tiny_model_dir, tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1, 2, 3]\n",
        warmup={"n_warmup": 1, "min_seconds": 300, "max_seconds": 600}))
    process = start_llem("run", str(study), "--runner", "local", "--output", "out", "-q",
                         cwd=tmp_path)
    events = wait_for_event(tmp_path / "out", "*/001_*/events.jsonl", "warmup", timeout_s=300)
    assert events is not None, "the first run never reached warmup"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)  # the grace period is 10 s; the limit only finds a hang
    assert process.returncode == 130
    study_dir = only_study_dir(tmp_path / "out")
    statuses = [r.status for r in Manifest.load(study_dir).runs]
    assert statuses == ["interrupted", "pending", "pending"]
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["interrupted"] is True
    leftover = subprocess.run(["pgrep", "-f", str(study_dir)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a harness process outlived the orchestrator"
    error = json.loads((events.parent / "error.json").read_text())
    assert error["phase"] == "warmup"


@pytest.mark.slow
def test_an_interrupted_nightly_exits_130_compares_nothing_and_prunes_nothing(
        tiny_model_dir, tmp_path):
    # Ctrl-C during tonight's first run: a partial night is no verdict. llem nightly exits 130
    # as llem run does, writes no comparison and --keep removes no night.
    from llem_testkit.runners import ResultWriter

    from orchestrator import run_study

    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1, 2]\n",
        warmup={"n_warmup": 1, "min_seconds": 300, "max_seconds": 600},
        execution={"config_gap_s": 0, "cycle_gap_s": 0}))
    root = tmp_path / "nightly"
    old = [run_study(study, ResultWriter(), output=root, no_gaps=True)[1] for _ in range(2)]
    process = start_llem("nightly", str(study), "--root", str(root), "--runner", "local",
                         "--keep", "2", "-q", cwd=tmp_path)
    events = wait_for_event(root, "*/001_*/events.jsonl", "warmup", timeout_s=300)
    assert events is not None, "tonight's first run never reached warmup"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: nothing compared, nothing pruned" in stderr
    tonight = events.parent.parent
    assert StudySummary.load(tonight).interrupted
    assert not (tonight / "comparison.json").exists()
    assert all(path.is_dir() for path in old)  # 3 nights, --keep 2: none removed


def _block_sigterm() -> None:
    # Inherited by the harness: it then ignores the runner's SIGTERM, as a harness stuck in a
    # driver call does, and only a kill stops it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _stderr_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str], needle: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    while not any(needle in line for line in seen):
        seen.append(lines.get(timeout=timeout_s))
    return seen


@pytest.mark.slow
def test_second_sigint_kills_the_run_records_it_interrupted_and_exits_130(tiny_model_dir,
                                                                          tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(study_text(
        tiny_model_dir, "sweep:\n  pytorch.batch_size: [1, 2]\n",
        warmup={"n_warmup": 1, "min_seconds": 300, "max_seconds": 600}))
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "local", "--output", "out",
                                "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_block_sigterm)
    lines = _stderr_lines(process)
    _wait_for_warmup(tmp_path / "out", process)
    process.send_signal(signal.SIGINT)
    seen = _wait_for_line(lines, "stopping", timeout_s=120)
    process.send_signal(signal.SIGINT)  # the harness ignores SIGTERM: it is still running
    code = process.wait(timeout=300)
    seen += _drain(lines)
    stderr = "".join(seen)
    assert code == 130, stderr
    assert "Aborted" not in stderr and "Traceback" not in stderr, stderr
    study_dir = only_study_dir(tmp_path / "out")
    first, second = Manifest.load(study_dir).runs
    assert (first.status, second.status) == ("interrupted", "pending")
    assert first.failure is not None and first.failure.cause == "interrupted"
    assert "second Ctrl-C" in first.failure.message, stderr
    summary = StudySummary.model_validate_json((study_dir / "summary.json").read_text())
    assert summary.interrupted is True and summary.counts == {"interrupted": 1, "pending": 1}
    leftover = subprocess.run(["pgrep", "-f", str(study_dir)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "a harness process outlived the orchestrator"


def _wait_for_warmup(output: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300  # generous: only a hang reaches it
    while time.monotonic() < deadline and process.poll() is None:
        found = list(output.glob("*/001_*/events.jsonl"))
        if found and '"warmup"' in found[0].read_text():
            return
        time.sleep(0.3)
    raise AssertionError("the first run never reached its warmup")


def _drain(lines: queue.Queue[str]) -> list[str]:
    rest: list[str] = []
    with contextlib.suppress(queue.Empty):
        while True:
            rest.append(lines.get(timeout=5))
    return rest


@pytest.mark.slow
def test_output_of_the_user_config_is_the_default_output_root(tiny_model_dir, tmp_path):
    config = tmp_path / "xdg" / "llem" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("runner: local\noutput: ~/measured\n")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("LLEM_RUNNER", None)
    study = tmp_path / "s.yaml"
    study.write_text(study_text(tiny_model_dir, "", n=1, output_len=2))
    done = subprocess.run([LLEM, "run", str(study), "-q"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    study_dir = only_study_dir(tmp_path / "home" / "measured")
    assert Manifest.load(study_dir).runner == "local"
    assert not (tmp_path / "results").exists()


BAD_INPUTS = {
    "malformed": "model: m\nbackend: [pytorch\n",
    "unknown_nested_path": (
        "model: m\nbackend: pytorch\nsweep:\n  pytorch.attn.implementation: [sdpa]\n"
    ),
    "backend_field_top_level": "model: m\nbackend: pytorch\nbatch_size: 4\n",
    "unlisted_backend_scope": "model: m\nbackend: pytorch\nsweep:\n  vllm.max_num_seqs: [8]\n",
    "empty_sweep": "model: m\nbackend: pytorch\nsweep:\n  precision: []\n",
    "scalar_sweep": "model: m\nbackend: pytorch\nsweep:\n  precision: bf16\n",
    "duplicate_key": "model: m\nbackend: pytorch\nmodel: n\n",
    "credential": "model: m\nbackend: pytorch\nhf_token: hf_abcdefghijklmnopqrstuvwxyz0123\n",
    "python_tag": "model: !!python/object/apply:os.system ['touch pwned']\nbackend: pytorch\n",
    "yaml_no": "model: m\nbackend: pytorch\nprecision: no\n",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_message_and_touches_nothing(case, tmp_path):
    earlier = tmp_path / "out" / "earlier_study"
    earlier.mkdir(parents=True)
    (earlier / "manifest.json").write_text('{"keep": true}\n')
    before = tree_digest(tmp_path / "out")
    study = tmp_path / f"{case}.yaml"
    study.write_text(BAD_INPUTS[case])
    done = llem("run", str(study), "--runner", "local", "--output", "out", cwd=tmp_path,
                timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 4, done.stderr
    assert str(study.name) in done.stderr or case == "missing"
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in done.stderr + done.stdout
    assert tree_digest(tmp_path / "out") == before
    assert not (tmp_path / "pwned").exists()


def test_missing_file_and_unknown_runner_exit_2(tmp_path):
    done = llem("run", "nope.yaml", "--runner", "local", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "nope.yaml" in done.stderr
    study = tmp_path / "s.yaml"
    study.write_text("model: m\nbackend: pytorch\n")
    done = llem("run", str(study), "--runner", "lokal", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "did you mean 'local'" in done.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_runs_and_skipped_and_starts_nothing(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(
        "model: m\nbackend: [pytorch, vllm]\n"
        "sweep:\n  precision: [fp32, bf16]\n  decoder.mode: [greedy, beam]\n")
    done = llem("run", str(study), "--dry-run", "--output", "out", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "6 configurations x 1 cycles = 6 runs" in done.stdout
    assert done.stdout.count("skipped:") == 2 and "beam" in done.stdout
    assert not (tmp_path / "out").exists()


def test_version():
    done = llem("--version", check=True)
    assert done.stdout.startswith("llem, version ")
    assert os.path.basename(LLEM) == "llem"
