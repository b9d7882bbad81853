"""`llem run --json` prints a JSON object on stdout even when llem itself fails (a bug, Ctrl-C)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import cli


@pytest.mark.parametrize(("raised", "message"), [
    (RuntimeError("boom"), "unexpected RuntimeError: boom"),
    (KeyboardInterrupt(), "aborted"),
])
def test_an_unexpected_failure_is_a_json_object_with_the_exit_code(monkeypatch, tmp_path: Path,
                                                                   raised, message) -> None:
    def load_study(path: Path) -> None:
        raise raised

    monkeypatch.setattr(cli, "load_study", load_study)
    study = tmp_path / "s.yaml"
    study.write_text("model: m\nbackend: pytorch\n")
    plain = CliRunner().invoke(cli.main, ["run", str(study)])
    as_json = CliRunner().invoke(cli.main, ["run", str(study), "--json"])
    assert plain.exit_code == as_json.exit_code == 1
    assert plain.stdout == ""
    error = json.loads(as_json.stdout)
    assert error["error"] == message and error["exit_code"] == 1
