"""Read a versioned JSON file into its model, or say in one line what is wrong with it.

Every JSON file llem reads back (manifest.json, summary.json, stats.json, result.json,
experiment.json) goes through :func:`read_model`: a damaged, foreign or newer file is bad input
(``ConfigError``, exit code 2) that names the file and the schema version found and expected,
never a pydantic traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class UnreadableFileError(ConfigError):
    """A file llem wrote earlier is missing, damaged or does not match its schema.

    Attributes:
        path: the file.
        detail: what is wrong with it, as a predicate ("is not valid JSON ...").
    """

    def __init__(self, path: Path, detail: str, *, fix: str | None = None) -> None:
        super().__init__(f"{path} {detail}", fix=fix)
        self.path = path
        self.detail = detail


class SchemaVersionError(UnreadableFileError):
    """A file carries a schema version this llem does not read (usually a newer llem's)."""


def expected_version(model: type[BaseModel]) -> str | None:
    """The ``schema_version`` the model reads, or None for an unversioned model."""
    field = model.model_fields.get("schema_version")
    return None if field is None else str(field.default)


def read_model(path: Path, model: type[ModelT], fix: str | None = None) -> ModelT:
    """Load ``path`` into ``model``.

    Args:
        path: the JSON file.
        model: the pydantic model it holds (with a ``schema_version`` field, when versioned).
        fix: what the user can do about a damaged file (a default is given otherwise).

    Raises:
        UnreadableFileError: missing, not JSON, or not matching the schema.
        SchemaVersionError: a schema version other than the model's.
    """
    fix = fix or "restore the file, or start again from a fresh directory"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise UnreadableFileError(path, "is missing", fix=fix) from error
    except json.JSONDecodeError as error:
        raise UnreadableFileError(
            path, f"is not valid JSON (truncated or damaged?): line {error.lineno}: "
            f"{error.msg}", fix=fix) from error
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFileError(path, f"cannot be read: {error}", fix=fix) from error
    _check_version(path, data, model)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise UnreadableFileError(
            path, f"does not match schema version {expected_version(model)}: "
            f"{_problems(error)}", fix=fix) from error


def _check_version(path: Path, data: Any, model: type[BaseModel]) -> None:
    expected = expected_version(model)
    if expected is None:
        return
    found = data.get("schema_version") if isinstance(data, dict) else None
    if found is None:
        raise UnreadableFileError(
            path, f"has no schema_version (expected version {expected}); not a file llem "
            "wrote, or a damaged one", fix="pass a file written by llem, or restore it")
    if str(found) != expected:
        raise SchemaVersionError(
            path, f"has schema version {found}; this llem reads version {expected}",
            fix="read it with the llem version that wrote it (see its environment), or "
            "start a fresh directory")


def _problems(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
