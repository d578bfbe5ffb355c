"""What no view has to think about: a NUL character in a request's path or query string,
and ids too large for the database.

PostgreSQL text cannot hold a NUL, so a ``%00`` anywhere a view passes on to a query
(``/orders/?q=``, ``/systems/<name>/``, a filter) used to be a 500 from the database.
``NulGuardMiddleware`` refuses such a request before any view runs: 422 naming the
parameter under ``/api/`` (the JSON API's shape, ``lib.answers``), 400 elsewhere.

``IdConverter`` (the ``<id:pk>`` of the URL maps) matches only ids a 64-bit column can
hold, so ``/orders/99999999999999999999/`` is a 404, not SQLite's ``OverflowError``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from observatory.lib.answers import field_error

NUL = "\x00"


def nul_in(request: HttpRequest) -> tuple[str, str] | None:
    """(where, name) of the first NUL in the path or the query string, or None."""
    if NUL in request.path:
        return ("path", "path")
    for name, values in request.GET.lists():
        if NUL in name or any(NUL in v for v in values):
            return ("query", name.replace(NUL, "\\x00"))
    return None


class NulGuardMiddleware:
    """Refuses a request with a NUL in its path or query string (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = nul_in(request)
        if found is None:
            return self.get_response(request)
        where, name = found
        message = "must not contain a NUL character"
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"detail": [field_error(where, name, message, "string_pattern_mismatch")]},
                status=422,
            )
        return HttpResponse(
            f"Bad request: the {where} ({name}) {message}.\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )


class IdConverter:
    """A row id in a URL: 1 to 18 digits (every one fits a 64-bit ``bigint``)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int | str) -> str:
        return str(value)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: a JSON ``{"detail"}`` under ``/api/`` (a path no route matches, such
    as an order key with a line break), the styled page (templates/404.html) elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "no such resource"}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Exception("not found"))


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a JSON ``{"detail"}`` under ``/api/``, the styled page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "internal server error"}, status=500)
    from django.views.defaults import server_error as page

    return page(request)
