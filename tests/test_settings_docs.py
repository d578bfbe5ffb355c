"""Settings live in one place, and the place is documented: every ``settings.NAME`` the
code reads exists, no code reads a setting with a fallback of its own, and every
environment variable ``observatory/settings.py`` reads is in the README's configuration
table and in docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "observatory" / "settings.py"


def _code() -> dict[Path, str]:
    return {
        path: path.read_text()
        for path in (ROOT / "observatory").rglob("*.py")
        if path != SETTINGS and "migrations" not in path.parts
    }


def _environment_variables() -> set[str]:
    text = SETTINGS.read_text()
    return set(re.findall(r"""env(?:\.[a-z_]+)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", text)) | set(
        re.findall(r"""Env\(\)\.[a-z_]+\(\s*["']([A-Z][A-Z0-9_]+)["']""", text)
    )


def test_every_setting_the_code_reads_exists() -> None:
    names = {
        n for text in _code().values() for n in re.findall(r"settings\.([A-Z][A-Z0-9_]+)", text)
    }
    assert names
    assert sorted(n for n in names if not hasattr(settings, n)) == []


def test_no_setting_is_read_with_a_default_of_its_own() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for path, text in _code().items()
        for m in re.finditer(r"getattr\(\s*settings\s*,\s*[\"']?([A-Za-z_0-9]*)", text)
    ]
    assert found == []


def test_every_environment_variable_is_documented() -> None:
    names = _environment_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "INGEST_KEY_RULES", "PII_SPARE_KEY_PATTERNS"} <= names
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Layout")]
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in table) == []
    assert sorted(n for n in names if f"`{n}`" not in reference) == []
