"""`make nightly` end to end on this machine: the demo study (made small) night after night.

The tiny model on CPU has no energy sensor, so the gating figure here is throughput; CPU
throughput on a shared CI machine moves by more than the default 5 % between nights, so these
nights use a 50 % threshold. The injected regression (the previous night's results made four
times faster) is far beyond it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.schema.result import ExperimentResult
from orchestrator.manifest import Manifest
from orchestrator.stats import write_stats
from orchestrator.tables import load_results

REPO = Path(__file__).parents[2]


def small_demo(tmp_path: Path, model: Path) -> Path:
    """studies/demo.yaml as its base: one precision, fewer and shorter prompts, three cycles."""
    path = tmp_path / "nightly.yaml"
    path.write_text(f"base: {REPO / 'studies' / 'demo.yaml'}\nname: nightly\nmodel: {model}\n"
                    "n: 4\ninput_len: 16\noutput_len: 8\nexecution: {n_cycles: 3}\n"
                    "sweep:\n  precision: [fp32]\n")
    return path


def make_nightly(study: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """``make nightly`` with this interpreter's environment (its install step taken as done)."""
    venv = Path(sys.executable).parents[1]
    return subprocess.run(
        ["make", "-s", "-o", "install", "nightly", f"VENV={venv}", "RUNNER=local",
         f"NIGHTLY_STUDY={study}", f"NIGHTLY_ROOT={root}", "NIGHTLY_ARGS=--threshold 50 -q"],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False)


def nights(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if (path / "manifest.json").is_file())


def make_faster(study_dir: Path, factor: float) -> None:
    """Rewrite a night's results as if it had run ``factor`` times faster, stats included."""
    manifest = Manifest.load(study_dir)
    for run in manifest.runs:
        path = study_dir / str(run.result_path)
        result = ExperimentResult.model_validate_json(path.read_text())
        faster = result.throughput.model_copy(update={
            "output_tokens_per_s": result.throughput.output_tokens_per_s * factor})
        path.write_text(result.model_copy(update={"throughput": faster}).model_dump_json())
    write_stats(study_dir, load_results(study_dir, manifest))


@pytest.mark.slow
def test_nights_are_compared_and_an_injected_regression_fails_naming_the_metric(
        tiny_model_dir, tmp_path):
    study, root = small_demo(tmp_path, tiny_model_dir), tmp_path / "nightly"
    first = make_nightly(study, root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "first nightly here: nothing to compare with yet" in first.stdout

    second = make_nightly(study, root)
    assert second.returncode == 0, second.stdout + second.stderr
    earlier, latest = nights(root)
    assert (latest / "report.html").is_file() and (earlier / "report.html").is_file()
    comparison = json.loads((latest / "comparison.json").read_text())
    assert not comparison["regressed"]
    assert "output_tokens_per_s" in (latest / "comparison.md").read_text()

    make_faster(latest, 4.0)  # tonight will look four times slower than this night
    third = make_nightly(study, root)
    assert third.returncode == 1, third.stdout + third.stderr
    assert "output_tokens_per_s" in third.stdout and "regressed" in third.stdout
    tonight = nights(root)[-1]
    assert json.loads((tonight / "comparison.json").read_text())["regressed"]
