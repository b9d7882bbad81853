"""One registry of warning codes: every code the harness emits is in it, once, and the table
in docs/methodology.md is generated from it."""

from __future__ import annotations

import re
from pathlib import Path

from harness.schema.warnings import WARNING_CODES, table

ROOT = Path(__file__).resolve().parents[4]


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "harness").rglob("*.py"):
        codes |= set(re.findall(r'code="([a-z_]+)"', path.read_text()))
    return codes


def test_every_code_the_harness_emits_is_registered():
    assert emitted_codes() - set(WARNING_CODES) == set()


def test_every_registered_code_is_emitted_somewhere():
    assert set(WARNING_CODES) - emitted_codes() == set()


def test_the_methodology_table_is_the_registry():
    text = (ROOT / "docs" / "methodology.md").read_text()
    start = text.index("| code | when |")
    end = text.index("<!-- end of generated table -->")
    assert text[start:end] == table(), "regenerate with: python -m harness.schema.warnings"
