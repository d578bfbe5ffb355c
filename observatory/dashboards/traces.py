"""The trace page, ``/traces/<trace_id>/`` (docs/architecture.md, "Pages"): a waterfall of
one trace's spans, nested by parent span id, each with the transactions it belongs to and
the traces its span links name. Drawn as HTML bars (no chart script): a trace of a few
hundred spans is a few hundred rows. A fixed number of queries, whatever its size."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from observatory.dashboards.templatetags.dashboards import span_ms
from observatory.hops.api import trace_url
from observatory.hops.models import Hop
from observatory.hops.queries import stored_traces, trace_spans
from observatory.triage import queries as triage_queries

#: A trace id as W3C Trace Context writes it: 32 hexadecimal characters.
TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
#: The narrowest bar, in percent of the trace: a span of no duration still shows.
MIN_BAR_PCT = 0.25


@dataclass
class TxRef:
    id: int
    label: str
    url: str = ""


@dataclass
class LinkRef:
    """A span link: the span of another (or the same) trace it names."""

    trace_id: str
    span_id: str
    #: some span of that trace is stored here (else the link leads to the 404 page)
    stored: bool
    attributes: dict[str, Any]
    url: str = ""


@dataclass
class SpanRow:
    hop: Hop
    depth: int
    offset_ms: float
    offset_pct: float
    width_pct: float
    #: its parent span id names a span this trace does not hold (not sent, or pruned)
    orphan: bool
    transactions: list[TxRef] = field(default_factory=list)
    links: list[LinkRef] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    #: the keys as ``kind=value, ...`` (drawn once here: a template loop per row costs more
    #: than the page's queries at a few hundred spans)
    keys: str = ""

    @property
    def indent_px(self) -> int:
        """The name's indent: a step per level, held to 20 levels."""
        return min(self.depth, 20) * 12

    @property
    def bar_style(self) -> str:
        return f"left:{self.offset_pct:.3f}%;width:{self.width_pct:.3f}%"

    @property
    def offset_text(self) -> str:
        return span_ms(self.offset_ms)

    @property
    def duration_text(self) -> str:
        return span_ms(self.hop.duration_ms)


@dataclass
class Waterfall:
    trace_id: str
    rows: list[SpanRow]
    start: datetime
    end: datetime
    duration_ms: float
    systems: list[str]
    transactions: list[TxRef]
    failed: int
    links_out: int
    #: tick marks along the time axis: (percent, label)
    ticks: list[tuple[float, str]]


def waterfall(trace_id: str) -> Waterfall | None:
    """The trace's waterfall, None when no span of it is stored. Six queries: the spans
    and their keys, which transactions hold them (links, transactions, their keys) and
    which linked traces are stored."""
    spans = trace_spans(trace_id)
    if not spans:
        return None
    txs, held = triage_queries.trace_transactions([h.id for h in spans])
    order_path = reverse("dashboards:order", args=[0]).removesuffix("0/")
    refs = {
        tx.id: TxRef(
            tx.id,
            triage_queries.pick_label((k.kind, k.value) for k in tx.keys.all()),
            f"{order_path}{tx.id}/",
        )
        for tx in txs
    }
    tx_of: dict[int, list[TxRef]] = defaultdict(list)
    for tx_id, hop_ids in held.items():
        if tx_id in refs:  # held by a merged transaction: its winner holds it too
            for hop_id in hop_ids:
                tx_of[hop_id].append(refs[tx_id])
    linked = {
        str(link.get("trace_id", ""))
        for h in spans
        for link in h.extra.get("links") or ()
        if isinstance(link, dict)
    }
    stored = stored_traces(linked - {"", trace_id}) | {trace_id}

    start = min(h.start_time for h in spans)
    end = max(h.end_time for h in spans)
    total_ms = max((end - start).total_seconds() * 1000, 0.001)
    ids = {h.span_id for h in spans}
    children: dict[str, list[Hop]] = defaultdict(list)
    roots = []
    for h in spans:  # in time order, so siblings stay in time order
        if h.parent_span_id and h.parent_span_id in ids and h.parent_span_id != h.span_id:
            children[h.parent_span_id].append(h)
        else:
            roots.append(h)

    rows: list[SpanRow] = []
    seen: set[int] = set()
    stack = [(h, 0) for h in reversed(roots)]
    while stack:  # depth first, without recursion (a trace may be deep)
        hop, depth = stack.pop()
        if hop.id in seen:
            continue
        seen.add(hop.id)
        rows.append(_row(hop, depth, start, total_ms, ids, tx_of, stored))
        stack.extend((c, depth + 1) for c in reversed(children.get(hop.span_id, ())))
    # spans in a parent cycle (not a tree) still show, at the top level
    rows.extend(_row(h, 0, start, total_ms, ids, tx_of, stored) for h in spans if h.id not in seen)

    return Waterfall(
        trace_id=trace_id,
        rows=rows,
        start=start,
        end=end,
        duration_ms=total_ms,
        systems=sorted({h.system for h in spans}),
        transactions=sorted(refs.values(), key=lambda t: t.id),
        failed=sum(1 for h in spans if h.outcome == "error"),
        links_out=sum(len(r.links) for r in rows),
        ticks=_ticks(total_ms),
    )


def _row(
    hop: Hop,
    depth: int,
    start: datetime,
    total_ms: float,
    ids: set[str],
    tx_of: dict[int, list[TxRef]],
    stored: set[str],
) -> SpanRow:
    offset_ms = (hop.start_time - start).total_seconds() * 1000
    offset_pct = min(100.0, offset_ms / total_ms * 100)
    width_pct = max(MIN_BAR_PCT, min(100.0 - offset_pct, hop.duration_ms / total_ms * 100))
    links = [
        LinkRef(
            trace_id=str(link.get("trace_id", "")),
            span_id=str(link.get("span_id", "")),
            stored=str(link.get("trace_id", "")) in stored,
            attributes=link.get("attributes") or {},
            url=trace_url(str(link.get("trace_id", ""))),
        )
        for link in hop.extra.get("links") or ()
        if isinstance(link, dict)
    ]
    return SpanRow(
        hop=hop,
        depth=depth,
        offset_ms=offset_ms,
        offset_pct=round(min(offset_pct, 100.0 - MIN_BAR_PCT), 3),
        width_pct=round(width_pct, 3),
        orphan=bool(hop.parent_span_id) and hop.parent_span_id not in ids,
        transactions=tx_of.get(hop.id, []),
        links=links,
        exceptions=hop.exception_events(),
        keys=", ".join(f"{k.kind}={k.value}" for k in hop.keys.all()),
    )


def _ticks(total_ms: float, count: int = 4) -> list[tuple[float, str]]:
    return [(i * 100 / count, _short_ms(total_ms * i / count)) for i in range(count + 1)]


def _short_ms(ms: float) -> str:
    if ms < 1:
        return "0" if ms == 0 else f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


@require_GET
@login_required
def page(request: HttpRequest, trace_id: str) -> HttpResponse:
    """One trace's waterfall; a page saying so (404) for an id with no stored span."""
    found = waterfall(trace_id.lower()) if TRACE_ID.match(trace_id) else None
    if found is None:
        context = {"trace_id": trace_id[:64], "valid": bool(TRACE_ID.match(trace_id))}
        return render(request, "dashboards/trace_missing.html", context, status=404)
    return render(request, "dashboards/trace.html", {"trace": found})
