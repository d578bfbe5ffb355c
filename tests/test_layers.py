"""The stages reach each other only the ways the import contracts can see: no model or
module looked up by name across stages (import-linter cannot see a string), outside the
migrations (which must use the historical models) and the wiring."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "observatory"
LOOKUPS = re.compile(r"\b(apps\.get_model|import_module|apps\.is_installed|__import__)\s*\(")


def test_no_stage_looks_another_up_by_name() -> None:
    found = [
        f"{path.relative_to(ROOT.parent)}:{n}: {line.strip()}"
        for path in sorted(ROOT.rglob("*.py"))
        if "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if LOOKUPS.search(line)
    ]
    assert found == []
