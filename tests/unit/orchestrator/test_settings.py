"""Runner and output-root precedence: command line > environment > user config > default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.errors import ConfigError
from orchestrator.cli import main
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import resolve_output, resolve_runner, user_config_path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated HOME and XDG_CONFIG_HOME, without LLEM_RUNNER."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LLEM_RUNNER", raising=False)
    return tmp_path


def write_config(text: str) -> Path:
    path = user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    study = tmp_path / "s.yaml"
    study.write_text("model: m\nbackend: pytorch\n")
    return CliRunner().invoke(main, ["run", str(study), *args], env=env)


def test_each_source_of_the_runner_wins_over_the_ones_below_it(home):
    assert resolve_runner(None) == ("docker", "default")
    path = write_config("runner: from-config\n")
    assert path == home / "xdg" / "llem" / "config.yaml"
    assert resolve_runner(None) == ("from-config", str(path))
    # The CLI exits 2 naming the runner it chose: observable precedence, end to end.
    assert "unknown runner 'from-config'" in run_cli(home).output
    env = {"LLEM_RUNNER": "from-env"}
    assert "unknown runner 'from-env'" in run_cli(home, env=env).output
    done = run_cli(home, "--runner", "from-cli", env=env)
    assert done.exit_code == 2 and "unknown runner 'from-cli'" in done.output


def test_without_xdg_the_config_is_read_from_home(home, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    write_config("runner: local\n")
    assert resolve_runner(None) == ("local", str(home / "home/.config/llem/config.yaml"))


def test_the_runner_source_is_named_when_the_runner_cannot_serve_the_study(home, monkeypatch):
    path = write_config("runner: local\n")
    # Whatever this machine has, the configured runner refuses the study.
    monkeypatch.setattr(LocalRunner, "preflight", lambda self, backends, gpus: ["no GPU here"])
    done = run_cli(home, "--output", str(home / "out"))
    assert done.exit_code == 2
    assert f"runner 'local', from {path}" in done.output
    assert not (home / "out").exists()


def test_output_comes_from_the_option_then_the_config_then_results(home):
    assert resolve_output(None) == Path("results")
    write_config("output: ~/llem-results\n")
    assert resolve_output(None) == home / "home" / "llem-results"
    assert resolve_output(Path("cli")) == Path("cli")


@pytest.mark.parametrize(("text", "named"), [
    ("output: 3\n", "'output' must be a non-empty text"),
    ("output: ''\n", "'output' must be a non-empty text"),
    ("outptu: x\n", "unknown key(s) outptu"),
])
def test_a_bad_config_key_exits_2_naming_the_key_and_the_fix(home, text, named):
    write_config(text)
    with pytest.raises(ConfigError, match="fix:"):
        resolve_output(None)
    done = run_cli(home, "--runner", "local")
    assert done.exit_code == 2
    assert named in done.output and "fix:" in done.output
