"""Where a study runs: CLI ``--runner`` > ``LLEM_RUNNER`` > user config > default."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import ConfigError

DEFAULT_RUNNER = "docker"
USER_CONFIG = Path("~/.config/llem/config.yaml")
RUNNER_ENV = "LLEM_RUNNER"


def user_config_path() -> Path:
    """The user config file (``$XDG_CONFIG_HOME/llem/config.yaml`` when set)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "llem" / "config.yaml"
    return USER_CONFIG.expanduser()


def resolve_runner(cli_value: str | None) -> tuple[str, str]:
    """Return (runner name, where it came from)."""
    if cli_value:
        return cli_value, "--runner"
    if os.environ.get(RUNNER_ENV):
        return os.environ[RUNNER_ENV], RUNNER_ENV
    configured = _user_config().get("runner")
    if configured:
        return str(configured), str(user_config_path())
    return DEFAULT_RUNNER, "default"


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
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: runner, output")
    return data
