"""Plotly figures, built from plain values (no ORM here: tested without a database).

Pages embed a figure as JSON (``figure_json``) and render it with the plotly.js bundle
served locally (``vendor/plotly/plotly-basic.min.js``: scatter and bar traces only): never ``include_plotlyjs="cdn"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import plotly.graph_objects as go

FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", '
    '"Liberation Sans", Arial, sans-serif'
)
OK_COLOUR = "#2563eb"
FAILED_COLOUR = "#dc2626"
RETRY_COLOUR = "#d97706"
GRID_COLOUR = "#e2e8f0"
TEXT_COLOUR = "#334155"
MUTED_COLOUR = "#64748b"


class HopLike(Protocol):
    """What the swimlane needs of a hop (``hops.models.Hop`` has it all)."""

    id: int
    system: str
    operation: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    outcome: str
    status_message: str
    trace_id: str
    span_id: str
    retry_attempt: int
    replay: bool
    platform_status: str


def _category(hop: HopLike) -> str:
    if hop.outcome == "error":
        return "failed"
    if hop.retry_attempt > 0 or hop.replay or hop.outcome == "retry":
        return "retried"
    return "ok"


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def _hover(hop: HopLike, stages: Sequence[str]) -> str:
    lines = [
        f"<b>{_esc(hop.operation)}</b>",
        f"system: {_esc(hop.system)}",
        f"at: {hop.start_time:%Y-%m-%d %H:%M:%S} UTC",
        f"duration: {_duration(hop.duration_ms)}",
        f"outcome: {_esc(hop.outcome)}",
    ]
    if hop.retry_attempt:
        lines.append(f"retry attempt: {hop.retry_attempt}")
    if hop.replay:
        lines.append("replay of an earlier message")
    if stages:
        lines.append("stage: " + ", ".join(s.replace("_", " ") for s in stages))
    if hop.platform_status:
        lines.append(f"status: “{_esc(hop.platform_status)}”")
    if hop.status_message and hop.outcome == "error":
        lines.append(f"error: {_esc(hop.status_message[:160])}")
    lines.append(f"trace: {hop.trace_id or '—'}")
    return "<br>".join(lines)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def swimlane(
    hops: Iterable[HopLike],
    hop_stages: Mapping[int, Sequence[str]] | None = None,
    lanes: Sequence[str] | None = None,
) -> go.Figure:
    """Every hop of one transaction by system over time: one lane per system (in the order
    systems first appear, so the lanes read like the order's journey), a bar for each
    hop's duration and a marker at its start. Failed hops are red crosses, retries and
    replays amber diamonds labelled with their attempt; the hover says the operation, the
    duration and the trace id."""
    hop_stages = hop_stages or {}
    hops = list(hops)
    order = list(lanes or [])
    for hop in hops:
        if hop.system not in order:
            order.append(hop.system)

    fig = go.Figure()
    # duration bars: a Gantt bar from start to end (invisible for a millisecond call on a
    # day-long order, which is what the marker is for)
    fig.add_trace(
        go.Bar(
            name="duration",
            orientation="h",
            y=[h.system for h in hops],
            x=[max(h.duration_ms, 0.0) for h in hops],
            base=[h.start_time.isoformat() for h in hops],
            marker={
                "color": [
                    {"failed": "#fecaca", "retried": "#fde68a", "ok": "#bfdbfe"}[_category(h)]
                    for h in hops
                ],
                "line": {"width": 0},
            },
            width=0.45,
            hoverinfo="skip",
            showlegend=False,
        )
    )
    styles = {
        "ok": ("completed", OK_COLOUR, "circle", 11),
        "retried": ("retry / replay", RETRY_COLOUR, "diamond", 13),
        "failed": ("failed", FAILED_COLOUR, "x", 14),
    }
    # labels of neighbours in a lane alternate above and below their markers; any that
    # would still overlap are hidden by the page (static/js/observatory.js)
    side = _label_sides(hops)
    for cat, (name, colour, symbol, size) in styles.items():
        members = [h for h in hops if _category(h) == cat]
        if not members and cat != "ok":
            continue
        text = [_label(h, hop_stages.get(h.id, ())) for h in members]
        fig.add_trace(
            go.Scatter(
                name=name,
                mode="markers+text",
                x=[h.start_time.isoformat() for h in members],
                y=[h.system for h in members],
                text=text,
                textposition=[side[id(h)] for h in members],
                textfont={"size": 10, "color": MUTED_COLOUR},
                marker={
                    "color": colour,
                    "symbol": symbol,
                    "size": size,
                    "line": {"width": 1.5, "color": "#ffffff"},
                },
                hovertext=[_hover(h, hop_stages.get(h.id, ())) for h in members],
                hoverinfo="text",
                customdata=[[h.id, h.trace_id, h.span_id] for h in members],
                cliponaxis=False,
            )
        )

    height = 120 + 64 * max(len(order), 1)
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 100, "r": 24, "t": 16, "b": 40},
        font={"family": FONT, "size": 12, "color": TEXT_COLOUR},
        barmode="overlay",
        hovermode="closest",
        hoverlabel={
            "bgcolor": "#0f172a",
            "bordercolor": "#0f172a",
            "font": {"color": "#f8fafc", "family": FONT},
        },
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        plot_bgcolor="#ffffff",
        paper_bgcolor="rgba(0,0,0,0)",
    )
    fig.update_xaxes(
        type="date",
        showgrid=True,
        gridcolor=GRID_COLOUR,
        zeroline=False,
        range=_padded_range(hops),
    )
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=list(reversed(order)),
        showgrid=True,
        gridcolor=GRID_COLOUR,
        ticks="",
        ticksuffix="  ",
        tickfont={"size": 13, "color": "#0f172a"},
    )
    return fig


def _padded_range(hops: Sequence[HopLike]) -> list[str] | None:
    """The time axis from a little before the first hop to a little after the last one's
    end, so no marker or label sits on the edge."""
    if not hops:
        return None
    start = min(h.start_time for h in hops)
    end = max(max(h.end_time, h.start_time) for h in hops)
    pad = max((end - start) * 0.04, timedelta(seconds=1))
    return [(start - pad).isoformat(), (end + pad).isoformat()]


def _label_sides(hops: Sequence[HopLike]) -> dict[int, str]:
    """Above or below its marker, for each hop's label: alternating along each lane."""
    sides: dict[int, str] = {}
    lanes: dict[str, int] = {}
    for hop in sorted(hops, key=lambda h: h.start_time):
        n = lanes.get(hop.system, 0)
        sides[id(hop)] = "top center" if n % 2 == 0 else "bottom center"
        lanes[hop.system] = n + 1
    return sides


def _label(hop: HopLike, stages: Sequence[str]) -> str:
    """The small word over a marker: the stage it reached, and a retry's attempt."""
    parts = [s.replace("_", " ") for s in stages]
    if hop.retry_attempt:
        parts.append(f"retry {hop.retry_attempt}")
    elif hop.replay:
        parts.append("replay")
    return " · ".join(parts)


#: JSON inside <script type="application/json"> must not close the tag or open a comment.
_JSON_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def figure_json(fig: go.Figure, config: Mapping[str, Any] | None = None) -> str:
    """The figure as JSON safe to put inside ``<script type="application/json">``."""
    out: str = fig.to_json(validate=False, pretty=False)
    if config:
        import json

        doc = json.loads(out)
        doc["config"] = dict(config)
        out = json.dumps(doc, separators=(",", ":"))
    return out.translate(_JSON_SCRIPT_ESCAPES)
