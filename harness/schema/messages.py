"""Turn pydantic validation errors into messages a user can act on.

Every message names the field, the bad value (unless it may be a secret), what is allowed,
and, for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.schema.config import CROSS_CHECK, ExperimentConfig
from harness.schema.rules import BACKENDS

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration.

    Attributes:
        path: location of the offending key inside the config (empty for the whole config).
        message: what is wrong, what is allowed, and the nearest valid key where there is one.
        cross_check: True when the values are each valid but their combination is not
            (a study skips such an entry instead of failing).
    """

    path: Path
    message: str
    cross_check: bool = False

    @property
    def dotted(self) -> str:
        """The path as ``a.b.c``."""
        return ".".join(str(part) for part in self.path)


def did_you_mean(word: str, options: Sequence[str]) -> str | None:
    """Return the closest option to ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if matches:
        return matches[0]
    # "attn" -> "attn_implementation": a key that is a leading word of a valid one.
    for option in options:
        if option.startswith(word + "_") or word in option.split("_"):
            return option
    return None


def model_at(path: Path, root: type[BaseModel] = ExperimentConfig) -> type[BaseModel] | None:
    """Return the config model that holds the keys at ``path`` (None past a leaf)."""
    model: type[BaseModel] | None = root
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def unknown_key_message(path: Path, root: type[BaseModel] = ExperimentConfig) -> str:
    """Message for an unknown key at ``path``, with the nearest valid key and where it lives."""
    key = str(path[-1])
    parent = model_at(path[:-1], root)
    options = list(parent.model_fields) if parent else []
    dotted = ".".join(str(p) for p in path)
    message = f"unknown key '{dotted}'"
    guess = did_you_mean(key, options)
    if guess:
        prefix = ".".join(str(p) for p in path[:-1])
        return f"{message}; did you mean '{prefix + '.' if prefix else ''}{guess}'?"
    home = _section_holding(key) if not path[:-1] else None
    if home:
        return f"{message}; '{key}' is a {home} setting: write it as '{home}.{key}'"
    if options:
        return f"{message}; allowed here: {', '.join(options)}"
    return message


def _section_holding(key: str) -> str | None:
    for section in (*BACKENDS, "decoder", "warmup", "baseline", "energy"):
        model = model_at((section,))
        if model is not None and key in model.model_fields:
            return section
    return None


def describe(error: ValidationError, root: type[BaseModel] = ExperimentConfig) -> list[Problem]:
    """Translate a pydantic error into problems, one per offending key."""
    problems = [_describe_one(item, root) for item in error.errors(include_input=True)]
    unique: dict[tuple[Path, str], Problem] = {}
    for problem in problems:
        unique.setdefault((problem.path, problem.message), problem)
    return list(unique.values())


def _describe_one(item: Any, root: type[BaseModel]) -> Problem:
    path: Path = tuple(part for part in item["loc"] if not _is_union_tag(part))
    kind = item["type"]
    dotted = ".".join(str(p) for p in path) or "config"
    if kind == "extra_forbidden":
        return Problem(path, unknown_key_message(path, root))
    if kind == CROSS_CHECK:
        return Problem(path, item["msg"], cross_check=True)
    if kind.startswith("llem_"):
        return Problem(path, item["msg"])
    if kind == "missing":
        return Problem(path, f"{dotted} is required")
    value = item.get("input")
    shown = repr(value) if isinstance(value, int | float | str | bool) else type(value).__name__
    if kind in ("literal_error", "enum"):
        expected = item.get("ctx", {}).get("expected", "")
        return Problem(path, f"{dotted}: {shown} is not allowed; allowed: {expected}")
    return Problem(path, f"{dotted}: {shown} is invalid: {_lower_first(item['msg'])}")


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the union member's name ("ExperimentConfig", "int") into some locations.
    return isinstance(part, str) and (part[:1].isupper() or part in {"int", "float", "str"})


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
