"""Write a study file into a test's folder, then load it or expect the error it must raise."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.schema.run_spec import RunSpec
from orchestrator.study import Study, StudyFileError, load_study


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    """Write ``text`` (dedented, leading blank lines dropped) to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load_error(path: Path) -> StudyFileError:
    """Load the study at ``path``, fail the test unless it raises StudyFileError; return it."""
    with pytest.raises(StudyFileError) as caught:
        load_study(path)
    return caught.value


def single_run_study(tmp_path: Path, execution: str = "") -> tuple[Study, Path]:
    """A one-run study (model ``m``, no gaps) loaded, and an empty ``out`` folder for it.

    Args:
        execution: more ``execution:`` settings, as YAML flow entries (``"stall_timeout_s: 60"``).
    """
    extra = f", {execution}" if execution else ""
    path = write(tmp_path, "model: m\nbackend: pytorch\n"
                 f"execution: {{n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0{extra}}}\n",
                 name="s.yaml")
    out = tmp_path / "out"
    out.mkdir()
    return load_study(path), out


def one_run_study(folder: Path, model: str, name: str = "s", file: str = "s.yaml") -> Path:
    """A study file of one pytorch run of ``model`` (no gaps, one cycle) in ``folder``."""
    path = folder / file
    path.write_text(f"name: {name}\nmodel: {model}\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def scripted_study(folder: Path, values: Mapping[int, Mapping[str, Sequence[float]]],
                   name: str = "s", environment: Mapping[str, Any] | None = None) -> Path:
    """Run a study whose runs have the given per-cycle values; return its study directory.

    Args:
        folder: where the study file and the output go (a fresh ``out-N`` folder per call).
        values: pytorch batch size (one configuration each) -> metric name -> value per
            cycle; every list has the study's number of cycles.
        name: the study's name.
        environment: fields set in every result's ``environment`` (``driver_version``, ...).
    """
    from llem_testkit.runners import ScriptedResults
    from orchestrator import run_study

    cycles = max(len(v) for metrics in values.values() for v in metrics.values())
    sizes = ", ".join(str(size) for size in values)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodel: m\nbackend: pytorch\n"
                    f"execution: {{n_cycles: {cycles}, config_gap_s: 0, cycle_gap_s: 0}}\n"
                    f"sweep: {{pytorch.batch_size: [{sizes}]}}\n")

    def run_values(spec: RunSpec) -> dict[str, float]:
        metrics = values[spec.config.pytorch.batch_size]
        return {metric: cycle_values[spec.cycle - 1]
                for metric, cycle_values in metrics.items() if spec.cycle <= len(cycle_values)}

    output = folder / f"out-{len(list(folder.glob('out-*')))}"
    _, study_dir = run_study(path, ScriptedResults(run_values, environment), output=output,
                             no_gaps=True)
    return study_dir
