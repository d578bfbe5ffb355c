"""API shapes for hops."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema


class KeyOut(Schema):
    kind: str
    value: str
    fanout: bool = False


class ExceptionEventOut(Schema):
    """An OpenTelemetry ``exception`` event of a span (its ``exception.*`` attributes)."""

    type: str
    message: str
    stacktrace: str
    #: the exception escaped the span's scope (``exception.escaped``)
    escaped: bool = False
    #: when it was recorded (RFC 3339); empty when unknown
    time: str = ""


class SpanOut(Schema):
    hop_id: int
    trace_id: str
    span_id: str
    parent_span_id: str
    system: str
    operation: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    outcome: str
    status_message: str
    retry_attempt: int
    replay: bool
    stage: str
    platform_status: str
    keys: list[KeyOut]
    attributes: dict[str, Any]
    links: list[dict[str, Any]]
    #: the span's exception events, in the order recorded
    exceptions: list[ExceptionEventOut] = []
    #: the trace's page (``/traces/<trace_id>/``); empty for a hop without a trace
    trace_url: str = ""


class TraceOut(Schema):
    trace_id: str
    spans: list[SpanOut]
