"""Names and directories derived from user text: sanitised, never overwriting, never escaping."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from pathlib import Path

from harness.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LEN = 80
# Latin letters that NFKD does not decompose into a base letter and a mark.
_NO_DECOMPOSITION = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l",
    "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i",
})


def transliterate(text: str) -> str:
    """Spell accented Latin letters in ASCII (``étude énergie`` -> ``etude energie``).

    NFKD splits a letter from its accents, which are then dropped; the few letters with no
    decomposition (``ß``, ``ø``, ``æ``...) come from a table. Other scripts are left as they
    are, for the caller to replace.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_NO_DECOMPOSITION))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def sanitize(text: str, fallback: str = "unnamed") -> str:
    """Reduce user text to ``[A-Za-z0-9._-]``, no leading dots, at most 80 characters.

    Accented letters are transliterated first (``é`` -> ``e``), not dropped.
    """
    cleaned = _UNSAFE.sub("-", transliterate(text)).strip("-.")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:MAX_NAME_LEN].strip("-.")
    return cleaned or fallback


def utc_stamp() -> str:
    """UTC timestamp for directory names, e.g. 20261129T010400Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def inside(root: Path, candidate: Path) -> Path:
    """Return ``candidate`` resolved, or raise when it would leave ``root``."""
    root_resolved = root.resolve()
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ConfigError(
            f"path '{candidate}' would leave the output root '{root}'",
            fix="use a plain name without '..' or absolute paths",
        )
    return resolved


def create_unique_dir(root: Path, name: str) -> Path:
    """Create ``root/name``, or ``name_1``, ``name_2``... when taken; never reuses one.

    ``mkdir`` without ``exist_ok`` is the atomic claim, so two processes never get the same
    directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    base = sanitize(name)
    for suffix in range(10_000):
        candidate = root / (base if suffix == 0 else f"{base}_{suffix}")
        inside(root, candidate)
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"too many directories named '{base}' under '{root}'",
                      fix="choose another study name or output root")


def local_input_paths(model: str, dataset: str, model_base: Path,
                      dataset_base: Path) -> dict[str, str]:
    """Absolute paths of a local model directory and a ``.jsonl`` dataset, by config field.

    A relative path is relative to the file it was written in (``model_base``,
    ``dataset_base``: that file's directory), never to the working directory; ``~`` is
    expanded. A hub id, a built-in dataset and ``synthetic`` are left out (they are no paths).
    """
    from harness.models import is_hub_id

    found: dict[str, str] = {}
    if dataset.endswith(".jsonl"):
        found["dataset"] = str(_absolute(dataset, dataset_base))
    if not is_hub_id(model, model_base):
        found["model"] = str(_absolute(model, model_base))
    return found


def local_adapter_path(adapter: str, base: Path) -> str | None:
    """The absolute path of a local LoRA adapter directory, or None for a hub adapter id.

    As a local model directory: relative to the file it was written in (``base``: that file's
    directory), never to the working directory; ``~`` is expanded; an existing path wins over
    a hub id of the same name.
    """
    from harness.models import is_hub_id

    return None if is_hub_id(adapter, base) else str(_absolute(adapter, base))


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()
