"""Read API on hops: one trace's spans (CONTRACT 3)."""

from __future__ import annotations

import re

from django.http import HttpRequest
from ninja import Router
from ninja.errors import HttpError

from observatory.hops.models import Hop
from observatory.hops.queries import trace_spans
from observatory.hops.schema import KeyOut, SpanOut, TraceOut

router = Router(tags=["traces"])
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def span_out(hop: Hop) -> SpanOut:
    return SpanOut(
        hop_id=hop.id,
        trace_id=hop.trace_id,
        span_id=hop.span_id,
        parent_span_id=hop.parent_span_id,
        system=hop.system,
        operation=hop.operation,
        start_time=hop.start_time,
        end_time=hop.end_time,
        duration_ms=hop.duration_ms,
        outcome=hop.outcome,
        status_message=hop.status_message,
        retry_attempt=hop.retry_attempt,
        replay=hop.replay,
        stage=hop.stage,
        platform_status=hop.platform_status,
        keys=[KeyOut(kind=k.kind, value=k.value, fanout=k.fanout) for k in hop.keys.all()],
        attributes=hop.attributes,
        links=hop.extra.get("links", []),
    )


@router.get("/traces/{trace_id}", response=TraceOut, summary="The spans of one trace")
def get_trace(request: HttpRequest, trace_id: str) -> TraceOut:
    trace_id = trace_id.strip().lower()
    if not _TRACE_ID.match(trace_id):
        raise HttpError(400, "trace_id must be 32 hexadecimal characters")
    spans = trace_spans(trace_id)
    if not spans:
        raise HttpError(404, f"no spans stored for trace {trace_id}")
    return TraceOut(trace_id=trace_id, spans=[span_out(h) for h in spans])
