"""Serve plotly's own JavaScript bundle as ``vendor/plotly.min.js``, with no copy in git.

The ``plotly`` Python package ships the exact ``plotly.min.js`` its figures are built
for (``plotly/package_data``). This finder exposes that one file to Django's static
files machinery, so ``{% static 'vendor/plotly.min.js' %}`` works under runserver,
WhiteNoise (``WHITENOISE_USE_FINDERS``), the test live server and ``collectstatic``,
always at the version the figures were made with, and never from a CDN: the product
works without internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import CheckMessage, Error
from django.core.files.storage import FileSystemStorage

#: Where pages find the bundle: ``{% static PLOTLY_JS %}``.
PLOTLY_JS = "vendor/plotly.min.js"
_PREFIX = "vendor"
_NAME = "plotly.min.js"


def plotly_js_path() -> Path:
    """The installed plotly package's own ``plotly.min.js``."""
    return Path(plotly.__file__).resolve().parent / "package_data" / _NAME


class PlotlyFinder(BaseFinder):
    """A staticfiles finder holding one file: ``vendor/plotly.min.js``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(plotly_js_path().parent))
        self.storage.prefix = _PREFIX  # type: ignore[attr-defined,unused-ignore]

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        if not plotly_js_path().is_file():
            return [Error(f"plotly's bundle is missing: {plotly_js_path()}", id="dashboards.E001")]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found = str(plotly_js_path()) if path == PLOTLY_JS else None
        wants_all = find_all or kwargs.get("all", False)
        if wants_all:
            return [found] if found else []
        return found

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        if plotly_js_path().is_file():
            yield _NAME, self.storage
