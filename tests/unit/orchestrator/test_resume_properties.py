"""Resume over random study files: written in any order, edited cosmetically, topped up.

Whatever the edit that keeps the design, resume never raises, never runs a completed run
again, never loses a result file, and statistics never pool runs of different configurations
or of different environments (a resume may use another runner).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from llem_testkit.runners import ResultWriter

from harness.schema.result import ExperimentResult
from orchestrator import run_study
from orchestrator.manifest import MANIFEST_NAME, Manifest
from orchestrator.run_environment import RunEnvironment
from orchestrator.schedule import plan
from orchestrator.stats import StudyStats
from orchestrator.study import load_study

VALUES: dict[str, list[Any]] = {
    "pytorch.batch_size": [1, 2, 4],
    "precision": ["bf16", "fp16", "fp32"],
    "n": [1, 2, 3],
}
COSMETIC = {
    "precision": "  precision: [bf16]\n",  # a one-value sweep of the default
    "input_len": "input_len: 128\n",  # the default, written out
    "section": "pytorch: {}\n",  # the backend's defaults, written out
    "energy": "energy: {sample_interval_ms: 100}\n",
}

Design = dict[str, list[Any]]


@st.composite
def designs(draw: st.DrawFn) -> Design:
    keys = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=2, unique=True))
    return {key: draw(st.lists(st.sampled_from(VALUES[key]), min_size=1, max_size=2,
                               unique=True)) for key in keys}


@st.composite
def writings(draw: st.DrawFn, design: Design) -> str:
    """The study file of ``design`` with its keys and values in a drawn order, and edits."""
    keys = draw(st.permutations(sorted(design)))
    order = draw(st.sampled_from(["interleaved", "sequential", "shuffled"]))
    cycles = draw(st.integers(1, 2))
    edits = draw(st.lists(st.sampled_from(sorted(COSMETIC)), unique=True, max_size=3))
    nested = draw(st.booleans())  # pytorch: {batch_size: [...]} instead of the dotted key
    top = "".join(COSMETIC[edit] for edit in edits if edit != "precision")
    sweep = ""
    for key in keys:
        values = draw(st.permutations(design[key]))
        shown = "[" + ", ".join(str(v) for v in values) + "]"
        if key == "pytorch.batch_size" and nested:
            sweep += f"  pytorch: {{batch_size: {shown}}}\n"
        else:
            sweep += f"  {key}: {shown}\n"
    if "precision" in edits and "precision" not in design:
        sweep += COSMETIC["precision"]
    return (f"name: p\nmodel: m\nbackend: pytorch\n{top}"
            f"execution: {{n_cycles: {cycles}, cycle_order: {order}, config_gap_s: 0, "
            f"cycle_gap_s: 0}}\nsweep:\n{sweep}")


def result_files(study_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(study_dir)): p.read_bytes()
            for p in sorted(study_dir.glob("*/result.json*"))}


def completed_keys(study_dir: Path) -> set[tuple[str, int]]:
    return {(r.config_hash, r.cycle) for r in Manifest.load(study_dir).runs
            if r.status == "completed"}


def completed_ids(study_dir: Path) -> set[str]:
    return {r.run_id for r in Manifest.load(study_dir).runs if r.status == "completed"}


def died_during(study_dir: Path) -> None:
    """Leave the last run ``running``, as an orchestrator killed after its harness finished."""
    manifest = Manifest.load(study_dir)
    manifest.runs[-1].status, manifest.runs[-1].result_path = "running", None
    (study_dir / MANIFEST_NAME).write_text(manifest.model_dump_json())


def check_study_dir(study_dir: Path) -> None:
    """Every completed run's result is its own, and stats pool one configuration each."""
    runs = Manifest.load(study_dir).runs
    assert len({(r.config_hash, r.cycle) for r in runs}) == len(runs)
    assert len({r.run_id for r in runs}) == len(runs)
    by_id = {r.run_id: r for r in runs}
    for run in runs:
        if run.status == "completed":
            text = (study_dir / run.run_id / "result.json").read_text()
            assert f'"measurement_config_hash":"{run.config_hash}"' in text.replace(" ", "")
    if not any(run.status == "completed" for run in runs):
        return  # no stats.json without a completed run
    for config in StudyStats.load(study_dir).configurations:
        assert {by_id[run_id].config_hash for run_id in config.run_ids} == {config.config_hash}
        environments = {RunEnvironment.of(ExperimentResult.model_validate_json(
            (study_dir / run_id / "result.json").read_text())).key() for run_id in config.run_ids}
        assert config.environment is not None
        assert environments == {config.environment.key()}, "runs of two environments pooled"


# Each example runs whole studies (about a second each): fifteen of them, the same every time,
# and a failing one is reported as drawn, not shrunk (shrinking would take minutes).
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_resume_of_the_same_design_written_otherwise_loses_and_mixes_nothing(data):
    design = data.draw(designs())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = root / "first.yaml"
        first.write_text(data.draw(writings(design)))
        planned = [run.run_id for run in plan(load_study(first))]
        failing = data.draw(st.lists(st.sampled_from(planned), unique=True, max_size=2))
        _, study_dir = run_study(first, ResultWriter(fail=tuple(failing)),
                                 output=root / "out", no_gaps=True)
        check_study_dir(study_dir)
        if data.draw(st.booleans()):
            died_during(study_dir)
        for step in range(data.draw(st.integers(1, 2))):
            edited = root / f"edited{step}.yaml"
            edited.write_text(data.draw(writings(design)))
            cycles = data.draw(st.sampled_from([None, 1, 2, 3]))
            before, done = result_files(study_dir), completed_keys(study_dir)
            done_ids = completed_ids(study_dir)
            runner = ResultWriter(name=data.draw(st.sampled_from(["fake", "other"])))
            summary, _ = run_study(edited, runner, resume=study_dir, cycles=cycles,
                                   no_gaps=True)
            ran = {(spec.config.measurement_config_hash, spec.cycle) for spec in runner.ran}
            assert not ran & done, "a completed run ran again"
            after = result_files(study_dir)
            # every result file's content is still there; a completed run's, at its place
            assert set(before.values()) <= set(after.values()), "a result was lost"
            for run_id in done_ids:
                name = f"{run_id}/result.json"
                assert after.get(name) == before[name], f"{name} changed"
            assert set(summary.counts) == {"completed"}
            check_study_dir(study_dir)
