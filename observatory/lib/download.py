"""File downloads: a ``Content-Disposition`` whose filename is safe whatever went into it,
and CSV.

A filename built from request parameters (``/executive/summary.csv?channel=...``) could
carry a CR or LF (Django refuses such a header: a 500), quotes or path separators. Only
letters, digits, ``.``, ``_`` and ``-`` are kept; anything else becomes ``_``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


def safe_filename(name: str, default: str = "download") -> str:
    """``name`` with every run of other characters made one ``_``, without leading dots,
    at most ``MAX_NAME`` characters."""
    cleaned = _UNSAFE.sub("_", name).strip("._")[:MAX_NAME]
    return cleaned or default


#: a plain or a streaming response
R = TypeVar("R", bound=HttpResponseBase)


def attach(response: R, filename: str) -> R:
    """Mark ``response`` as a download named ``filename`` (made safe first)."""
    header = content_disposition_header(as_attachment=True, filename=safe_filename(filename))
    if header:
        response["Content-Disposition"] = header
    return response


def csv_text(columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """``rows`` as CSV under a header of ``columns`` (a missing or None value: empty)."""
    out = io.StringIO()
    writer = csv.writer(out)
    cols = list(columns)
    writer.writerow(cols)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return out.getvalue()


def csv_response(
    columns: Iterable[str], rows: Iterable[Mapping[str, Any]], filename: str
) -> HttpResponse:
    """A CSV download of ``rows`` named ``filename``."""
    response = HttpResponse(csv_text(columns, rows), content_type="text/csv; charset=utf-8")
    return attach(response, filename)
