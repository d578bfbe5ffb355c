"""The charts of the executive page (docs/kpis.md), each with the rows of its CSV: every
chart covers the period and the filters chosen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from observatory.dashboards import kpi_figures as figs
from observatory.dashboards import order_list, series
from observatory.kpis.compute import HOUR, floor_to

if TYPE_CHECKING:
    from observatory.dashboards.executive import Filters


def period_start(f: Filters, at: datetime) -> datetime:
    """The start of the period shown: ``f.days`` before the current hour began."""
    return floor_to(at, HOUR) - timedelta(days=f.days)


@dataclass
class Chart:
    key: str
    title: str
    words: str
    figure: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    empty: bool = False


def _a2p_rows(data: dict[str, list[dict[str, Any]]], days: int) -> list[dict[str, Any]]:
    out = []
    for channel, rows in data.items():
        for r in rows[-days:]:
            out.append(
                {
                    "day": r["day"].date().isoformat(),
                    "channel": channel,
                    "orders_posted": r["count"],
                    "p50_s": r["p50_s"],
                    "p95_s": r["p95_s"],
                }
            )
    return out


def drill(trace: Any, links: list[str]) -> None:
    """Give each point of ``trace`` the address of its orders, as the last item of its
    ``customdata`` (``static/js/drill.js`` follows it on a click); a hover text already
    in ``customdata`` stays the first item."""
    held = trace.get("customdata")
    if held is not None:
        trace["customdata"] = [[h, u] for h, u in zip(held, links, strict=True)]
        trace["hovertemplate"] = trace["hovertemplate"].replace("%{customdata}", "%{customdata[0]}")
    else:
        trace["customdata"] = [[u] for u in links]


def chart_builders(f: Filters, at: datetime) -> dict[str, Callable[[], Chart]]:
    ch, st = f.channel or None, f.store or None

    def day_link(day: datetime, channel: str = "", **extra: Any) -> str:
        return order_list.link(
            kind="order",
            since=day,
            until=day + timedelta(days=1),
            channel=channel or f.channel,
            store=f.store,
            **extra,
        )

    def posting() -> Chart:
        data = series.daily_a2p_by_channel(f.days, at, channel=ch, store=st)
        figure = figs.posting_times(data)
        # two traces per channel (slowest 5 %, typical), in the order of ``data``
        pairs = [kv for kv in data.items() for _ in (0, 1)]
        for trace, (channel, rows) in zip(figure["data"], pairs, strict=False):
            drill(trace, [day_link(r["day"], channel, reached="posted") for r in rows])
        return Chart(
            "posting",
            f"Time from order to ERP, last {f.days} days",
            "Per day and channel: the typical order (dotted) and the slowest 5 % (solid). "
            "Click a point for the day's orders.",
            figure,
            _a2p_rows(data, f.days),
            ("day", "channel", "orders_posted", "p50_s", "p95_s"),
            empty=not any(r["count"] for rows in data.values() for r in rows),
        )

    def exceptions() -> Chart:
        rows = series.daily_orders(f.days, at, channel=ch, store=st)
        figure = figs.daily_rate(rows, count="orders")
        # bars: the day's orders; the line: those with a problem
        for trace in figure["data"]:
            extra = {"condition": "problem"} if trace["type"] == "scatter" else {}
            drill(trace, [day_link(r["day"], **extra) for r in rows])
        return Chart(
            "exceptions",
            "Orders with a problem",
            "Per day: the share of orders with a failed step or an exception (line), "
            "over the number of orders (bars). Click a day for its orders.",
            figure,
            [{**r, "day": r["day"].date().isoformat()} for r in rows],
            ("day", "orders", "with_exception", "rate", "posted_twice"),
            empty=not any(r["orders"] for r in rows),
        )

    def duplicates() -> Chart:
        rows = series.daily_deliveries(f.days, at, channel=ch, store=st)
        return Chart(
            "duplicates",
            "Repeated messages",
            "Per day: the share of messages delivered more than once.",
            figs.daily_rate(rows, count="deliveries", colour_=figs.AMBER),
            [{**r, "day": r["day"].date().isoformat()} for r in rows],
            ("day", "deliveries", "duplicates", "rate", "retries", "errors"),
            empty=not any(r["deliveries"] for r in rows),
        )

    def backlog() -> Chart:
        span = (at - timedelta(days=f.days), at)
        rows = series.backlog_trend(*span, channel=ch, store=st)
        stages = sorted({s for r in rows for s in r["by_stage"]})
        flat = [
            {
                "at": r["at"].isoformat(),
                "total": r["total"],
                **{s: r["by_stage"].get(s, 0) for s in stages},
            }
            for r in rows
        ]
        return Chart(
            "backlog",
            "Orders past their deadline, over time",
            "How many transactions were waiting for an overdue step, sampled every hour.",
            figs.backlog(rows, span),
            flat,
            ("at", "total", *stages),
            empty=not rows,
        )

    def inventory() -> Chart:
        # at the page's own time: the same total as the cards' (one read, lib.memo)
        total, rows = series.inventory_lag(period_start(f, at), at, channel=ch, store=st, at=at)
        return Chart(
            "inventory",
            "How long stock updates took to reach the shop",
            f"{total.inv.count:,} stock updates, by delay; red: past the 5 minute deadline.",
            figs.distribution(rows, deadline_bin=4),
            rows,
            ("from_s", "to_s", "count"),
            empty=not total.inv.count,
        )

    def resolution() -> Chart:
        rows = series.daily_resolution(f.days, at, channel=ch, store=st)
        return Chart(
            "resolution",
            "Time to fix",
            "Per day: average hours from an exception opening (or an alert firing) to "
            "its resolution.",
            figs.resolution(rows),
            [{**r, "day": r["day"].date().isoformat()} for r in rows],
            ("day", "exceptions_resolved", "exceptions_mean_s", "alerts_resolved", "alerts_mean_s"),
            empty=not any(r["exceptions_resolved"] or r["alerts_resolved"] for r in rows),
        )

    return {
        "posting": posting,
        "exceptions": exceptions,
        "duplicates": duplicates,
        "backlog": backlog,
        "inventory": inventory,
        "resolution": resolution,
    }


CHART_KEYS = (
    "posting",
    "exceptions",
    "duplicates",
    "backlog",
    "inventory",
    "resolution",
)
