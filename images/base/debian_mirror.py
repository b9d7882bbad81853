#!/usr/bin/env python3
"""Print the Debian mirror this host's apt uses, for debootstrap.

Usage: debian_mirror.py [--root DIR] [--suite SUITE]
  --root DIR     file system root whose apt configuration is read (default /)
  --suite SUITE  the suite the base image is made of (default bookworm)

Reads ``etc/apt/sources.list`` and ``etc/apt/sources.list.d/*.list`` (one-line format) and
``etc/apt/sources.list.d/*.sources`` (deb822 format) in apt's order, skipping comments,
``deb-src``-only and disabled (``Enabled: no``) entries. The mirror is the URI of the first
binary (``deb``) entry that carries SUITE itself; failing that, of the first one whose URI
ends in ``/debian`` (the archive's path on every Debian mirror) with a main suite (not
``-security``, ``-updates``, ``-backports``, ...). Exit status 2, with a message naming
LLEM_DEBIAN_MIRROR, when no entry qualifies.

Standard library only, Python >= 3.9: it runs on the host before any llem install.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Suites that hold updates on top of a release, not the release itself.
_NOT_MAIN = re.compile(r"[-/](security|updates|backports|proposed-updates|backports-sloppy)$")
# `deb [option=value ...] uri suite [component ...]`; the options may contain spaces.
_ONE_LINE = re.compile(r"^(?P<type>deb(?:-src)?)\s+(?:\[[^\]]*\]\s*)?(?P<uri>\S+)\s+(?P<suite>\S+)")
_SCHEMES = ("http://", "https://", "file:/")


@dataclass(frozen=True)
class Source:
    """One apt source entry: binary or not, its URIs and suites."""

    binary: bool
    uris: tuple[str, ...]
    suites: tuple[str, ...]


def one_line_sources(text: str) -> list[Source]:
    """Entries of a one-line ``sources.list`` file (comments and unknown lines skipped)."""
    sources = []
    for line in text.splitlines():
        match = _ONE_LINE.match(line.split("#", 1)[0].strip())
        if match:
            sources.append(Source(match["type"] == "deb", (match["uri"],), (match["suite"],)))
    return sources


def _paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs as {lower-case field: value}; continuation lines are joined."""
    paragraphs: list[dict[str, str]] = [{}]
    field = ""
    for line in text.splitlines():
        if not line.strip():
            if paragraphs[-1]:
                paragraphs.append({})
        elif line.startswith("#"):
            continue
        elif line[0] in " \t" and field:
            paragraphs[-1][field] += " " + line.strip()
        elif ":" in line:
            field, value = line.split(":", 1)
            field = field.strip().lower()
            paragraphs[-1][field] = value.strip()
    return [paragraph for paragraph in paragraphs if paragraph]


def deb822_sources(text: str) -> list[Source]:
    """Enabled entries of a deb822 ``*.sources`` file."""
    sources = []
    for paragraph in _paragraphs(text):
        if paragraph.get("enabled", "yes").lower() == "no":
            continue
        sources.append(Source("deb" in paragraph.get("types", "").split(),
                              tuple(paragraph.get("uris", "").split()),
                              tuple(paragraph.get("suites", "").split())))
    return sources


def host_sources(root: Path) -> list[Source]:
    """Every apt source under ``root``, in the order apt reads them."""
    apt_dir = root / "etc" / "apt"
    sources = []
    if (apt_dir / "sources.list").is_file():
        sources += one_line_sources((apt_dir / "sources.list").read_text(errors="replace"))
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.iterdir()) if parts.is_dir() else []:
        text = path.read_text(errors="replace") if path.is_file() else ""
        if path.suffix == ".list":
            sources += one_line_sources(text)
        elif path.suffix == ".sources":
            sources += deb822_sources(text)
    return sources


def _usable_uris(source: Source) -> list[str]:
    return [uri.rstrip("/") for uri in source.uris if uri.startswith(_SCHEMES)]


def pick_mirror(sources: list[Source], suite: str) -> str | None:
    """The mirror for ``suite`` among ``sources`` (rules in the module docstring), or None."""
    binary = [source for source in sources if source.binary and _usable_uris(source)]
    for source in binary:
        if suite in source.suites:
            return _usable_uris(source)[0]
    for source in binary:
        if any(not _NOT_MAIN.search(name) for name in source.suites):
            debian = [uri for uri in _usable_uris(source) if uri.endswith("/debian")]
            if debian:
                return debian[0]
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the mirror; exit 2 with one message when there is none."""
    parser = argparse.ArgumentParser(description="Print the Debian mirror of the host's apt.")
    parser.add_argument("--root", type=Path, default=Path("/"))
    parser.add_argument("--suite", default="bookworm")
    args = parser.parse_args(argv)
    mirror = pick_mirror(host_sources(args.root), args.suite)
    if mirror is None:
        where = args.root / "etc" / "apt"
        print(f"no Debian mirror for {args.suite} found in the apt sources under {where}: "
              "set LLEM_DEBIAN_MIRROR to a Debian mirror's URL (the directory holding dists/ "
              "and pool/)", file=sys.stderr)
        return 2
    print(mirror)
    return 0


if __name__ == "__main__":
    sys.exit(main())
