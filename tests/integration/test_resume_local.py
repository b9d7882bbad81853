"""Resume, top-up, design-change refusal and damaged-result detection (local runner)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from llem_testkit import cli
from llem_testkit.cli import tree_digest

from orchestrator.manifest import Manifest
from orchestrator.study import load_study
from orchestrator.study_dir import open_study_dir
from orchestrator.summary import StudySummary

pytestmark = pytest.mark.slow


def write(path: Path, model: Path, batch_sizes: list[int], cycles: int) -> Path:
    path.write_text(
        f"name: r\nmodel: {model}\nbackend: pytorch\nprecision: fp32\nn: 2\ninput_len: 8\n"
        "output_len: 4\nwarmup: {n_warmup: 0, min_seconds: 0}\n"
        f"execution: {{n_cycles: {cycles}, config_gap_s: 0, cycle_gap_s: 0}}\n"
        f"sweep:\n  pytorch.batch_size: {json.dumps(batch_sizes)}\n")
    return path


def llem(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli.llem(*args, "--runner", "local", "-q", cwd=cwd, timeout=600)


def started(study_dir: Path) -> dict[str, str]:
    return {r.run_id: r.started_at or "" for r in Manifest.load(study_dir).runs}


def test_top_up_runs_only_the_new_cycle(tiny_model_dir, tmp_path):
    study = write(tmp_path / "s.yaml", tiny_model_dir, [1], cycles=2)
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    before = {p: p.read_bytes() for p in study_dir.glob("*/result.json")}
    done = llem("run", str(study), "--resume", str(study_dir), "--cycles", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 of 3 runs to do" in done.stderr
    runs = Manifest.load(study_dir).runs
    assert [(r.cycle, r.status) for r in runs] == [(1, "completed"), (2, "completed"),
                                                  (3, "completed")]
    assert {p: p.read_bytes() for p in before} == before  # earlier results untouched
    stats = json.loads((study_dir / "stats.json").read_text())
    (config,) = stats["configurations"]
    # every cycle is accounted for: pooled, or listed as flagged with its reason (these
    # windows last milliseconds, under the 1 s the counter can resolve: sanity flags them)
    flagged = config["flagged"]
    assert sorted(config["cycles"] + [f["cycle"] for f in flagged]) == [1, 2, 3]
    assert all(f["reasons"] == ["sanity_check_failed"] for f in flagged)


def test_a_cosmetic_edit_that_renames_the_runs_resumes_and_tops_up(tiny_model_dir, tmp_path):
    # Before: sweeping the precision already set renamed every run (pytorch-bs1 ->
    # pytorch-bs1-fp32); --resume --cycles 2 then ended in a KeyError (exit 1) after saving
    # the manifest, and the original file failed the same way from then on.
    study = write(tmp_path / "k1.yaml", tiny_model_dir, [1], cycles=1)
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    (first,) = Manifest.load(study_dir).runs
    result = (study_dir / first.run_id / "result.json").read_bytes()
    edited = tmp_path / "k2.yaml"
    edited.write_text(study.read_text() + "  precision: [fp32]\n")
    done = llem("run", str(edited), "--resume", str(study_dir), "--cycles", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 of 2 runs to do" in done.stderr
    runs = Manifest.load(study_dir).runs
    assert [(r.run_id, r.status) for r in runs] == [(first.run_id, "completed"),
                                                    ("001_pytorch-bs1_c2", "completed")]
    assert (study_dir / first.run_id / "result.json").read_bytes() == result
    again = llem("run", str(study), "--resume", str(study_dir), "--cycles", "2", cwd=tmp_path)
    assert again.returncode == 0 and "0 of 2 runs to do" in again.stderr, again.stderr


def test_changed_design_is_refused_with_what_changed(tiny_model_dir, tmp_path):
    study = write(tmp_path / "s.yaml", tiny_model_dir, [1], cycles=1)
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    manifest_before = (study_dir / "manifest.json").read_bytes()
    edited = write(tmp_path / "edited.yaml", tiny_model_dir, [1, 2], cycles=1)
    done = llem("run", str(edited), "--resume", str(study_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert "1 configuration(s) added (pytorch-bs2), 0 removed" in done.stderr, done.stderr
    assert "differs" in done.stderr
    assert (study_dir / "manifest.json").read_bytes() == manifest_before


def test_truncated_result_is_detected_and_run_again(tiny_model_dir, tmp_path):
    study = write(tmp_path / "s.yaml", tiny_model_dir, [1, 2], cycles=1)
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    first, second = Manifest.load(study_dir).runs
    damaged = study_dir / second.run_id / "result.json"
    damaged.write_bytes(damaged.read_bytes()[:100])
    intact = (study_dir / first.run_id / "result.json").read_bytes()
    done = llem("run", "--resume", str(study_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{second.run_id}: result.json is not valid JSON" in done.stderr
    assert "1 of 2 runs to do" in done.stderr
    assert json.loads(damaged.read_text())["run_id"] == second.run_id
    assert (study_dir / first.run_id / "result.json").read_bytes() == intact
    (kept,) = damaged.parent.glob("result.json.invalid-*")  # moved aside, never deleted
    assert len(kept.read_bytes()) == 100
    assert f"kept as {second.run_id}/{kept.name}" in done.stderr


DAMAGES: dict[str, tuple[Callable[[str], str], str]] = {
    "truncated": (lambda text: text[: len(text) // 2],
                  "is not valid JSON (truncated or damaged?): line"),
    "newer": (lambda text: text.replace('"schema_version": "1"', '"schema_version": "2"', 1),
              "has schema version 2; this llem reads version 1"),
    "edited": (lambda text: text.replace('"cycle": 1', '"cycle": "one"', 1),
               "does not match schema version 1: runs.0.cycle: "),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_or_newer_manifest_is_bad_input_and_nothing_changes(tiny_model_dir, tmp_path,
                                                                       damage):
    # Before: a pydantic traceback and exit code 1.
    study = write(tmp_path / "s.yaml", tiny_model_dir, [1], cycles=1)
    with open_study_dir(load_study(study), "local", output_root=tmp_path / "out") as opened:
        study_dir = opened.path
    manifest = study_dir / "manifest.json"
    change, says = DAMAGES[damage]
    manifest.write_text(change(manifest.read_text()))
    before = tree_digest(study_dir)
    done = llem("run", "--resume", str(study_dir), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    *_, error, fix = done.stderr.strip().splitlines()
    assert error.startswith(f"error: {manifest} {says}"), done.stderr
    assert fix.startswith("  fix: ")
    assert tree_digest(study_dir) == before


def test_second_run_on_a_locked_study_refuses(tiny_model_dir, tmp_path):
    from filelock import FileLock

    study = write(tmp_path / "s.yaml", tiny_model_dir, [1], cycles=1)
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    with FileLock(str(study_dir / ".llem.lock")):
        done = llem("run", "--resume", str(study_dir), cwd=tmp_path)
    assert done.returncode == 2 and "another llem run is working on" in done.stderr


def test_large_study_needs_yes(tmp_path):
    study = tmp_path / "big.yaml"
    study.write_text("model: m\nbackend: pytorch\nsweep:\n  input_len: "
                     f"{json.dumps(list(range(1, 1002)))}\n")
    done = cli.llem("run", str(study), "--runner", "local", "--output", "o", cwd=tmp_path,
                    timeout=120)
    assert done.returncode == 2 and "1001 runs" in done.stderr and "--yes" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_study_built_on_bases_resumes_from_its_folder_alone(tiny_model_dir, tmp_path):
    # Before: "base file not found": the folder kept the study file but not its bases.
    shared = tmp_path / "studies" / "shared"
    shared.mkdir(parents=True)
    (shared / "base.yaml").write_text(
        f"model: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 2\ninput_len: 8\n"
        "output_len: 4\nwarmup: {n_warmup: 0, min_seconds: 0}\n"
        "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    study = tmp_path / "studies" / "exp" / "s.yaml"
    study.parent.mkdir()
    study.write_text("name: r\nbase: ../shared/base.yaml\nsweep:\n  pytorch.batch_size: [1]\n")
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    (tmp_path / "studies").rename(tmp_path / "moved")

    done = llem("run", "--resume", str(study_dir), "--cycles", "2", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "1 of 2 runs to do" in done.stderr
    assert [r.status for r in Manifest.load(study_dir).runs] == ["completed", "completed"]


def test_the_summary_describes_every_invocation(tiny_model_dir, tmp_path):
    # Before: summary.json described the last invocation only (its runner, order and gaps).
    study = write(tmp_path / "s.yaml", tiny_model_dir, [1], cycles=1)
    study.write_text(study.read_text().replace("config_gap_s: 0, cycle_gap_s: 0",
                                               "config_gap_s: 2, cycle_gap_s: 3"))
    assert llem("run", str(study), "--output", "out", cwd=tmp_path).returncode == 0
    (study_dir,) = (tmp_path / "out").iterdir()
    done = llem("run", "--resume", str(study_dir), "--cycles", "2", "--order", "sequential",
                "--no-gaps", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = StudySummary.model_validate_json(done.stdout)
    assert summary == StudySummary.load(study_dir)
    first, second = summary.invocations
    assert (first.resumed, first.runner, first.n_cycles, first.cycle_order, first.no_gaps,
            first.config_gap_s, first.cycle_gap_s) == (
                False, "local", 1, "interleaved", False, 2.0, 3.0)
    assert (second.resumed, second.runner, second.n_cycles, second.cycle_order, second.no_gaps,
            second.config_gap_s, second.cycle_gap_s) == (
                True, "local", 2, "sequential", True, 0.0, 0.0)
    assert summary.invocations == Manifest.load(study_dir).invocations


def with_dataset(folder: Path, model: Path) -> Path:
    """A one-run study beside its prompts.jsonl, which it names by a relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.jsonl").write_text('{"prompt": "hello"}\n{"prompt": "good day"}\n')
    path = write(folder / "s.yaml", model, [1], cycles=1)
    path.write_text(path.read_text() + "dataset: prompts.jsonl\n")
    return path


def test_an_edited_dataset_is_refused_on_resume_naming_the_file(tiny_model_dir, tmp_path):
    # Before: the hash covered the path only, and resume pooled the edited workload's runs.
    study = with_dataset(tmp_path / "study", tiny_model_dir)
    with open_study_dir(load_study(study), "local", output_root=tmp_path / "out") as opened:
        study_dir = opened.path
    (tmp_path / "study" / "prompts.jsonl").write_text('{"prompt": "something else"}\n')
    before = tree_digest(study_dir)
    done = llem("run", str(study), "--resume", str(study_dir), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "prompts.jsonl" in done.stderr and "changed content" in done.stderr
    assert tree_digest(study_dir) == before


def test_a_relative_dataset_means_the_file_beside_the_study_wherever_llem_runs(tiny_model_dir,
                                                                              tmp_path):
    # Before: relative to the working directory, so a resume after a cd read another file.
    study = with_dataset(tmp_path / "study", tiny_model_dir)
    with open_study_dir(load_study(study), "local", output_root=tmp_path / "out") as opened:
        study_dir = opened.path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "prompts.jsonl").write_text('{"prompt": "not this one"}\n')
    done = llem("run", "--resume", str(study_dir), cwd=elsewhere)  # the folder's copy alone
    assert done.returncode == 0, done.stderr
    (entry,) = Manifest.load(study_dir).runs
    assert entry.status == "completed" and entry.environment is not None
    assert entry.environment.runner == "local" and entry.runner == "local"
    result = json.loads((study_dir / entry.run_id / "result.json").read_text())
    assert result["config"]["dataset"] == str((tmp_path / "study" / "prompts.jsonl").resolve())
