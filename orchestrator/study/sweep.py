"""The ``sweep:`` block: each key a dimension of the grid, each list item one of its values.

``precision: [bf16, fp16]`` is universal: it adds a dimension to every backend's grid.
``pytorch.batch_size: [1, 8]`` is scoped (the part before the first dot is a backend name): it
adds a dimension to that backend's grid only. A nested mapping is the same as dotted keys:
``pytorch: {batch_size: [1, 8]}`` means ``pytorch.batch_size: [1, 8]``.

A sweep key whose values are mappings (``pytorch: [{batch_size: 4}, ...]``) may not set what
another sweep key sweeps (``pytorch.batch_size: [1, 8]``): one of the two would silently win,
so the file is refused, naming both lines. A key set to null (``vllm: null``) adds no
dimension; in a child study it drops the base's sweep keys at or below it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.schema.rules import BACKENDS
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.keys import Layer, resolve, value_layer
from orchestrator.study.safe_yaml import LocDict, LocList, to_plain
from orchestrator.study.slug import token


@dataclass(frozen=True)
class Dimension:
    """One sweep key and the values it takes.

    Attributes:
        key: the key as written, dotted from the top of ``sweep:``.
        path: the config path it sets.
        scope: the backend whose grid it belongs to, or None for every backend.
        pos: where the key was written.
        values: the values, as plain data.
        item_pos: where each value was written.
        layers: one layer per value, setting ``path``.
        tokens: one slug part per value.

    """

    key: str
    path: tuple[str, ...]
    scope: str | None
    pos: Pos
    values: tuple[Any, ...]
    item_pos: tuple[Pos, ...]
    layers: tuple[Layer, ...]
    tokens: tuple[str, ...]


def parse_sweep(sweep: LocDict) -> dict[tuple[str, ...], Dimension]:
    """Check every key and value list of a ``sweep:`` mapping; return dimensions by path.

    Raises:
        StudyFileError: an unknown key, a value that is not a non-empty list, the same
            path swept twice, or a value of one key that sets what another key sweeps.

    """
    dims: dict[tuple[str, ...], Dimension] = {}
    for written, values, pos in _flatten(sweep, ""):
        dim = _dimension(written, values, pos)
        if dim.path in dims:
            first = dims[dim.path].pos
            raise StudyFileError.at(
                pos,
                f"sweep key '{written}' is swept twice (first at line {first.line})",
                key=written,
                fix="merge the two value lists into one",
            )
        dims[dim.path] = dim
    check_overlaps(list(dims.values()))
    return dims


def check_overlaps(dims: list[Dimension], own: Path | None = None) -> None:
    """Refuse a sweep key whose mapping values set what another sweep key sweeps.

    Args:
        dims: the sweep's dimensions (a child's merged over its base's).
        own: the child's file: when the two keys are in different files, the error points
            at the one in this file.

    Raises:
        StudyFileError: at the later of the two (or the one in ``own``), naming both lines.

    """
    for outer in dims:
        for inner in dims:
            if len(inner.path) > len(outer.path) and inner.path[: len(outer.path)] == outer.path:
                _check_pair(outer, inner, own)


def _check_pair(outer: Dimension, inner: Dimension, own: Path | None) -> None:
    """Refuse when a value of ``outer`` (a mapping above ``inner``) sets what ``inner`` sweeps."""
    depth = len(outer.path)
    for layer, value_pos in zip(outer.layers, outer.item_pos, strict=True):
        clashes = [(path, pos) for path, pos in layer.positions.items()
                   if len(path) > depth and _overlap(path, inner.path)]
        if not isinstance(_at(layer.values, outer.path), dict):
            clashes.append((outer.path, value_pos))  # a single value replaces the whole key
        if clashes:
            path, pos = clashes[0]
            raise _overlap_error(outer, inner, ".".join(map(str, path)), pos, own)


def _overlap(path: tuple[str | int, ...], swept: tuple[str, ...]) -> bool:
    shorter = min(len(path), len(swept))
    return path[:shorter] == swept[:shorter]


def _at(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    found: Any = values
    for part in path:
        found = found.get(part) if isinstance(found, dict) else None
    return found


def _line(pos: Pos, other: Pos) -> str:
    """``line N``, or ``file:line:column`` when ``pos`` is in another file than ``other``."""
    return f"line {pos.line}" if pos.file == other.file else str(pos)


def _overlap_error(outer: Dimension, inner: Dimension, setting: str, pos: Pos,
                   own: Path | None) -> StudyFileError:
    later = max(pos, inner.pos, key=lambda p: (p.file == own, p.line, p.column))
    return StudyFileError.at(
        later,
        f"sweep key '{inner.key}' ({_line(inner.pos, later)}) and a value of sweep key "
        f"'{outer.key}' ({_line(pos, later)}: '{setting}') both set '{inner.key}'; one would "
        "silently replace the other",
        key=inner.key,
        fix=f"sweep '{inner.key}' in one place: drop it from the '{outer.key}' values, or "
        f"remove the '{inner.key}' key and give each '{outer.key}' value its own",
    )


Dropped = dict[tuple[str, ...], tuple[str, Pos]]
"""Config path of a sweep key set to null -> the key as written and where."""


def dropped(sweep: LocDict) -> Dropped:
    """The sweep keys set to null: in a child study they drop the base's keys.

    ``vllm: null`` drops every key of the base's sweep under ``vllm`` (``vllm.max_num_seqs``),
    ``pytorch.batch_size: null`` that one key.
    """
    found: Dropped = {}
    for written, value, pos in _items(sweep, ""):
        if value is None:
            found[resolve(written, pos)[0]] = (written, pos)
    return found


def drop(base: dict[tuple[str, ...], Dimension],
         nulls: Dropped) -> dict[tuple[str, ...], Dimension]:
    """The base's sweep without the keys at or below a null of the child's sweep.

    Raises:
        StudyFileError: a null that drops nothing (in a file without ``base:``, or naming a
            key the base does not sweep): most likely a list of values left out.

    """
    for gone, (written, pos) in nulls.items():
        if not any(path[: len(gone)] == gone for path in base):
            raise StudyFileError.at(
                pos,
                f"sweep key '{written}' is null, and there is no base sweep key at or below it "
                "to drop",
                key=written,
                fix=f"give '{written}' a list of values, e.g. '{written}: [a, b]', or remove it",
            )
    return {path: dim for path, dim in base.items()
            if not any(path[: len(gone)] == gone for gone in nulls)}


def _items(mapping: LocDict, prefix: str) -> Iterator[tuple[str, Any, Pos]]:
    for key, value in mapping.items():
        written, pos = prefix + key, mapping.key_pos[key]
        if isinstance(value, LocDict):
            yield from _items(value, written + ".")
        else:
            yield written, value, pos


def _flatten(mapping: LocDict, prefix: str) -> Iterator[tuple[str, LocList, Pos]]:
    for key, value in mapping.items():
        written, pos = prefix + key, mapping.key_pos[key]
        if value is None:
            continue  # a null drops a key of the base's sweep (see dropped)
        if isinstance(value, LocDict):
            yield from _flatten(value, written + ".")
        elif isinstance(value, LocList):
            if not value:
                raise StudyFileError.at(
                    pos,
                    f"sweep key '{written}' has no values",
                    key=written,
                    fix="give at least one value, or remove the key",
                )
            yield written, value, pos
        else:
            raise StudyFileError.at(
                pos,
                f"sweep key '{written}' must be a list of values, not a single value",
                key=written,
                fix=(
                    f"write '{written}: [{_show(value)}]', or set it outside sweep: to apply it "
                    "to every experiment"
                ),
            )


def _dimension(written: str, values: LocList, pos: Pos) -> Dimension:
    path, target = resolve(written, pos)
    scope = path[0] if path[0] in BACKENDS else None
    plain = tuple(to_plain(value) for value in values)
    return Dimension(
        key=written,
        path=path,
        scope=scope,
        pos=pos,
        values=plain,
        item_pos=tuple(values.item_pos),
        layers=tuple(
            value_layer(path, target, value, item_pos)
            for value, item_pos in zip(values, values.item_pos, strict=True)
        ),
        tokens=tuple(token(path, value) for value in plain),
    )


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
