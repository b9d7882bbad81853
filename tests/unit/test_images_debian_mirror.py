"""images/base/debian_mirror.py: the Debian mirror read from a host's apt sources."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "images" / "base" / "debian_mirror.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("debian_mirror", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


mirror = _load()


def _apt_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "etc" / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _detect(root: Path, suite: str = "bookworm") -> str | None:
    result: str | None = mirror.pick_mirror(mirror.host_sources(root), suite)
    return result


DEB822 = """\
Types: deb
# a comment inside the paragraph
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_main_suite_wins_over_security(tmp_path: Path) -> None:
    root = _apt_root(tmp_path, {"sources.list.d/debian.sources": DEB822})
    assert _detect(root) == "http://mirror.example/debian"


def test_deb822_security_first_is_skipped(tmp_path: Path) -> None:
    security_first = "\n\n".join(reversed(DEB822.split("\n\n")))
    root = _apt_root(tmp_path, {"sources.list.d/debian.sources": security_first})
    assert _detect(root) == "http://mirror.example/debian"


def test_deb822_disabled_and_source_only_entries_are_skipped(tmp_path: Path) -> None:
    text = """\
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://sources.example/debian
Suites: bookworm

Types: deb deb-src
URIs: http://used.example/debian
Suites:
 bookworm
Components: main
"""
    root = _apt_root(tmp_path, {"sources.list.d/debian.sources": text})
    assert _detect(root) == "http://used.example/debian"


def test_one_line_with_options_and_comments(tmp_path: Path) -> None:
    text = """\
# deb http://commented.example/debian bookworm main
deb-src http://sources.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb http://updates.example/debian bookworm-updates main
deb [ arch=amd64 signed-by=/usr/share/keyrings/d.gpg ] https://m.example/debian bookworm main # x
"""
    root = _apt_root(tmp_path, {"sources.list": text})
    assert _detect(root) == "https://m.example/debian"


def test_old_security_suite_is_not_a_main_suite(tmp_path: Path) -> None:
    text = "deb http://security.example/debian bullseye/updates main\n"
    root = _apt_root(tmp_path, {"sources.list": text})
    assert _detect(root) is None


def test_sources_list_is_read_before_the_parts_directory(tmp_path: Path) -> None:
    root = _apt_root(tmp_path, {
        "sources.list": "deb http://first.example/debian bookworm main\n",
        "sources.list.d/a.sources": "Types: deb\nURIs: http://second.example/debian\n"
                                    "Suites: bookworm\n",
    })
    assert _detect(root) == "http://first.example/debian"


def test_other_suite_falls_back_to_a_debian_archive_path(tmp_path: Path) -> None:
    # A trixie host: its mirror serves bookworm too; the third-party repository does not.
    root = _apt_root(tmp_path, {
        "sources.list.d/a-vendor.list": "deb [signed-by=/k] https://v.example/apt stable main\n",
        "sources.list.d/debian.sources": "Types: deb\nURIs: http://mirror.example/debian\n"
                                         "Suites: trixie-updates trixie\n",
    })
    assert _detect(root) == "http://mirror.example/debian"


def test_other_distribution_is_not_a_debian_mirror(tmp_path: Path) -> None:
    root = _apt_root(tmp_path, {"sources.list": "deb http://archive.example/ubuntu jammy main\n"})
    assert _detect(root) is None


def test_files_apt_ignores_are_ignored(tmp_path: Path) -> None:
    root = _apt_root(tmp_path, {
        "sources.list.d/vendor.list.disabled": "deb http://off.example/debian bookworm main\n",
        "sources.list.d/vendor.sources.save": "Types: deb\nURIs: http://off.example/debian\n"
                                              "Suites: bookworm\n",
    })
    assert _detect(root) is None


def test_non_http_uris_are_skipped(tmp_path: Path) -> None:
    text = ("deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n"
            "deb file:///srv/debian bookworm main\n")
    root = _apt_root(tmp_path, {"sources.list": text})
    assert _detect(root) == "file:///srv/debian"


def test_cli_prints_the_mirror(tmp_path: Path) -> None:
    root = _apt_root(tmp_path, {"sources.list.d/debian.sources": DEB822})
    done = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "http://mirror.example/debian\n")


def test_cli_without_a_mirror_names_the_variable(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "LLEM_DEBIAN_MIRROR" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _code_and_docs() -> list[Path]:
    images = [path for path in (REPO / "images").rglob("*")
              if path.is_file() and ".wheels" not in path.parts]
    return [REPO / "README.md", *images, *(REPO / "docs").rglob("*.md")]


def test_no_mirror_host_is_written_into_code_or_docs() -> None:
    pattern = re.compile(r"\b(?:deb|ftp|security|mirrors?|httpredir)\.debian\.org\b")
    named = {str(path.relative_to(REPO)): pattern.findall(path.read_text(errors="replace"))
             for path in _code_and_docs()}
    assert len(named) > 10  # the scan reached the files
    assert {path: hosts for path, hosts in named.items() if hosts} == {}
