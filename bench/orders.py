"""Orders as OTLP protobuf requests, for load across several web processes (shared by
``bench/soak.py`` and the two-process test, ``tests/test_several_processes.py``).

Every order is five hops in five systems, each in a trace of its own (no trace id
survives the trip), linked only by business keys passed along like a baton::

    shopify  captured   order_number, shopify_order_id
    middleware validated order_number
    erp      posted     order_number, erp_sales_order
    wms      picked     erp_sales_order, shipment_id
    carrier  shipped    shipment_id, tracking_number

so a hop that arrives before the one that links it makes a transaction of its own, merged
later. ``post`` sends one request the way an OpenTelemetry exporter does: on 429 or 503 it
waits and sends the same request again; a 200 means every span in it is stored.
"""

from __future__ import annotations

import http.client
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HOPS = (
    ("shopify", "orders/create", "captured"),
    ("middleware", "validate order", "validated"),
    ("erp", "post sales order", "posted"),
    ("wms", "pick", "picked"),
    ("carrier", "scan", "shipped"),
)


def keys(run: str, order: int, hop: int) -> dict[str, str]:
    """The business keys hop ``hop`` of order ``order`` carries."""
    number = f"#{run}-{order}"
    so, shipment = f"SO-{run}-{order}", f"SH-{run}-{order}"
    return [
        {"order_number": number, "shopify_order_id": f"{run}{order:09d}"},
        {"order_number": number},
        {"order_number": number, "erp_sales_order": so},
        {"erp_sales_order": so, "shipment_id": shipment},
        {"shipment_id": shipment, "tracking_number": f"1Z{run}{order:010d}"},
    ][hop]


@dataclass(frozen=True)
class Request:
    """One OTLP request: its body and the (trace id, span id) of each span, hex."""

    body: bytes
    spans: tuple[tuple[str, str], ...]


def build(run: str, hops: Iterable[tuple[int, int]], at_ns: int | None = None) -> Request:
    """An ExportTraceServiceRequest holding hop ``h`` of order ``o`` for each ``(o, h)``,
    one resource per system. Business times are ``at_ns`` (default now) plus a second per
    hop of the order."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def kv(key: str, value: str | float) -> KeyValue:
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    base = time.time_ns() if at_ns is None else at_ns
    by_system: dict[str, list[Span]] = {}
    ids: list[tuple[str, str]] = []
    for order, hop in hops:
        system, operation, stage = HOPS[hop]
        trace, span = secrets.token_bytes(16), secrets.token_bytes(8)
        start = base + hop * 1_000_000_000
        attributes = [kv("retail.stage", stage), kv("retail.channel", "web")]
        attributes += [kv(f"retail.key.{k}", v) for k, v in keys(run, order, hop).items()]
        if hop == 0:
            attributes += [kv("retail.order.amount", 120.5), kv("retail.order.currency", "USD")]
        by_system.setdefault(system, []).append(
            Span(
                trace_id=trace,
                span_id=span,
                name=operation,
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 80_000_000,
                attributes=attributes,
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )
        ids.append((trace.hex(), span.hex()))
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[kv("service.name", f"{system}-bridge"), kv("retail.system", system)]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
            for system, spans in by_system.items()
        ]
    )
    return Request(request.SerializeToString(), tuple(ids))


class Poster:
    """Keep-alive posts to one web process's ``/v1/traces``."""

    def __init__(self, base: str, token: str, timeout: float = 60.0) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {token}",
        }
        self.conn: http.client.HTTPConnection | None = None
        #: attempts answered 429/503 or cut off, that were sent again
        self.retries = 0

    def post(self, request: Request, *, tries: int = 20) -> tuple[int, float]:
        """Send until a 200 (an exporter's retries on 429, 503 and lost connections):
        the final status and the seconds the successful (or last) attempt took."""
        status, took = 0, 0.0
        for attempt in range(tries):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self.conn.request("POST", "/v1/traces", request.body, self.headers)
                response = self.conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                self.close()
                status = 0
            took = time.perf_counter() - started
            if status == 200 or status not in (0, 429, 502, 503, 504):
                return status, took
            self.retries += 1
            time.sleep(min(0.2 * 2**attempt, 2.0))
        return status, took

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def spread(orders: Sequence[int], webs: int) -> list[list[tuple[int, int]]]:
    """Each order's hops dealt out over ``webs`` processes (hop ``h`` of order ``o`` to
    ``(o + h) % webs``), every process's share shuffled so hops arrive out of order."""
    import random

    shares: list[list[tuple[int, int]]] = [[] for _ in range(webs)]
    for order in orders:
        for hop in range(len(HOPS)):
            shares[(order + hop) % webs].append((order, hop))
    for share in shares:
        random.shuffle(share)
    return shares


def sign_in(base: str, session: Any, user: str, password: str) -> None:
    """Sign ``session`` (a requests.Session) in on ``base`` through the login form."""
    session.get(f"{base}/accounts/login/", timeout=30).raise_for_status()
    answer = session.post(
        f"{base}/accounts/login/",
        data={
            "username": user,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in on {base} failed: {answer.status_code} {answer.text[:300]}")
