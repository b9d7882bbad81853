"""Read a YAML file as plain data with the position of every key, executing nothing.

The file is only *composed* (parsed into a node tree); no constructor ever runs. Every node's
tag is checked against the few standard YAML types a config needs, so a ``!!python/...`` or a
custom tag is refused before anything is built from it. Scalars are converted here by hand with
YAML 1.2 rules (ruamel's default): ``no`` and ``on`` stay text, ``true``/``false`` are booleans.

An integer written with a leading zero (``052``) is refused: YAML 1.1 reads it as octal (42),
YAML 1.2 as decimal (52), and a user who wrote it meant one of the two.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.study.errors import Pos, StudyFileError

DocPath = tuple[str | int, ...]

_STD = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP = (
    _STD + name for name in ("str", "int", "float", "bool", "null", "timestamp")
)
MAP, SEQ, MERGE = _STD + "map", _STD + "seq", _STD + "merge"
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_TRUE = {"true", "yes", "on", "y"}  # yes/on/y only reach here under a '%YAML 1.1' directive
_FALSE = {"false", "no", "off", "n"}
_NULL = {"", "~", "null"}

MAX_ALIAS_VALUES = 100_000
"""Values that aliases may repeat in one file (stops 'billion laughs' expansion)."""
MAX_DEPTH = 64
"""Deepest nesting accepted; a config is a few levels deep."""


class LocDict(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys were written."""

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[str, Pos] = {}


class LocList(list[Any]):
    """A YAML sequence that remembers where it and each of its items were written."""

    def __init__(self, pos: Pos) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Pos] = []


def read_yaml(path: Path) -> tuple[str, Any]:
    """Read ``path`` and return its text and its data (None for an empty file).

    Mappings come back as `LocDict`, sequences as `LocList`, scalars as str, int, float, bool
    or None.

    Raises:
        StudyFileError: unreadable file, YAML syntax error, duplicate key, refused tag,
            non-text key, ambiguous number, or a document too large or too deep.

    """
    return parse_yaml(read_bytes(path), path)


def parse_yaml(data: bytes, path: Path) -> tuple[str, Any]:
    """Parse the bytes of the file at ``path`` as `read_yaml` does: its text and its data.

    The bytes are decoded as UTF-8 and line ends read as ``open()`` reads them (CRLF and a
    lone CR become LF), so positions are the same whether the file or a copy of its bytes is
    read.

    Raises:
        StudyFileError: as `read_yaml`.

    """
    text = _decode(data, path)
    node = _compose(text, path)
    if node is None:
        return text, None
    return text, _Converter(path).convert(node, ())


def dotted(path: DocPath) -> str:
    """Render a document path as ``sweep.precision[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def to_plain(value: Any) -> Any:
    """Copy ``value`` into plain dicts and lists (no positions)."""
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    return value


def read_bytes(path: Path) -> bytes:
    """The bytes of the file at ``path``.

    Raises:
        StudyFileError: the file cannot be read.

    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise StudyFileError(
            f"cannot read the file: {error.strerror or error}",
            file=path,
            fix="check the path and that the file is readable",
        ) from error


def _decode(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StudyFileError(
            "the file is not UTF-8 text", file=path, fix="save the file as UTF-8"
        ) from error
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _compose(text: str, path: Path) -> Node | None:
    try:
        return YAML(typ="safe", pure=True).compose(text)  # type: ignore[no-any-return]
    except MarkedYAMLError as error:
        raise _syntax_error(error, path) from error
    except YAMLError as error:
        raise StudyFileError(f"not valid YAML: {error}", file=path, fix="fix the YAML") from error
    except RecursionError as error:
        raise StudyFileError(
            "the YAML is nested too deeply", file=path, fix="flatten the structure"
        ) from error


def _syntax_error(error: MarkedYAMLError, path: Path) -> StudyFileError:
    # Built from the parts, never str(error): that quotes the source line, which may hold a secret.
    problem = error.problem or "invalid YAML"
    message = f"not valid YAML: {problem}"
    if error.context:
        message += f" ({error.context})"
    fix = "fix the YAML syntax at this place (indentation, quotes, brackets)"
    mark = error.problem_mark or error.context_mark
    if mark is None:
        return StudyFileError(message, file=path, fix=fix)
    return StudyFileError.at(_pos(path, mark), message, fix=fix)


def _pos(path: Path, mark: Any) -> Pos:
    return Pos(path, mark.line + 1, mark.column + 1)


class _Converter:
    """Node tree -> LocDict/LocList/scalars, refusing anything that is not plain data."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.alias_budget = MAX_ALIAS_VALUES
        self.built: set[int] = set()
        self.active: set[int] = set()

    def convert(self, node: Node, path: DocPath) -> Any:
        pos = _pos(self.file, node.start_mark)
        self._check_limits(node, path, pos)
        tag = str(node.tag)
        if isinstance(node, MappingNode) and tag == MAP:
            return self._guarded(node, lambda: self._mapping(node, path, pos))
        if isinstance(node, SequenceNode) and tag == SEQ:
            return self._guarded(node, lambda: self._sequence(node, path, pos))
        if isinstance(node, ScalarNode) and tag in (STR, INT, FLOAT, BOOL, NULL, TIMESTAMP):
            return _scalar(node, tag, path, pos)
        raise _tag_error(tag, path, pos)

    def _check_limits(self, node: Node, path: DocPath, pos: Pos) -> None:
        if id(node) in self.built:  # built before: an alias repeats it
            self.alias_budget -= 1
            if self.alias_budget < 0:
                raise StudyFileError.at(
                    pos,
                    f"aliases repeat more than {MAX_ALIAS_VALUES:,} values",
                    fix="write the study without nested aliases",
                )
        self.built.add(id(node))
        if len(path) > MAX_DEPTH:
            raise StudyFileError.at(pos, "the YAML is nested too deeply", fix="flatten it")
        if id(node) in self.active:
            raise StudyFileError.at(
                pos,
                f"'{dotted(path)}' contains itself (a recursive alias)",
                key=dotted(path),
                fix="remove the alias that refers to its own anchor",
            )

    def _guarded(self, node: Node, build: Callable[[], Any]) -> Any:
        self.active.add(id(node))
        try:
            return build()
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: DocPath, pos: Pos) -> LocDict:
        result = LocDict(pos)
        for key_node, value_node in node.value:
            key_pos = _pos(self.file, key_node.start_mark)
            key = _key(key_node, path, key_pos)
            if key in result:
                first = result.key_pos[key]
                raise StudyFileError.at(
                    key_pos,
                    f"duplicate key '{dotted((*path, key))}' (first at line {first.line})",
                    key=dotted((*path, key)),
                    fix="keep one of the two; YAML would silently use only the last",
                )
            result.key_pos[key] = key_pos
            result[key] = self.convert(value_node, (*path, key))
        return result

    def _sequence(self, node: SequenceNode, path: DocPath, pos: Pos) -> LocList:
        result = LocList(pos)
        for index, item in enumerate(node.value):
            result.item_pos.append(_pos(self.file, item.start_mark))
            result.append(self.convert(item, (*path, index)))
        return result


def _key(node: Node, path: DocPath, pos: Pos) -> str:
    tag = str(node.tag)
    if tag == MERGE:
        raise StudyFileError.at(
            pos,
            "YAML merge keys ('<<') are not supported",
            key=dotted(path) or None,
            fix="write the keys out, or share settings between files with 'base: other.yaml'",
        )
    if not isinstance(node, ScalarNode):
        raise StudyFileError.at(pos, "a key must be plain text", fix="write the key as text")
    if tag != STR:
        raise StudyFileError.at(
            pos,
            f"key {node.value} is not text (YAML reads it as {tag.removeprefix(_STD)})",
            fix=f"quote it: '{node.value}'",
        )
    return str(node.value)


def _tag_error(tag: str, path: DocPath, pos: Pos) -> StudyFileError:
    shown = "!!" + tag.removeprefix(_STD) if tag.startswith(_STD) else tag
    where = f" on '{dotted(path)}'" if path else ""
    return StudyFileError.at(
        pos,
        f"YAML tag '{shown}'{where} is not allowed: a study file holds plain data only "
        "(mappings, lists, text, numbers, true/false, null), and llem never builds objects "
        "from tags",
        key=dotted(path) or None,
        fix="remove the tag and write the value as plain YAML",
    )


def _scalar(node: ScalarNode, tag: str, path: DocPath, pos: Pos) -> Any:
    text = str(node.value)
    if tag in (STR, TIMESTAMP):  # a date-like value (a revision, say) stays text
        return text
    try:
        if tag == INT:
            return _integer(text, path, pos)
        if tag == FLOAT:
            return _float(text)
        if tag == BOOL and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        if tag == NULL and text.lower() in _NULL:
            return None
    except ValueError:
        pass
    name = tag.removeprefix(_STD)
    raise StudyFileError.at(
        pos,
        f"{dotted(path)}: {text!r} is not a valid {name}",
        key=dotted(path),
        fix=f"write a {name}, or remove the explicit tag",
    )


def _integer(text: str, path: DocPath, pos: Pos) -> int:
    if _LEADING_ZERO.fullmatch(text):
        raise _leading_zero_error(text, path, pos)
    return int(text, 0)


def _leading_zero_error(text: str, path: DocPath, pos: Pos) -> StudyFileError:
    digits = text.replace("_", "")
    decimal = int(digits, 10)
    readings = f"YAML 1.2 reads it as {decimal}"
    if set(digits.lstrip("+-")) <= set("01234567"):
        readings = f"YAML 1.1 reads it as octal {int(digits, 8)}, " + readings
    return StudyFileError.at(
        pos,
        f"{dotted(path)}: {text} has a leading zero, which YAML versions read differently "
        f"({readings}); llem does not guess",
        key=dotted(path),
        fix=f"write {decimal} without the leading zero, or quote it ('{text}') if you mean text",
    )


def _float(text: str) -> float:
    lowered = text.lower()
    if lowered.lstrip("+-") == ".inf":
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)
