"""Keys of a study file checked against the config models, and settings gathered in layers.

A key may be a dotted path (``pytorch.batch_size: 8``) anywhere a config key is allowed; it
means the same as the nested form. Every key is checked against ``ExperimentConfig`` before any
experiment is built, so an unknown key fails with its line and the nearest valid key.

A `Layer` holds the settings one part of a file contributes (the shared defaults, one sweep
value, one explicit entry) as a nested dict, with the position each setting was written at.
An experiment is the merge of its layers; a problem found later is traced back to the layer,
and so to the line, that set the offending value.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from harness.schema.config import ExperimentConfig
from harness.schema.messages import did_you_mean, model_at
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.execution import ExecutionConfig
from orchestrator.study.safe_yaml import LocDict, LocList, to_plain

ConfigPath = tuple[str | int, ...]

FREE = "free"
"""Target of a ``dict[str, Any]`` field (``passthrough_kwargs``): any key goes below it."""
Target = type[BaseModel] | str | None
"""What a config path points at: a config model, FREE, or None for a single value."""


@dataclass
class Layer:
    """Settings from one part of a study file, with where each was written.

    Attributes:
        values: nested settings, as ``ExperimentConfig`` keys them.
        positions: config path -> position of the key (or list item) that set it.

    """

    values: dict[str, Any] = field(default_factory=dict)
    positions: dict[ConfigPath, Pos] = field(default_factory=dict)

    def set(self, path: tuple[str, ...], value: Any, pos: Pos) -> None:
        """Set ``value`` at ``path``; a second setting of the same path is an error."""
        parent = self._parent(path, pos)
        if path[-1] in parent:
            raise _set_twice(path, pos, self.positions.get(path))
        parent[path[-1]] = to_plain(value)
        self._record(path, value, pos)

    def section(self, path: tuple[str, ...], pos: Pos) -> None:
        """Make sure a mapping exists at ``path`` (``pytorch: {}`` keeps an empty section)."""
        parent = self._parent(path, pos)
        existing = parent.setdefault(path[-1], {})
        if not isinstance(existing, dict):
            raise _set_twice(path, pos, self.positions.get(path))
        self.positions.setdefault(path, pos)

    def without(self, *keys: str) -> Layer:
        """Return a copy without the given top-level keys (and their positions)."""
        values = {key: value for key, value in self.values.items() if key not in keys}
        positions = {path: pos for path, pos in self.positions.items() if path[0] not in keys}
        return Layer(values, positions)

    def over(self, base: Layer) -> Layer:
        """Merge this layer over ``base``: mappings key by key, other values replace.

        A null over a mapping removes it (``vllm: null`` drops the base's ``vllm:`` section),
        and with it the positions of what the base set below it.
        """
        removed = [path for path in self.positions if _value_at(self.values, path) is None]
        kept = {path: pos for path, pos in base.positions.items()
                if not any(path[: len(gone)] == gone for gone in removed)}
        return Layer(merge(base.values, self.values), {**kept, **self.positions})

    def _parent(self, path: tuple[str, ...], pos: Pos) -> dict[str, Any]:
        node = self.values
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _set_twice(path[: depth + 1], pos, self.positions.get(path[: depth + 1]))
            self.positions.setdefault(path[: depth + 1], pos)  # 'pytorch' of 'pytorch.batch_size'
            node = child
        return node

    def _record(self, path: ConfigPath, value: Any, pos: Pos) -> None:
        self.positions[path] = pos
        if isinstance(value, LocList):
            for index, item in enumerate(value):
                self._record((*path, index), item, value.item_pos[index])
        elif isinstance(value, LocDict):
            for key, item in value.items():
                self._record((*path, key), item, value.key_pos[key])


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base``: mappings recursively, anything else replaces.

    A null over a mapping removes the mapping: the section is as if never written (its
    defaults apply), which is how a child study drops a section of its base.
    """
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if value is None and isinstance(below, dict):
            del merged[key]
            continue
        both_maps = isinstance(below, dict) and isinstance(value, dict)
        merged[key] = merge(below, value) if both_maps else value  # type: ignore[arg-type]
    return merged


def _value_at(values: dict[str, Any], path: ConfigPath) -> Any:
    found: Any = values
    for part in path:
        if not isinstance(found, dict) or part not in found:
            return ...  # not set: never confused with null
        found = found[part]
    return found


def config_layer(mapping: LocDict, *, top_level: bool = False) -> Layer:
    """Check every key of a config mapping and gather its settings into a layer.

    Args:
        mapping: shared defaults or one ``experiments:`` entry.
        top_level: the mapping is the file's top level (hints may point at ``execution:``).

    Raises:
        StudyFileError: an unknown key, a key set twice, or a value where a section belongs.

    """
    layer = Layer()
    _gather(mapping, ExperimentConfig, (), layer, top_level)
    return layer


def value_layer(path: tuple[str, ...], target: Target, value: Any, pos: Pos) -> Layer:
    """Make a layer that sets one (checked) config path, e.g. one value of a sweep key."""
    layer = Layer()
    _put(layer, path, target, value, pos, top_level=False)
    return layer


def resolve(
    written: str, pos: Pos, *, prefix: tuple[str, ...] = (), top_level: bool = False
) -> tuple[tuple[str, ...], Target]:
    """Check a dotted key (relative to ``prefix``) and return its config path and target.

    Raises:
        StudyFileError: a part of the key is unknown, empty, or goes below a single value.

    """
    parts = tuple(written.split("."))
    full = prefix + parts
    target: Target = model_at(prefix) if prefix else ExperimentConfig
    for index, part in enumerate(parts):
        depth = len(prefix) + index
        if target == FREE:
            return full, FREE
        if not part:
            raise _bad_key(full, pos, "has an empty part", "remove the extra dot")
        if not isinstance(target, type):
            leaf = ".".join(full[:depth])
            raise _bad_key(
                full, pos, f"goes below '{leaf}', which is a single value", f"set '{leaf}' itself"
            )
        if part not in target.model_fields:
            raise unknown_key(full, depth, target, pos, top_level=top_level)
        target = _target(target, part)
    return full, target


def unknown_key(
    full: tuple[str, ...], depth: int, model: type[BaseModel], pos: Pos, *, top_level: bool
) -> StudyFileError:
    """Describe ``full``, whose part at ``depth`` is not a field of ``model``."""
    key = ".".join(full)
    if top_level and depth == 0 and full[0] in ExecutionConfig.model_fields:
        return StudyFileError.at(
            pos,
            f"unknown key '{key}'; '{full[0]}' is an execution setting",
            key=key,
            fix=f"move it under 'execution:' (execution: {{{full[0]}: ...}})",
        )
    suggestion = _suggestion(full, depth, model)
    if suggestion:
        return StudyFileError.at(
            pos,
            f"unknown key '{key}'; did you mean '{suggestion}'?",
            key=key,
            fix=f"rename '{key}' to '{suggestion}'",
        )
    return StudyFileError.at(
        pos,
        f"unknown key '{key}'; allowed here: {', '.join(model.model_fields)}",
        key=key,
        fix=f"remove '{key}' or use one of the allowed keys",
    )


def _suggestion(full: tuple[str, ...], depth: int, model: type[BaseModel]) -> str | None:
    prefix = ".".join(full[:depth] + ("",))
    options = list(model.model_fields)
    # 'attn.implementation' -> 'attn_implementation': dots written where underscores belong.
    joined = "_".join(full[depth:])
    if len(full) > depth + 1 and joined in options:
        return prefix + joined
    if depth == 0:
        # 'batch_size' at the top level -> 'pytorch.batch_size': a key of a section.
        homes = [f"{name}.{full[0]}" for name in options if full[0] in _fields_below(name)]
        if homes:
            return "' or '".join(homes)
    guess = did_you_mean(full[depth], options)
    return prefix + guess if guess else None


def _fields_below(name: str) -> dict[str, Any]:
    section = model_at((name,))
    return dict(section.model_fields) if section is not None else {}


def _target(model: type[BaseModel], name: str) -> Target:
    annotation = model.model_fields[name].annotation
    found = model_at((name,), model)
    if found is not None:
        return found
    return FREE if _is_mapping(annotation) else None


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict or annotation is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation))


def _gather(
    mapping: LocDict, model: type[BaseModel], prefix: tuple[str, ...], layer: Layer, top: bool
) -> None:
    for written, value in mapping.items():
        pos = mapping.key_pos[written]
        path, target = resolve(written, pos, prefix=prefix, top_level=top)
        _put(layer, path, target, value, pos, top_level=top)


def _put(
    layer: Layer, path: tuple[str, ...], target: Target, value: Any, pos: Pos, *, top_level: bool
) -> None:
    if isinstance(target, type) and isinstance(value, LocDict):
        layer.section(path, pos)
        _gather(value, target, path, layer, top_level)
    else:
        layer.set(path, value, pos)


def _bad_key(full: tuple[str, ...], pos: Pos, problem: str, fix: str) -> StudyFileError:
    key = ".".join(full)
    return StudyFileError.at(pos, f"key '{key}' {problem}", key=key, fix=fix)


def _set_twice(path: ConfigPath, pos: Pos, first: Pos | None) -> StudyFileError:
    key = ".".join(str(part) for part in path)
    where = f" (first at line {first.line})" if first else ""
    return StudyFileError.at(
        pos,
        f"'{key}' is set twice in the same mapping{where}",
        key=key,
        fix="keep one: 'a.b: 1' and 'a: {b: 1}' are the same setting",
    )
