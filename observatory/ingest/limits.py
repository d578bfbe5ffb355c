"""Reading a request body within the size limit, decompressing as a stream.

A gzip bomb (a few KiB that inflate to gigabytes) is refused after inflating at most
``limit + 1`` bytes: zlib's ``max_length`` stops the inflater, nothing more is allocated.
"""

from __future__ import annotations

import zlib

from django.http import HttpRequest


class BodyError(Exception):
    """The body cannot be taken: ``status`` is the HTTP answer, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_body(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(413, f"body is over the limit of {limit} bytes")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, f"Content-Encoding '{encoding}' is not supported: use gzip")
    wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid {encoding}: {exc}") from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise BodyError(413, f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BodyError(400, f"{encoding} body is truncated")
    return body
