"""Errors of study files: every one names the file, line, column and key it is about."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError


@dataclass(frozen=True)
class Pos:
    """A place in a YAML file (1-based line and column, as editors count)."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class StudyFileError(ConfigError):
    """A study file is invalid; nothing was run.

    ``str()`` reads ``studies/x.yaml:12:3: unknown key 'a.b'; did you mean 'a_b'?`` followed by
    the fix on its own line.

    Attributes:
        file: the file the problem is in (a ``base:`` file when it is there).
        line: 1-based line of the offending key or value, or None for the whole file.
        column: 1-based column, or None for the whole file.
        key: the key as the message names it (``sweep.precision``), or None.

    """

    def __init__(
        self,
        message: str,
        *,
        file: Path,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.file = file
        self.line = line
        self.column = column
        self.key = key

    @classmethod
    def at(
        cls, pos: Pos, message: str, *, key: str | None = None, fix: str | None = None
    ) -> StudyFileError:
        """Make an error that points at ``pos``."""
        return cls(message, file=pos.file, line=pos.line, column=pos.column, key=key, fix=fix)

    @property
    def location(self) -> str:
        """``file:line:column`` (or less where the place is the whole file)."""
        parts = [str(self.file)]
        parts += [str(n) for n in (self.line, self.column) if n is not None]
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text
