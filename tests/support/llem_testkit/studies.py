"""Write a study file into a test's folder, then load it or expect the error it must raise."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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
