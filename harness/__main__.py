"""``python -m harness run FILE``: the container's (and the local runner's) entry point."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TypeVar

import click
from pydantic import BaseModel, ValidationError

from harness._version import __version__
from harness.errors import ConfigError, LlemError
from harness.io import write_json
from harness.paths import (
    create_unique_dir,
    local_adapter_path,
    local_input_paths,
    sanitize,
    utc_stamp,
)
from harness.schema.config import ExperimentConfig
from harness.schema.messages import describe
from harness.schema.run_spec import RunSpec

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
ModelT = TypeVar("ModelT", bound=BaseModel)


@click.group()
@click.version_option(__version__, prog_name="llem-harness")
def main() -> None:
    """Llem measurement harness: runs one experiment into one run directory."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output root when FILE is a single-experiment file.")
def run(file: Path, output: Path) -> None:
    """Run FILE: a run directory's experiment.json, or a single-experiment YAML/JSON file."""
    from harness.protocol import ExperimentRun

    try:
        spec, run_dir = _resolve(file, output)
    except LlemError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"run directory: {run_dir}", err=True)
    # A runner stops a run with SIGTERM; turn it into an exception so the time series is
    # finalised and error.json written on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        ExperimentRun(spec, run_dir).execute()
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        _exit_now(EXIT_INTERRUPTED)
    except LlemError as error:
        click.echo(f"error: {error}", err=True)
        _exit_now(EXIT_FAILED)
    except Exception as error:  # error.json holds the traceback
        click.echo(f"error: {type(error).__name__}: {error}", err=True)
        _exit_now(EXIT_FAILED)
    click.echo(str(run_dir / "result.json"))
    _exit_now(EXIT_OK)


def _exit_now(code: int) -> None:
    """Exit without interpreter teardown.

    Every file of the run is already written, fsynced and closed; tearing down torch (and
    CUDA) in the interpreter's shutdown costs seconds that would only delay the runner.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _resolve(file: Path, output: Path) -> tuple[RunSpec, Path]:
    if not file.is_file():
        raise ConfigError(f"{file}: no such file", fix="pass an experiment.json or a YAML file")
    data = _read(file)
    if isinstance(data, dict) and "config" in data and "run_id" in data:
        return _validate(RunSpec, data, file), file.parent
    config = _validate(ExperimentConfig, data, file)
    # Relative paths are relative to the file, as in a study (llem run).
    base = file.parent
    config = config.model_copy(update=local_input_paths(config.model, config.dataset, base,
                                                        base))
    adapter = local_adapter_path(config.lora.adapter, base) if config.lora else None
    if config.lora is not None and adapter is not None:
        config = config.model_copy(update={"lora": config.lora.model_copy(
            update={"adapter": adapter})})
    run_dir = create_unique_dir(output, f"{sanitize(file.stem)}_{utc_stamp()}")
    spec = RunSpec(run_id=run_dir.name, config=config, runner="harness")
    write_json(run_dir / "experiment.json", spec)
    return spec, run_dir


def _read(file: Path) -> object:
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{file}:{error.lineno}: not valid JSON: {error.msg}") from error
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from error


def _validate(model: type[ModelT], data: object, file: Path) -> ModelT:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(p.message for p in describe(error))
        raise ConfigError(f"{file}: {problems}") from error


if __name__ == "__main__":
    main()
