"""Where a study runs and writes, from the command line, the environment and the user config.

Runner: ``--runner`` > ``LLEM_RUNNER`` > ``execution.runner`` of the study > ``runner:`` in the
user config > ``docker``.
Output root: ``--output`` > ``output:`` in the user config > ``results``.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import ConfigError

DEFAULT_RUNNER = "docker"
DEFAULT_OUTPUT = Path("results")
USER_CONFIG = Path("~/.config/llem/config.yaml")
RUNNER_ENV = "LLEM_RUNNER"


def user_config_path() -> Path:
    """The user config file (``$XDG_CONFIG_HOME/llem/config.yaml`` when set)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "llem" / "config.yaml"
    return USER_CONFIG.expanduser()


def resolve_runner(cli_value: str | None, study_value: str | None = None) -> tuple[str, str]:
    """Return (runner name, where it came from); ``study_value``: the study's own choice."""
    if cli_value:
        return cli_value, "--runner"
    if os.environ.get(RUNNER_ENV):
        return os.environ[RUNNER_ENV], RUNNER_ENV
    if study_value:
        return study_value, "execution.runner"
    configured = _setting("runner")
    if configured:
        return configured, str(user_config_path())
    return DEFAULT_RUNNER, "default"


def resolve_output(cli_value: Path | None) -> Path:
    """The output root: ``--output``, else ``output:`` of the user config, else ``results``.

    A configured path may start with ``~``; a relative one is relative to the current
    directory, as ``--output`` is.
    """
    if cli_value is not None:
        return cli_value
    configured = _setting("output")
    return Path(configured).expanduser() if configured else DEFAULT_OUTPUT


def _setting(key: str) -> str | None:
    value = _user_config().get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{user_config_path()}: '{key}' must be a non-empty text, not "
                          f"{value!r}", fix=f"write it like '{key}: {_EXAMPLES[key]}'")
    return value


_EXAMPLES = {"runner": "docker", "output": "~/llem-results"}


def _user_config() -> dict[str, object]:
    path = user_config_path()
    if not path.is_file():
        return {}
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise ConfigError(
            f"{path}: not valid YAML: {error}", fix="fix or remove the file"
        ) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping such as 'runner: docker'")
    unknown = sorted(set(data) - {"runner", "output"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: runner, output",
                          fix=f"remove {', '.join(unknown)} from the file")
    return data
