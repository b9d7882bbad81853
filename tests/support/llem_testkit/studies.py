"""Write a study file into a test's folder, then load it or expect the error it must raise."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.study import StudyFileError, load_study


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
