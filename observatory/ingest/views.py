"""The ingest endpoints of docs/ingest.md: thin, strict, and fast.

Each view first passes its door (``DOORS``): the checks made before a byte of the body is
read (media type, a declared size over ``INGEST_MAX_BODY_BYTES``, the token). Under ASGI
``gate.IngestGate`` runs the same door before Django buffers the body, and hands the token
on. Then the view reads the body within the limit, hands decoding to ``tracing`` and
storing to ``ingest.actions``, and answers in the sender's own protocol. The database
being unreachable is a 503 with ``Retry-After`` so that senders retry, never a loss.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache, wraps
from typing import Any, NamedTuple

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from observatory.access import tokens
from observatory.access.models import IngestToken
from observatory.access.queries import Denied, ingest_token
from observatory.ingest.actions import Ingested, OutOfScope, do_ingest
from observatory.ingest.limits import BodyError, read_body
from observatory.lib import outage
from observatory.lib.clock import now
from tracing import cloudevents, otlp, otlp_logs, shopify
from tracing.keys import KeyRules
from tracing.records import DecodeError, DecodeResult

log = logging.getLogger(__name__)
RETRY_AFTER_S = outage.RETRY_AFTER_S
#: Django's errors and psycopg's own (the COPY talks to psycopg's cursor directly)
_UNAVAILABLE = outage.UNAVAILABLE


@lru_cache(maxsize=1)
def key_rules() -> KeyRules:
    return KeyRules(
        attribute_kinds=dict(settings.INGEST_KEY_RULES),
        service_systems=dict(settings.INGEST_SERVICE_SYSTEMS),
    )


def _media_type(request: HttpRequest) -> str:
    return _media(request.META.get("CONTENT_TYPE", ""))


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _json(status: int, payload: dict[str, Any], **headers: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _authenticate(plain: str | None) -> IngestToken | Denied:
    try:
        return ingest_token(plain)
    except _UNAVAILABLE:
        log.warning("ingest authentication: database unavailable", exc_info=True)
        return Denied(503, "the database is unavailable, retry later")


def ingest_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only, no CSRF (token-authenticated machine traffic), the cyclic garbage
    collector paused while it runs (``collector_paused``)."""

    @wraps(view)
    def paused(request: HttpRequest) -> HttpResponse:
        with collector_paused():
            return view(request)

    return csrf_exempt(require_POST(paused))


_pause_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while an ingest request runs (across threads:
    on from the last one out, if it was on when the first came in).

    A request of 512 spans makes some 8,000 containers (records, their attribute and key
    maps, row tuples) that live until it ends: they start a collection every 700
    allocations, and each full one walks every object of the process, a tenth of the
    request's time. They hold no reference cycles, so reference counting frees them as
    the request ends; the few cycles a request does make (Django's own) wait for the
    collector, which runs as usual between requests.
    """
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


# --- the doors: what is refused before the body is read -------------------------------------

#: Where ``gate.IngestGate`` leaves the token its door let in (the ASGI scope).
PASSED_TOKEN = "observatory.ingest_token"
#: A door: (lower-cased headers, query parameters) -> the token, or the refusal to send.
Door = Callable[[Mapping[str, str], Mapping[str, str]], "IngestToken | HttpResponse"]


def _too_large(headers: Mapping[str, str]) -> str:
    """Why the declared size is refused, or "" (no Content-Length is read as a stream)."""
    declared = headers.get("content-length", "").strip()
    limit = settings.INGEST_MAX_BODY_BYTES
    if declared.isdigit() and int(declared) > limit:
        return f"body of {declared} bytes is over the limit of {limit} bytes"
    return ""


def _denied(token: Denied) -> dict[str, str]:
    return {"Retry_After": RETRY_AFTER_S} if token.status == 503 else {}


def otlp_door(headers: Mapping[str, str], query: Mapping[str, str]) -> IngestToken | HttpResponse:
    media = _media(headers.get("content-type", ""))
    as_json = media == "application/json"
    if media not in ("application/x-protobuf", "application/json"):
        return _otlp_error(
            415,
            f"Content-Type '{media or '(none)'}' is not supported: "
            "send application/x-protobuf or application/json",
            True,
        )
    too_large = _too_large(headers)
    if too_large:
        return _otlp_error(413, too_large, as_json)
    token = _authenticate(tokens.bearer(headers.get("authorization")))
    if isinstance(token, Denied):
        return _otlp_error(token.status, token.message, as_json, **_denied(token))
    return token


def events_door(headers: Mapping[str, str], query: Mapping[str, str]) -> IngestToken | HttpResponse:
    too_large = _too_large(headers)
    if too_large:
        return _json(413, {"error": too_large})
    token = _authenticate(tokens.bearer(headers.get("authorization")))
    if isinstance(token, Denied):
        return _json(token.status, {"error": token.message}, **_denied(token))
    return token


def shopify_door(
    headers: Mapping[str, str], query: Mapping[str, str]
) -> IngestToken | HttpResponse:
    too_large = _too_large(headers)
    if too_large:
        return _json(413, {"error": too_large})
    # Shopify cannot add an Authorization header to its deliveries, so the ingest token
    # may also ride in the subscription URL: /webhooks/shopify?token=<ingest token>.
    plain = tokens.bearer(headers.get("authorization")) or query.get("token")
    token = _authenticate(plain)
    if isinstance(token, Denied):
        message = token.message
        if token.status == 401:
            message = SHOPIFY_MISSING_TOKEN if not plain else SHOPIFY_UNKNOWN_TOKEN
        return _json(token.status, {"error": message}, **_denied(token))
    return token


def _pass(request: HttpRequest, door: Door) -> IngestToken | HttpResponse:
    """The token the ASGI gate let in for this request, else the door's own answer."""
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get(PASSED_TOKEN), IngestToken):
        passed: IngestToken = scope[PASSED_TOKEN]
        return passed
    headers = {k.lower(): v for k, v in request.headers.items()}
    return door(headers, request.GET)


# --- OTLP/HTTP traces and logs (docs/ingest.md) -----------------------------------------------------


def _otlp_error(status: int, message: str, as_json: bool, **headers: str) -> HttpResponse:
    # google.rpc.Status carries the gRPC code (UNAUTHENTICATED for a 401 ...), not the HTTP one
    body = otlp.encode_status(otlp.grpc_code(status), message, json=as_json)
    ctype = "application/json" if as_json else "application/x-protobuf"
    response = HttpResponse(body, status=status, content_type=ctype)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


class _Signal(NamedTuple):
    """What differs between the OTLP endpoints: the decoders and the answer (``tracing``)."""

    decode_json: Callable[..., DecodeResult]
    decode_protobuf: Callable[..., DecodeResult]
    encode_response: Callable[..., bytes]
    #: what one item is called in the answers
    item: str


TRACES = _Signal(otlp.decode_json, otlp.decode_protobuf, otlp.encode_response, "span")
LOGS = _Signal(
    otlp_logs.decode_json, otlp_logs.decode_protobuf, otlp_logs.encode_response, "log record"
)


def _otlp(request: HttpRequest, signal: _Signal) -> HttpResponse:
    """One OTLP/HTTP export request of either signal: the same door, limits, decoding
    rules, store and answers (docs/ingest.md)."""
    token = _pass(request, otlp_door)
    if isinstance(token, HttpResponse):
        return token
    media = _media_type(request)
    as_json = media == "application/json"
    try:
        body = read_body(request, settings.INGEST_MAX_BODY_BYTES)
        decode = signal.decode_json if as_json else signal.decode_protobuf
        decoded = decode(body, key_rules())
        result = do_ingest(decoded, token)
    except BodyError as exc:
        return _otlp_error(exc.status, exc.message, as_json)
    except DecodeError as exc:
        return _otlp_error(400, f"body does not parse as OTLP {media}: {exc}", as_json)
    except OutOfScope as exc:
        return _otlp_error(403, str(exc), as_json)
    except _UNAVAILABLE:
        log.warning("OTLP ingest: database unavailable", exc_info=True)
        return _otlp_error(
            503, "the database is unavailable, retry later", as_json, Retry_After=RETRY_AFTER_S
        )
    notes = [r.reason for r in result.rejected[:5]]
    if len(result.rejected) > 5:
        notes[-1] += f"; and {len(result.rejected) - 5} more"
    if decoded.truncated:  # a warning, in the spec's form when nothing was rejected
        notes.append(
            f"{decoded.truncated} {signal.item}(s) stored with values cut to fit (extra.truncated)"
        )
    if result.dropped:  # log records without keys: a warning too, never a rejection
        notes.append(otlp_logs.dropped_message(result.dropped))
    ctype = "application/json" if as_json else "application/x-protobuf"
    return HttpResponse(
        signal.encode_response(len(result.rejected), "; ".join(notes), json=as_json),
        status=200,
        content_type=ctype,
    )


@ingest_endpoint
def otlp_traces(request: HttpRequest) -> HttpResponse:
    return _otlp(request, TRACES)


@ingest_endpoint
def otlp_logs_view(request: HttpRequest) -> HttpResponse:
    return _otlp(request, LOGS)


# --- CloudEvents status events (docs/ingest.md) --------------------------------------------


def _event_answer(result: Ingested) -> dict[str, Any]:
    def item(i: int, r: Any) -> dict[str, Any]:
        return {"index": i, "id": r.extra.get("id", ""), "source": r.source}

    return {
        "accepted": sorted(
            [item(i, r) for i, r in (*result.stored, *result.snapshots)],
            key=lambda a: int(a["index"]),
        ),
        "duplicates": [item(i, r) for i, r in result.duplicates],
        "rejected": [
            {"index": r.index, "id": r.ident, "reason": r.reason} for r in result.rejected
        ],
        # stored, with values cut to fit storage: which fields
        "truncated": [
            {"index": i, "fields": r.extra["truncated"]}
            for i, r in result.stored
            if "truncated" in r.extra
        ],
    }


@ingest_endpoint
def events(request: HttpRequest) -> HttpResponse:
    token = _pass(request, events_door)
    if isinstance(token, HttpResponse):
        return token
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        body = read_body(request, settings.INGEST_MAX_BODY_BYTES)
        decoded = cloudevents.decode(body, _media_type(request), headers, now())
        result = do_ingest(decoded, token)
    except BodyError as exc:
        return _json(exc.status, {"error": exc.message})
    except cloudevents.UnsupportedMediaType as exc:
        return _json(415, {"error": str(exc)})
    except DecodeError as exc:
        return _json(400, {"error": str(exc)})
    except OutOfScope as exc:
        return _json(403, {"error": str(exc)})
    except _UNAVAILABLE:
        log.warning("event ingest: database unavailable", exc_info=True)
        return _json(
            503, {"error": "the database is unavailable, retry later"}, Retry_After=RETRY_AFTER_S
        )
    answer = _event_answer(result)
    nothing_good = result.rejected and not (result.stored or result.duplicates or result.snapshots)
    return _json(400 if nothing_good else 200, answer)


# --- Shopify webhooks (docs/ingest.md) --------------------------------------------------------


SHOPIFY_MISSING_TOKEN = (
    "missing ingest token: Shopify cannot send headers, so add ?token=<ingest token> to the "
    "subscription URL (/webhooks/shopify?token=...), or send 'Authorization: Bearer <ingest token>'"
)
SHOPIFY_UNKNOWN_TOKEN = (
    "unknown ingest token (read from the ?token= query parameter or the Authorization header)"
)


@ingest_endpoint
def shopify_webhook(request: HttpRequest) -> HttpResponse:
    token = _pass(request, shopify_door)
    if isinstance(token, HttpResponse):
        return token
    try:
        raw = read_body(request, settings.INGEST_MAX_BODY_BYTES)
    except BodyError as exc:
        return _json(exc.status, {"error": exc.message})
    signature = request.headers.get("X-Shopify-Hmac-Sha256")
    if not shopify.verify_hmac(raw, signature, settings.SHOPIFY_WEBHOOK_SECRET):
        reason = "missing" if not signature else "does not match the body"
        return _json(401, {"error": f"X-Shopify-Hmac-Sha256 {reason}"})
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        decoded = shopify.decode(raw, headers, now())
        result = do_ingest(decoded, token)
    except DecodeError as exc:
        return _json(400, {"error": str(exc)})
    except OutOfScope as exc:
        return _json(403, {"error": str(exc)})
    except _UNAVAILABLE:
        log.warning("Shopify ingest: database unavailable", exc_info=True)
        return _json(
            503, {"error": "the database is unavailable, retry later"}, Retry_After=RETRY_AFTER_S
        )
    if result.rejected and not (result.stored or result.duplicates):
        return _json(400, {"error": result.rejected[0].reason})
    status = "duplicate" if result.duplicates and not result.stored else "accepted"
    return _json(200, {"status": status})


#: For the ASGI gate: its answers are the views' own.
otlp_error = _otlp_error
json_answer = _json

#: Each ingest view's door, for the ASGI gate (which resolves the path to the view).
DOORS: dict[Callable[..., HttpResponse], Door] = {
    otlp_traces: otlp_door,
    otlp_logs_view: otlp_door,
    events: events_door,
    shopify_webhook: shopify_door,
}
