"""The door of each ingest endpoint: size and token before the body, under ASGI and WSGI."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.test import Client
from google.rpc import status_pb2

from observatory.access.actions import do_create_api_token, do_revoke_token
from observatory.access.models import IngestToken
from observatory.hops.models import Hop
from observatory.ingest.gate import IngestGate
from tests.ingest.test_otlp_endpoint import json_span, otlp_json

BODY = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")]))


def scope(path: str, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def exchange(
    path: str, headers: dict[str, str], chunks: list[bytes] | None, query: str = ""
) -> tuple[int, dict[str, str], bytes, int]:
    """Send the request through the gate and Django; ``None`` chunks: send no body at all
    (an app that waits for it times out). Returns status, headers, body, chunks sent."""

    async def run() -> tuple[int, dict[str, str], bytes, int]:
        app = IngestGate(get_asgi_application())
        talk = ApplicationCommunicator(app, scope(path, headers, query))
        sent = 0
        for i, chunk in enumerate(chunks or []):
            more = i < len(chunks or []) - 1
            await talk.send_input({"type": "http.request", "body": chunk, "more_body": more})
            sent += 1
        start = await talk.receive_output(timeout=5)
        body = await talk.receive_output(timeout=5)
        answer = {k.decode(): v.decode() for k, v in start["headers"]}
        await talk.wait(timeout=5)
        return start["status"], answer, body["body"], sent

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_a_declared_size_over_the_limit_is_413_before_the_body(settings: Any) -> None:
    settings.INGEST_MAX_BODY_BYTES = 1024
    status, _, body, _ = exchange(
        "/v1/traces",
        {"content-type": "application/json", "content-length": str(10**9)},
        None,  # no byte of the body is ever sent
    )
    assert status == 413
    assert orjson.loads(body)["code"] == 8  # RESOURCE_EXHAUSTED


@pytest.mark.django_db(transaction=True)
def test_the_token_is_checked_before_the_body(settings: Any) -> None:
    for path, ctype in (
        ("/v1/traces", "application/x-protobuf"),
        ("/api/v1/events", "application/cloudevents+json"),
        ("/webhooks/shopify", "application/json"),
    ):
        status, _, body, _ = exchange(path, {"content-type": ctype, "content-length": "100"}, None)
        assert status == 401, path
    status, _, body, _ = exchange("/v1/traces", {"content-type": "application/x-protobuf"}, None)
    assert status_pb2.Status.FromString(body).code == 16  # UNAUTHENTICATED


@pytest.mark.django_db(transaction=True)
def test_a_stream_past_the_limit_is_refused_as_it_comes(settings: Any, ingest_token: str) -> None:
    settings.INGEST_MAX_BODY_BYTES = 1024
    headers = {"content-type": "application/json", "authorization": f"Bearer {ingest_token}"}
    # no Content-Length (chunked): four chunks of 400 bytes, refused at the third
    status, _, body, _ = exchange("/api/v1/events", headers, [b"x" * 400] * 4)
    assert status == 413
    assert "over the limit" in orjson.loads(body)["error"]
    assert Hop.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_good_request_goes_through_the_gate(ingest_token: str) -> None:
    headers = {
        "content-type": "application/json",
        "content-length": str(len(BODY)),
        "authorization": f"Bearer {ingest_token}",
    }
    half = len(BODY) // 2
    status, _, body, _ = exchange("/v1/traces", headers, [BODY[:half], BODY[half:]])
    assert status == 200, body
    assert Hop.objects.get().span_id == "00f067aa0ba902b7"
    # the Shopify door reads the token from the query string
    status, _, body, _ = exchange(
        "/webhooks/shopify",
        {"content-type": "application/json"},
        [b"{}"],
        query=f"token={ingest_token}",
    )
    assert status == 401 and b"X-Shopify-Hmac-Sha256" in body  # past the door: the HMAC


# --- the same doors under WSGI (the test client), and the answers' codes ---------------------


@pytest.mark.django_db
def test_otlp_error_bodies_carry_grpc_codes(ingest_token: str, settings: Any) -> None:
    def code(client: Client, body: bytes = BODY, **extra: Any) -> tuple[int, int]:
        response = client.post("/v1/traces", body, content_type="application/json", **extra)
        return response.status_code, orjson.loads(response.content)["code"]

    assert code(Client()) == (401, 16)  # UNAUTHENTICATED
    good = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert code(good, b"{not json") == (400, 3)  # INVALID_ARGUMENT
    settings.INGEST_MAX_BODY_BYTES = 10
    assert code(good) == (413, 8)  # RESOURCE_EXHAUSTED
    settings.INGEST_MAX_BODY_BYTES = 1 << 20
    _, reader = do_create_api_token("reader", "read")
    assert code(Client(HTTP_AUTHORIZATION=f"Bearer {reader}")) == (403, 7)  # PERMISSION_DENIED
    do_revoke_token(IngestToken.objects.get())
    assert code(good) == (403, 7)


def test_grpc_codes_by_http_status() -> None:
    from tracing.otlp import grpc_code

    expected = {400: 3, 401: 16, 403: 7, 413: 8, 429: 8, 503: 14, 415: 3, 404: 3, 500: 13}
    assert {status: grpc_code(status) for status in expected} == expected


@pytest.mark.django_db
def test_the_shopify_401_names_the_token_query_parameter() -> None:
    missing = Client().post("/webhooks/shopify", b"{}", content_type="application/json")
    assert missing.status_code == 401
    assert "?token=" in missing.json()["error"] and "Authorization" in missing.json()["error"]
    unknown = Client().post(
        "/webhooks/shopify?token=obs_in_forged", b"{}", content_type="application/json"
    )
    assert unknown.status_code == 401 and "?token=" in unknown.json()["error"]


@pytest.mark.django_db
def test_under_wsgi_a_refused_token_reads_no_body(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.http import HttpRequest

    def no_reading(self: HttpRequest, *args: Any) -> bytes:
        raise AssertionError("the body was read before the token was checked")

    monkeypatch.setattr(HttpRequest, "read", no_reading)
    response = Client().post("/api/v1/events", BODY, content_type="application/cloudevents+json")
    assert response.status_code == 401
