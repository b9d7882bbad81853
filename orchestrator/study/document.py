"""One study file, with its ``base:`` files merged in, split into its parts.

Top-level keys are shared defaults, except the study keys: ``name``, ``base``, ``sweep``,
``experiments`` and ``execution``. A ``base: other.yaml`` (relative to the file) is read first
and the file's own keys are merged over it: mappings merge key by key, lists and single values
replace, sweep keys replace one by one, ``experiments:`` replaces the base's list. A null
removes what the base set: ``vllm: null`` its ``vllm:`` section (the defaults apply), and in
``sweep:`` the base's keys at or below it, so a child can narrow its base's backend list
(``backend: pytorch`` with ``vllm: null``). ``name`` is never inherited: a study is named by its
own ``name:`` or its file name.

Every file read is kept as bytes (`SourceFile`), so the study directory can keep what the study
was built from, and a study can be read again from those copies with the chain of bases given
(``bases``) instead of looked up next to each file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.schema.config import find_credential
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.keys import Layer, config_layer
from orchestrator.study.safe_yaml import (
    DocPath,
    LocDict,
    LocList,
    dotted,
    parse_yaml,
    read_bytes,
)
from orchestrator.study.sweep import Dimension, Dropped, check_overlaps, drop, dropped, parse_sweep

STUDY_KEYS = ("name", "base", "sweep", "experiments", "execution", "report")


@dataclass(frozen=True)
class SourceFile:
    """One file a study was read from.

    Attributes:
        path: where it was read (the study file as given; a base as found from its includer).
        data: its bytes, exactly as read.
        base: its ``base:`` value as written, or None when it has none.

    """

    path: Path
    data: bytes
    base: str | None


@dataclass(frozen=True)
class StudySource:
    """A study file's parts, bases merged in.

    Attributes:
        path: the file as given.
        text: its text (bases not included).
        name: the study name.
        has_sweep: the file (or a base) has a ``sweep:`` block, even an empty one.
        anchor: where the file's settings start (for problems that no single key caused).
        defaults: the shared settings.
        sweep: dimensions by config path, in the order written.
        sweep_dropped: the file's sweep keys set to null: the base's sweep keys at or below
            them are dropped.
        experiments: the explicit entries, or None when there is no ``experiments:``.
        execution: the ``execution:`` mapping (empty when absent).
        report: the ``report:`` mapping (empty when absent).
        files: the file, then its base, that file's base, and so on.

    """

    path: Path
    text: str
    name: str
    has_sweep: bool
    anchor: Pos
    defaults: Layer
    sweep: dict[tuple[str, ...], Dimension]
    sweep_dropped: Dropped
    experiments: LocList | None
    execution: LocDict
    report: LocDict
    files: tuple[SourceFile, ...]

    @property
    def is_study(self) -> bool:
        """A file with ``sweep:`` or ``experiments:`` is a study; anything else one experiment."""
        return self.has_sweep or self.experiments is not None


def read_source(path: Path, bases: Sequence[Path] | None = None) -> StudySource:
    """Read a study file and its chain of ``base:`` files.

    Args:
        path: the study file.
        bases: the chain of bases to read instead of looking each up next to its includer:
            the file's ``base:`` is ``bases[0]``, that file's ``base:`` is ``bases[1]``, and
            so on (how a study directory's copies are read).

    Raises:
        StudyFileError: any problem in the file or a base, a credential-like key or value,
            a cycle of bases, or a ``base:`` that ``bases`` has no file for.

    """
    return _read(path, (), bases)


def _read(path: Path, chain: tuple[Path, ...], bases: Sequence[Path] | None) -> StudySource:
    data = read_bytes(path)
    text, root = parse_yaml(data, path)
    root = _top_mapping(root, path)
    check_credentials(root)
    value = _typed(root, "base", str, "the path of one YAML file, relative to this file")
    own = _split(SourceFile(path, data, value), text, root)
    if "base" not in root:
        drop({}, own.sweep_dropped)  # a null drops nothing here: refused
        return own
    pos = root.key_pos["base"]
    if value is None:
        raise StudyFileError.at(pos, "'base' is empty", key="base", fix="name a YAML file")
    if bases is None:
        base_path = _base_path(value, pos, path, chain)
    else:
        base_path = _kept_base(value, pos, len(chain), bases)
    return _combine(_read(base_path, (*chain, path), bases), own)


def check_credentials(value: Any, path: DocPath = ()) -> None:
    """Refuse any key or value that looks like a credential, naming the key, never the value.

    Raises:
        StudyFileError: pointing at ``HF_TOKEN``.

    """
    if isinstance(value, LocDict):
        for key, item in value.items():
            here = (*path, key)
            named_like_secret = any(find_credential({part: None}) for part in key.split("."))
            if named_like_secret or _is_secret(item):
                raise _credential_error(value.key_pos[key], here)
            check_credentials(item, here)
    elif isinstance(value, LocList):
        for index, item in enumerate(value):
            if _is_secret(item):
                raise _credential_error(value.item_pos[index], (*path, index))
            check_credentials(item, (*path, index))


def _is_secret(value: Any) -> bool:
    return isinstance(value, str) and find_credential(value) is not None


def _credential_error(pos: Pos, path: DocPath) -> StudyFileError:
    return StudyFileError.at(
        pos,
        f"'{dotted(path)}' looks like a credential; credentials are never config "
        "(study files are copied next to the results)",
        key=dotted(path),
        fix="remove it from the file and set HF_TOKEN in the environment instead",
    )


def _top_mapping(root: Any, path: Path) -> LocDict:
    if root is None:
        raise StudyFileError(
            "the file is empty", file=path, fix="write at least 'model:' and 'backend:'"
        )
    if not isinstance(root, LocDict):
        raise StudyFileError(
            "the file must be a mapping of settings (key: value), not a list or a single value",
            file=path,
            fix="start the file with keys such as 'model:' and 'backend:'",
        )
    return root


def _split(file: SourceFile, text: str, root: LocDict) -> StudySource:
    path = file.path
    settings = LocDict(root.pos)
    for key, value in root.items():
        if key not in STUDY_KEYS:
            settings[key], settings.key_pos[key] = value, root.key_pos[key]
    sweep = _typed(root, "sweep", LocDict, "a mapping of key: [values]")
    return StudySource(
        path=path,
        text=text,
        name=_typed(root, "name", str, "non-empty text") or path.stem,
        has_sweep="sweep" in root,
        anchor=root.pos,
        defaults=config_layer(settings, top_level=True),
        sweep=parse_sweep(sweep) if sweep else {},
        sweep_dropped=dropped(sweep) if sweep else {},
        experiments=_experiments(root),
        execution=_typed(root, "execution", LocDict, "a mapping") or LocDict(root.pos),
        report=_typed(root, "report", LocDict, "a mapping") or LocDict(root.pos),
        files=(file,),
    )


def _typed(root: LocDict, key: str, kind: type[Any], described: str) -> Any:
    value = root.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise StudyFileError.at(
            root.key_pos[key],
            f"'{key}' must be {described}",
            key=key,
            fix=f"write '{key}:' as {described}",
        )
    return value


def _experiments(root: LocDict) -> LocList | None:
    if "experiments" not in root:
        return None
    value = _typed(root, "experiments", list, "a list of mappings")
    return value if value is not None else LocList(root.key_pos["experiments"])


def _base_path(value: str, pos: Pos, path: Path, chain: tuple[Path, ...]) -> Path:
    base: Path = path.parent / value
    if not base.is_file():
        raise StudyFileError.at(
            pos,
            f"base file '{value}' not found (looked for {base})",
            key="base",
            fix="write the base file's path relative to this file",
        )
    if base.resolve() in {seen.resolve() for seen in (*chain, path)}:
        names = " -> ".join(str(seen) for seen in (*chain, path, base))
        raise StudyFileError.at(
            pos,
            f"base files form a cycle: {names}",
            key="base",
            fix="remove the 'base:' that points back to a file already in the chain",
        )
    return base


def _kept_base(value: str, pos: Pos, depth: int, bases: Sequence[Path]) -> Path:
    if depth < len(bases):
        return bases[depth]
    raise StudyFileError.at(
        pos,
        f"base file '{value}' is not among the files kept with the study",
        key="base",
        fix="pass the study file too: llem run FILE --resume DIR",
    )


def _merged(base: LocDict, own: LocDict) -> LocDict:
    """A section of the base with the file's own keys over it, each at its line."""
    merged = LocDict(own.pos)
    for source in (base, own):
        merged.update(source)
        merged.key_pos.update(source.key_pos)
    return merged


def _combine(base: StudySource, own: StudySource) -> StudySource:
    sweep = {**drop(base.sweep, own.sweep_dropped), **own.sweep}
    check_overlaps(list(sweep.values()), own.path)
    return replace(
        own,
        has_sweep=own.has_sweep or base.has_sweep,
        defaults=own.defaults.over(base.defaults),
        sweep=sweep,
        experiments=own.experiments if own.experiments is not None else base.experiments,
        execution=_merged(base.execution, own.execution),
        report=_merged(base.report, own.report),
        files=own.files + base.files,
    )
