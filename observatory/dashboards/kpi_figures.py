"""Plotly figures of the KPI pages, built from plain values (no ORM: tested without a
database). Same look as ``figures.py``; rendered by ``static/js/observatory.js`` with the
locally served plotly bundle.

The figures are plotly's JSON schema as plain dicts (``{"data": [...], "layout": {...}}``)
rather than ``plotly.graph_objects``: the executive page draws seven charts per request,
and graph objects' validation and template copies cost more than every query of the page
together. ``validate`` checks a dict against plotly's schema, for the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from observatory.dashboards.figures import FONT, GRID_COLOUR, TEXT_COLOUR

Figure = dict[str, Any]

#: One colour per channel, and for the rest in turn (colour-blind safe, print safe).
CHANNEL_COLOURS = {
    "web": "#2563eb",
    "pos": "#0d9488",
    "marketplace": "#9333ea",
    "b2b": "#ea580c",
}
PALETTE = ("#2563eb", "#0d9488", "#9333ea", "#ea580c", "#0891b2", "#65a30d", "#db2777")
STAGE_COLOURS = {
    "posted": "#dc2626",
    "fulfillment_synced": "#f59e0b",
    "inventory_published": "#9333ea",
    "refund_settled": "#0891b2",
}
GOOD = "#15803d"
BAD = "#dc2626"
AMBER = "#d97706"
NEUTRAL = "#2563eb"

#: Human ticks for a logarithmic axis of seconds.
_SECOND_TICKS = (
    (1, "1 s"),
    (10, "10 s"),
    (60, "1 min"),
    (300, "5 min"),
    (900, "15 min"),
    (3600, "1 h"),
    (4 * 3600, "4 h"),
    (86400, "1 day"),
)


def colour(name: str, i: int) -> str:
    return CHANNEL_COLOURS.get(name) or PALETTE[i % len(PALETTE)]


def human_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 1:
        return "under 1 s"
    if s < 90:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min" if s < 600 else f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _axis(**extra: Any) -> dict[str, Any]:
    base = {
        "showgrid": True,
        "gridcolor": GRID_COLOUR,
        "zeroline": False,
        "linecolor": GRID_COLOUR,
        "automargin": True,
    }
    base.update(extra)
    return base


#: Counts on an axis: thousands separated (2,500), never SI-suffixed (2.5k).
COUNT_FORMAT = ","


def _figure(data: list[dict[str, Any]], *, height: int = 320, legend: bool = True) -> Figure:
    return {
        "data": data,
        "layout": {
            "height": height,
            # automargin on every axis grows these to fit the tick labels (never clipped)
            "margin": {"l": 56, "r": 24, "t": 12, "b": 40},
            "separators": ".,",
            "font": {"family": FONT, "size": 12, "color": TEXT_COLOUR},
            "hovermode": "x unified",
            "hoverlabel": {"font": {"family": FONT}},
            "showlegend": legend,
            "legend": {
                "orientation": "h",
                "yanchor": "bottom",
                "y": 1.0,
                "xanchor": "left",
                "x": 0,
            },
            "plot_bgcolor": "#ffffff",
            "paper_bgcolor": "rgba(0,0,0,0)",
            "xaxis": _axis(),
            "yaxis": _axis(rangemode="tozero", tickformat=COUNT_FORMAT),
        },
    }


def _whole_ticks(axis: dict[str, Any], values: Sequence[float | None]) -> None:
    """A count axis of small numbers ticks at whole numbers (never "0.5 orders")."""
    if max((v for v in values if v is not None), default=0) <= 5:
        axis.update(tick0=0, dtick=1)


def _right_axis(title: str) -> dict[str, Any]:
    """A second y axis on the right, for counts: its labels grow the right margin."""
    return {
        "side": "right",
        "showgrid": False,
        "rangemode": "tozero",
        "automargin": True,
        "tickformat": COUNT_FORMAT,
        "title": {"text": title, "font": {"size": 11}},
    }


def _seconds_axis(fig: Figure, values: Sequence[float]) -> None:
    present = [v for v in values if v]
    if not present:
        return
    lo, hi = min(present), max(present)
    # a tick on each side of the data at least (a lone point between 1 and 5 min has both)
    ticks = [(v, t) for v, t in _SECOND_TICKS if lo / 4 <= v <= hi * 4] or list(_SECOND_TICKS[:3])
    axis = fig["layout"]["yaxis"]
    axis.pop("tickformat", None)  # the tick texts say it: "1 min", "1 h"
    axis.update(
        type="log",
        tickvals=[v for v, _ in ticks],
        ticktext=[t for _, t in ticks],
        rangemode="normal",
    )


def _day(d: datetime) -> str:
    return d.date().isoformat()


def posting_times(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Daily p95 (solid) and p50 (dotted) acceptance-to-posting, one colour per channel."""
    data = []
    values: list[float] = []
    for i, (channel, rows) in enumerate(series.items()):
        days = [_day(r["day"]) for r in rows]
        for q, dash, width in (("p95_s", "solid", 2.5), ("p50_s", "dot", 1.8)):
            ys = [r[q] for r in rows]
            values.extend(y for y in ys if y is not None)
            data.append(
                {
                    "type": "scatter",
                    "x": days,
                    "y": ys,
                    "name": f"{channel} · {'slowest 5 %' if q == 'p95_s' else 'typical'}",
                    "mode": "lines+markers",
                    "line": {"color": colour(channel, i), "dash": dash, "width": width},
                    "marker": {"size": 4},
                    "connectgaps": False,
                    "customdata": [human_s(y) for y in ys],
                    "hovertemplate": "%{customdata}<extra>%{fullData.name}</extra>",
                }
            )
    fig = _figure(data)
    _seconds_axis(fig, values)
    return fig


def daily_rate(
    rows: Sequence[Mapping[str, Any]], *, key: str = "rate", count: str = "", colour_: str = BAD
) -> Figure:
    """A daily share (0..1) as a line over bars of the volume it is a share of."""
    days = [_day(r["day"]) for r in rows]
    data: list[dict[str, Any]] = []
    if count:
        words = count.replace("_", " ")
        data.append(
            {
                "type": "bar",
                "x": days,
                "y": [r[count] for r in rows],
                "name": words,
                "marker": {"color": "#e2e8f0"},
                "yaxis": "y2",
                "hovertemplate": "%{y:,}<extra>" + words + "</extra>",
            }
        )
    data.append(
        {
            "type": "scatter",
            "x": days,
            "y": [None if r[key] is None else r[key] * 100 for r in rows],
            "name": "share (%)",
            "mode": "lines+markers",
            "line": {"color": colour_, "width": 2.5},
            "marker": {"size": 4},
            "hovertemplate": "%{y:.2f} %<extra>share</extra>",
        }
    )
    fig = _figure(data)
    layout = fig["layout"]
    layout["yaxis"].update(ticksuffix=" %", tickformat=",.1f")
    if count:
        # ticks of its own (an overlaying axis otherwise syncs to the other: "50.7 %")
        layout["yaxis"].update(overlaying="y2", side="left", tickmode="auto")
        layout["yaxis2"] = _right_axis(words)
        _whole_ticks(layout["yaxis2"], [r[count] for r in rows])
    return fig


def backlog(
    rows: Sequence[Mapping[str, Any]], span: tuple[datetime, datetime] | None = None
) -> Figure:
    """Transactions past a deadline, by missing stage, as sampled (over ``span``)."""
    stages = sorted({s for r in rows for s in r["by_stage"]})
    xs = [r["at"].isoformat() for r in rows]
    data = [
        {
            "type": "scatter",
            "x": xs,
            "y": [r["by_stage"].get(stage, 0) for r in rows],
            "name": stage.replace("_", " "),
            "mode": "lines+markers" if len(rows) < 3 else "lines",
            "stackgroup": "one",
            "line": {"color": STAGE_COLOURS.get(stage, PALETTE[i % len(PALETTE)]), "width": 1.5},
        }
        for i, stage in enumerate(stages)
    ]
    if not stages:
        data.append(
            {
                "type": "scatter",
                "x": xs,
                "y": [r["total"] for r in rows],
                "name": "total",
                "mode": "lines+markers",
                "line": {"color": NEUTRAL},
            }
        )
    fig = _figure(data)
    _whole_ticks(fig["layout"]["yaxis"], [r["total"] for r in rows])
    fig["layout"]["xaxis"]["type"] = "date"
    if span is not None:
        fig["layout"]["xaxis"]["range"] = [span[0].isoformat(), span[1].isoformat()]
    return fig


def distribution(rows: Sequence[Mapping[str, Any]], *, deadline_bin: int | None = None) -> Figure:
    """Counts per delay bin; bins past the deadline in red."""
    bars = {
        "type": "bar",
        "x": [r["bin"] for r in rows],
        "y": [r["count"] for r in rows],
        "marker": {
            "color": [
                BAD if deadline_bin is not None and i >= deadline_bin else NEUTRAL
                for i in range(len(rows))
            ]
        },
        "hovertemplate": "%{y:,} updates<extra>%{x}</extra>",
    }
    fig = _figure([bars], legend=False)
    fig["layout"]["hovermode"] = "closest"
    return fig


def resolution(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Daily mean time to resolve exceptions and alerts, in minutes when every mean is
    under two hours, else in hours."""
    days = [_day(r["day"]) for r in rows]
    longest = max(
        (r[k] for r in rows for k in ("exceptions_mean_s", "alerts_mean_s") if r[k] is not None),
        default=0.0,
    )
    per, unit = (60, "min") if longest < 7200 else (3600, "h")
    data = []
    for key, name, c in (
        ("exceptions_mean_s", "exceptions", NEUTRAL),
        ("alerts_mean_s", "alerts", AMBER),
    ):
        data.append(
            {
                "type": "bar",
                "x": days,
                "y": [None if r[key] is None else r[key] / per for r in rows],
                "name": name,
                "marker": {"color": c},
                "hovertemplate": "%{y:,.1f} " + unit + "<extra>" + name + "</extra>",
            }
        )
    fig = _figure(data)
    fig["layout"]["barmode"] = "group"
    fig["layout"]["yaxis"].update(ticksuffix=f" {unit}", tickformat=",~r")
    return fig


def hourly_hops(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """A system's hops and failed hops per hour."""
    xs = [r["hour"].isoformat() for r in rows]
    fig = _figure(
        [
            {
                "type": "bar",
                "x": xs,
                "y": [r["hops"] - r["errors"] for r in rows],
                "name": "completed",
                "marker": {"color": "#93c5fd"},
            },
            {
                "type": "bar",
                "x": xs,
                "y": [r["errors"] for r in rows],
                "name": "failed",
                "marker": {"color": BAD},
            },
        ],
        height=260,
    )
    fig["layout"]["barmode"] = "stack"
    return fig


def systems_bars(rows: Sequence[Any], names: Sequence[str] | None = None) -> Figure:
    """Hops per minute per system, failed ones on top."""
    labels = list(names) if names is not None else [r.system for r in rows]
    fig = _figure(
        [
            {
                "type": "bar",
                "y": labels,
                "x": [(r.hops - r.errors) / r.minutes for r in rows],
                "name": "completed per min",
                "orientation": "h",
                "marker": {"color": "#93c5fd"},
            },
            {
                "type": "bar",
                "y": labels,
                "x": [r.errors / r.minutes for r in rows],
                "name": "failed per min",
                "orientation": "h",
                "marker": {"color": BAD},
            },
        ],
        height=90 + 34 * max(len(rows), 1),
    )
    layout = fig["layout"]
    layout.update(barmode="stack", hovermode="y unified")
    layout["margin"]["l"] = 110
    layout["yaxis"].update(autorange="reversed", showgrid=False)
    return fig


#: JSON inside <script type="application/json"> must not close the tag or open a comment.
_JSON_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def to_json(fig: Figure, config: Mapping[str, Any] | None = None) -> str:
    """The figure as JSON safe inside ``<script type="application/json">`` (the same
    contract as ``figures.figure_json``)."""
    doc = dict(fig)
    if config:
        doc["config"] = dict(config)
    text = orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.translate(_JSON_SCRIPT_ESCAPES)


def validate(fig: Figure) -> None:
    """Raise if ``fig`` is not a valid plotly figure (for the tests; slow)."""
    import plotly.graph_objects as go

    go.Figure(fig)


#: Arrival-lag bins for people: (upper bound in seconds, words)
LAG_BINS = (
    (1, "< 1 s"),
    (5, "1 to 5 s"),
    (30, "5 to 30 s"),
    (120, "30 s to 2 min"),
    (600, "2 to 10 min"),
    (3600, "10 to 60 min"),
    (6 * 3600, "1 to 6 h"),
    (86400, "6 to 24 h"),
    (float("inf"), "> 1 day"),
)


def lag_histogram(histogram: Sequence[tuple[float, float, int]]) -> Figure:
    """How late a system's hops arrived (received minus business time), in coarse bins,
    from the fine bins of its lag sketch."""
    counts = [0] * len(LAG_BINS)
    for _low, high, n in histogram:
        i = next(
            i for i, (upper, _) in enumerate(LAG_BINS) if high <= upper or upper == float("inf")
        )
        counts[i] += n
    bars = {
        "type": "bar",
        "x": [words for _, words in LAG_BINS],
        "y": counts,
        "marker": {"color": NEUTRAL},
        "hovertemplate": "%{y:,} hops<extra>arrived %{x} late</extra>",
    }
    fig = _figure([bars], legend=False)
    fig["layout"]["hovermode"] = "closest"
    return fig
