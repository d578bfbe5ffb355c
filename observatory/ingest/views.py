"""The ingest endpoints of CONTRACT section 2: thin, strict, and fast.

Each view authenticates, reads the body within the limit, hands decoding to ``tracing``
and storing to ``ingest.actions``, and answers in the sender's own protocol. The database
being unreachable is a 503 with ``Retry-After`` so that senders retry, never a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from observatory.access import tokens
from observatory.access.models import IngestToken
from observatory.access.queries import Denied, ingest_token
from observatory.ingest.actions import Ingested, OutOfScope, do_ingest
from observatory.ingest.limits import BodyError, read_body
from observatory.lib.clock import now
from tracing import cloudevents, otlp, shopify
from tracing.keys import KeyRules
from tracing.records import DecodeError

log = logging.getLogger(__name__)
RETRY_AFTER_S = "5"
_UNAVAILABLE = (OperationalError, InterfaceError)


@lru_cache(maxsize=1)
def key_rules() -> KeyRules:
    return KeyRules(
        attribute_kinds=dict(settings.INGEST_KEY_RULES),
        service_systems=dict(settings.INGEST_SERVICE_SYSTEMS),
    )


def _media_type(request: HttpRequest) -> str:
    return request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()


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
    """POST only, no CSRF (token-authenticated machine traffic)."""
    return csrf_exempt(require_POST(wraps(view)(view)))


# --- OTLP/HTTP traces (CONTRACT 2.1) ------------------------------------------------------


def _otlp_error(status: int, message: str, as_json: bool, **headers: str) -> HttpResponse:
    body = otlp.encode_status(status, message, json=as_json)
    ctype = "application/json" if as_json else "application/x-protobuf"
    response = HttpResponse(body, status=status, content_type=ctype)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@ingest_endpoint
def otlp_traces(request: HttpRequest) -> HttpResponse:
    media = _media_type(request)
    as_json = media == "application/json"
    if media not in ("application/x-protobuf", "application/json"):
        return _otlp_error(
            415,
            f"Content-Type '{media or '(none)'}' is not supported: "
            "send application/x-protobuf or application/json",
            True,
        )
    token = _authenticate(tokens.bearer(request.headers.get("Authorization")))
    if isinstance(token, Denied):
        extra = {"Retry_After": RETRY_AFTER_S} if token.status == 503 else {}
        return _otlp_error(token.status, token.message, as_json, **extra)
    try:
        body = read_body(request, settings.INGEST_MAX_BODY_BYTES)
        decode = otlp.decode_json if as_json else otlp.decode_protobuf
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
    message = "; ".join(r.reason for r in result.rejected[:5])
    if len(result.rejected) > 5:
        message += f"; and {len(result.rejected) - 5} more"
    ctype = "application/json" if as_json else "application/x-protobuf"
    return HttpResponse(
        otlp.encode_response(len(result.rejected), message, json=as_json),
        status=200,
        content_type=ctype,
    )


# --- CloudEvents status events (CONTRACT 2.2) ---------------------------------------------


def _event_answer(result: Ingested) -> dict[str, Any]:
    def item(i: int, r: Any) -> dict[str, Any]:
        return {"index": i, "id": r.extra.get("id", ""), "source": r.source}

    return {
        "accepted": [item(i, r) for i, r in result.stored],
        "duplicates": [item(i, r) for i, r in result.duplicates],
        "rejected": [
            {"index": r.index, "id": r.ident, "reason": r.reason} for r in result.rejected
        ],
    }


@ingest_endpoint
def events(request: HttpRequest) -> HttpResponse:
    token = _authenticate(tokens.bearer(request.headers.get("Authorization")))
    if isinstance(token, Denied):
        extra = {"Retry_After": RETRY_AFTER_S} if token.status == 503 else {}
        return _json(token.status, {"error": token.message}, **extra)
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
    nothing_good = result.rejected and not (result.stored or result.duplicates)
    return _json(400 if nothing_good else 200, answer)


# --- Shopify webhooks (CONTRACT 2.3) ---------------------------------------------------------


@ingest_endpoint
def shopify_webhook(request: HttpRequest) -> HttpResponse:
    # Shopify cannot add an Authorization header to its deliveries, so the ingest token
    # may also ride in the subscription URL: /webhooks/shopify?token=<ingest token>.
    plain = tokens.bearer(request.headers.get("Authorization")) or request.GET.get("token")
    token = _authenticate(plain)
    if isinstance(token, Denied):
        extra = {"Retry_After": RETRY_AFTER_S} if token.status == 503 else {}
        return _json(token.status, {"error": token.message}, **extra)
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
