"""Static files: WhiteNoise serving what ``collectstatic`` wrote, whole, under ASGI.

``collectstatic`` (``make run``, the tests' session fixture, a deployment's build step)
stores every file under ``STATIC_ROOT`` with its content hash in its name and writes a
gzip and a brotli copy beside it (WhiteNoise's ``CompressedManifestStaticFilesStorage``).
WhiteNoise answers a hashed name with ``Cache-Control: max-age=315360000, immutable``
and the smallest encoding the browser accepts.

WhiteNoise's Django middleware answers with a ``FileResponse``: a synchronous iterator,
which Django under ASGI has to consume in a thread and warns about ("StreamingHttpResponse
must consume synchronous iterators"). The files are small (the largest, plotly's bundle,
is about 350 kB in brotli), so this middleware reads the chosen file at once and answers
with a plain response instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import CheckMessage
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    """WhiteNoise's middleware, answering with the file's bytes rather than a stream."""

    @staticmethod
    def serve(static_file: Any, request: HttpRequest) -> HttpResponse:
        found = static_file.get_response(request.method, request.META)
        body = b""
        if found.file is not None:
            with found.file as f:
                body = f.read()
        response = HttpResponse(body, status=int(found.status))
        del response["Content-Type"]  # WhiteNoise's own headers name it
        for key, value in found.headers:
            response[key] = value
        return response


class CollectedFinder(BaseFinder):
    """Finds a name in ``STATIC_ROOT``, what collectstatic wrote (hashed names included),
    and lists nothing, so collectstatic never collects its own output. For the test
    suite's live server (observatory/test_settings.py): Django's ``StaticFilesHandler``
    answers ``/static/`` through the finders, which know only the unhashed sources."""

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found = Path(settings.STATIC_ROOT) / path
        hit = str(found) if found.is_file() else None
        if find_all or kwargs.get("all", False):
            return [hit] if hit else []
        return hit

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, Any]]:
        return iter(())


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, asked for by browsers and tools that never read the page's
    ``<link rel="icon">``: a permanent redirect to the hashed SVG icon."""
    from django.templatetags.static import static

    return HttpResponsePermanentRedirect(static("img/observatory.svg"))
