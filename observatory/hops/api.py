"""How a hop is shown in the API: one span, with its keys.

The trace endpoint (``GET /api/v1/traces/{trace_id}``) lives in ``triage.api`` so that it
can say which transactions a trace's spans belong to; it reuses ``span_out``.
"""

from __future__ import annotations

from functools import cache

from django.urls import reverse

from observatory.hops.models import Hop
from observatory.hops.schema import ExceptionEventOut, KeyOut, SpanOut

_ANY_TRACE = "0" * 32


@cache
def _trace_path() -> str:
    return reverse("trace", args=[_ANY_TRACE]).removesuffix(_ANY_TRACE + "/")


def trace_url(trace_id: str) -> str:
    """The path of a trace's page (``/traces/<trace_id>/``), "" without a trace id."""
    return f"{_trace_path()}{trace_id}/" if trace_id else ""


def span_out(hop: Hop) -> SpanOut:
    """A hop as a span (its keys must be prefetched: ``queries.hops_with_keys``), built
    without validation as ``triage.api.order_out`` explains."""
    return SpanOut.model_construct(
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
        keys=[
            KeyOut.model_construct(kind=k.kind, value=k.value, fanout=k.fanout)
            for k in hop.keys.all()
        ],
        attributes=hop.attributes,
        links=hop.extra.get("links", []),
        exceptions=[ExceptionEventOut.model_construct(**e) for e in hop.exception_events()],
        trace_url=trace_url(hop.trace_id),
    )
