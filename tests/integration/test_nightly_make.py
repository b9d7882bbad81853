"""`make nightly` end to end on this machine: the demo study (made small) night after night.

The tiny model on CPU has no energy sensor, so the gating figure here is throughput. CPU
throughput on a shared two-core CI machine swings by several times between runs, so whether
the second night regressed is whatever its comparison says (the test checks that the exit code
agrees with it); the injected regression (the previous night rewritten as a steady million
tokens per second) is beyond any such swing.
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
    """studies/demo.yaml as its base: one configuration of it, fewer prompts, two cycles.

    Two cycles are the fewest a comparison tests (the nightly study has three); each night is
    then two local runs of the tiny model.
    """
    path = tmp_path / "nightly.yaml"
    path.write_text(f"base: {REPO / 'studies' / 'demo.yaml'}\nname: nightly\nmodel: {model}\n"
                    "n: 16\ninput_len: 16\noutput_len: 32\nexecution: {n_cycles: 2}\n"
                    "sweep:\n  precision: [fp32]\n  pytorch.batch_size: [8]\n")
    return path


def make_nightly(study: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """``make nightly`` with this interpreter's environment (its install step taken as done)."""
    venv = Path(sys.executable).parents[1]
    return subprocess.run(
        ["make", "-s", "-o", "install", "nightly", f"VENV={venv}", "RUNNER=local",
         f"NIGHTLY_STUDY={study}", f"NIGHTLY_ROOT={root}", "NIGHTLY_ARGS=-q"],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False)


def nights(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if (path / "manifest.json").is_file())


def rewrite_throughput(study_dir: Path, tokens_per_s: float) -> None:
    """Rewrite a night's results as if it had run at ``tokens_per_s`` (+0.1 % per cycle)."""
    manifest = Manifest.load(study_dir)
    for run in manifest.runs:
        path = study_dir / str(run.result_path)
        result = ExperimentResult.model_validate_json(path.read_text())
        faster = result.throughput.model_copy(update={
            "output_tokens_per_s": tokens_per_s * (1 + run.cycle / 1000)})
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
    earlier, latest = nights(root)
    assert (latest / "report.html").is_file() and (earlier / "report.html").is_file()
    comparison = json.loads((latest / "comparison.json").read_text())
    assert (second.returncode != 0) == comparison["regressed"], second.stderr
    assert "output_tokens_per_s" in (latest / "comparison.md").read_text()

    rewrite_throughput(latest, 1e6)  # tonight will look far slower than this night
    third = make_nightly(study, root)
    # make exits 2 whenever its recipe fails; the recipe's own status (llem's 1) is in its line
    assert third.returncode == 2 and "nightly] Error 1" in third.stderr, third.stdout + third.stderr
    assert "output_tokens_per_s" in third.stdout and "regressed" in third.stdout
    tonight = nights(root)[-1]
    assert json.loads((tonight / "comparison.json").read_text())["regressed"]
