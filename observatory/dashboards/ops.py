"""The live operations dashboard at ``/``.

The page is rendered whole on the server; its live part (``_ops_live.html``) is rendered
again by the websocket consumer (``consumers.OpsConsumer``) whenever the figures behind it
change, and pushed to the browser, which swaps it in. ``/ops/live/`` serves the same part
for the page's fallback polling while the websocket is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from observatory.dashboards import health as health_model
from observatory.dashboards import order_list, series
from observatory.dashboards import queries as page_queries
from observatory.dashboards.kpi_figures import human_s
from observatory.dashboards.series.integrity import source_integrity
from observatory.kpis import queries as kpi_queries
from observatory.lib.clock import now
from observatory.lib.timerange import TimeRange, range_or_default

LIVE_TEMPLATE = "dashboards/_ops_live.html"

AGE_LABELS = (
    ("under_1h", "Under 1 h"),
    ("h1_to_4", "1 to 4 h"),
    ("h4_to_24", "4 to 24 h"),
    ("over_24h", "Over 24 h"),
)


# --- the flow map -----------------------------------------------------------------------------


@dataclass
class Node:
    key: str
    label: str
    x: float
    y: float
    status: str = "idle"
    note: str = ""
    #: the health status (ok, degraded, failing, silent), and where its cause is shown
    health: str = ""
    url: str = ""
    why: str = ""
    w: float = 128
    h: float = 56

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    status: str
    label: str
    sub: str
    title: str
    count: str = ""
    #: the orders behind the arrow (order_list.py)
    href: str = ""

    @property
    def lx(self) -> float:
        """Where the label goes: over the middle of the arrow."""
        return (self.x1 + self.x2) / 2

    @property
    def ly(self) -> float:
        """The baseline of the label's first line (three lines, 13 px apart): over a level
        or falling arrow, under a rising one, so converging arrows keep theirs apart."""
        mid = (self.y1 + self.y2) / 2
        if abs(self.y2 - self.y1) < 1:
            return mid - 34
        return mid - 42 if self.y2 > self.y1 else mid + 16

    @property
    def path(self) -> str:
        """A gentle S-curve from the source's right side to the target's left side."""
        dx = (self.x2 - self.x1) / 2
        return (
            f"M {self.x1:.0f} {self.y1:.0f} C {self.x1 + dx:.0f} {self.y1:.0f}, "
            f"{self.x2 - dx:.0f} {self.y2:.0f}, {self.x2:.0f} {self.y2:.0f}"
        )


#: Where each system sits on the map: (column, row); Shopify appears twice, once as the
#: channel that takes orders, once as the shop that shows the shipment.
LAYOUT = {
    "shopify": (0, 0.0, "Shopify"),
    "marketplace": (0, 1.0, "Marketplace"),
    "pos": (0, 2.0, "Stores (POS)"),
    "middleware": (1, 0.5, "Middleware"),
    "erp": (2, 1.0, "ERP"),
    "wms": (3, 1.0, "Warehouse"),
    "carrier": (4, 1.0, "Carrier"),
    "shopify_f": (5, 1.0, "Shopify"),
}
MAP_W, MAP_H = 1500, 300
COLUMN = 272


@dataclass
class Card:
    """One system's card on the dashboard: its last minutes, and its health."""

    tile: series.Tile
    health: health_model.Health | None

    @property
    def status(self) -> str:
        """The health status; ``idle`` only when nothing is known against it."""
        if self.health is None:
            return "idle" if self.tile.status == "idle" else health_model.OK
        return self.health.status

    @property
    def colour(self) -> str:
        if self.health is None or (
            self.health.status == health_model.OK and self.tile.status == "idle"
        ):
            return "idle"
        return self.health.colour


def cards(tiles: list[series.Tile], healths: list[health_model.Health]) -> list[Card]:
    by_system = {h.system: h for h in healths}
    return [Card(t, by_system.get(t.system)) for t in tiles]


def flow_map(
    systems: list[Card],
    edges: list[series.Edge],
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Nodes and arrows of the order-flow map, in SVG coordinates; each node coloured by
    its system's health and linked to its cause; each arrow linked to the orders it
    measured (captured in ``window``, both stages reached)."""
    if window is None:
        at = now()
        window = (at - series.FLOW_WINDOW, at)
    status = {c.tile.system: c for c in systems}
    nodes: dict[str, Node] = {}
    for key, (col, row, label) in LAYOUT.items():
        card = status.get("shopify" if key == "shopify_f" else key)
        tile = card.tile if card is not None else None
        note = "fulfillment shown" if key == "shopify_f" else ""
        if card is not None and card.status not in (health_model.OK, "idle") and not note:
            note = card.status
        elif tile is not None and not note:
            note = f"{tile.per_min:.1f} hops/min" if tile.hops else tile.reason
        nodes[key] = Node(
            key,
            label,
            x=10 + col * COLUMN,
            y=20 + row * 104,
            status=card.colour if card is not None else "idle",
            note=note,
            health=card.status if card is not None else "",
            url=card.health.url if card is not None and card.health is not None else "",
            why=card.health.words if card is not None and card.health is not None else "",
        )
    arrows = []
    for e in edges:
        src = nodes[e.source]
        dst = nodes["shopify_f" if e.target == "shopify" else e.target]
        if e.p50_s is None:
            label, sub, count = "no orders yet", "", ""
        else:
            label = f"typical {human_s(e.p50_s)}"
            sub = f"slowest 5 %: {human_s(e.p95_s)}"
            count = f"{e.count:,} order{'s' if e.count != 1 else ''}"
        deadline = f" (deadline {human_s(e.deadline_s)})" if e.deadline_s else ""
        arrows.append(
            Arrow(
                src.x + src.w,
                src.cy,
                dst.x,
                dst.cy,
                e.status,
                label,
                sub,
                f"{e.words}: {label}, {sub or 'no orders'}{deadline}",
                count,
                order_list.link(
                    kind="order",
                    since=window[0],
                    until=window[1],
                    channel=series.FLOW_CHANNELS.get(e.source, ""),
                    reached=f"{e.from_stage},{e.to_stage}",
                ),
            )
        )
    return {"nodes": list(nodes.values()), "arrows": arrows, "w": MAP_W, "h": MAP_H}


# --- the page ---------------------------------------------------------------------------------


def page_range(params: Any, at: datetime) -> tuple[TimeRange, str]:
    """The dashboard's time range (``?range=``; the last 24 hours by default), and the
    error in words for one that cannot be read."""
    return range_or_default(params, at=at, default="24h")


def live_context(at: datetime | None = None, tr: TimeRange | None = None) -> dict[str, Any]:
    """Everything the live part of the page shows, as of ``at``, over the range ``tr``
    (the last 24 hours by default). The systems' status is always now (their last 15
    minutes, their firing alerts)."""
    at = at or now()
    tr = tr or page_range({}, at)[0]
    since = tr.since or at - timedelta(hours=24)
    tiles = series.system_tiles(at)
    systems = cards(tiles, health_model.systems(at, tiles=tiles))
    aging = kpi_queries.exception_aging(at, at=at)
    risk = value_at_risk(at)
    backlog = [{**b, "value": risk["by_stage"].get(b["stage"], "")} for b in series.backlog_now(at)]
    return {
        "at": at,
        "tr": tr,
        "summary": page_queries.home_summary(at, since=since, until=tr.until),
        "cards": systems,
        "flow": flow_map(systems, series.flow(tr.until, tr.until - since), (since, tr.until)),
        "drill": drill_links(since, tr.until),
        "integrity": source_integrity(since, tr.until, at=at),
        "backlog": backlog,
        "risk": risk,
        "aging": aging,
        "age_buckets": [(name, label, aging[name]) for name, label in AGE_LABELS],
        "failures": series.newest_failures(8),
        "alerts": series.firing_alerts(8),
    }


def value_at_risk(at: datetime) -> dict[str, Any]:
    """The value behind the open exceptions now, as the page words it: the
    ``value_at_risk`` KPI's one query (docs/kpis.md), each currency apart, never summed
    across currencies; per stage and per system as ``USD 12,340.00 · EUR 300.00``."""
    kpi = kpi_queries.value_at_risk(at, at=at)
    return {
        "orders": kpi["orders"],
        "by_currency": [(c, money_text({c: v})) for c, v in kpi["by_currency"].items()],
        "by_stage": {k: money_text(v) for k, v in kpi["by_stage"].items()},
        "by_system": {k: money_text(v) for k, v in kpi["by_system"].items()},
    }


def money_text(by_currency: dict[str, float]) -> str:
    """``{"EUR": 300, "USD": 12340}`` -> ``EUR 300.00 · USD 12,340.00``."""
    return " · ".join(f"{c} {v:,.2f}" for c, v in sorted(by_currency.items()))


def drill_links(since: datetime, until: datetime) -> dict[str, str]:
    """The orders behind the dashboard's counts of ``[since, until)`` (order_list.py): the
    same window and test."""
    return {
        "orders_24h": order_list.link(kind="order", since=since, until=until),
        "failed_24h": order_list.link(failed_since=since, failed_until=until),
    }


def render_live(at: datetime | None = None, params: Any = None) -> str:
    """The live part of the page as HTML (what the websocket pushes), for the range the
    page's URL parameters ``params`` ask for."""
    at = at or now()
    tr, _ = page_range(params or {}, at)
    return render_to_string(LIVE_TEMPLATE, live_context(at, tr))


def cached_live(fingerprint: tuple[Any, ...], query: str = "") -> str:
    """The live part for this state of the data and this range (``query``: the page's
    URL parameters), shared by every open dashboard of this process for a few seconds
    (ages in it move on; the data behind it did not)."""
    at = now()
    key = f"ops-live:{hash((fingerprint, query))}:{int(at.timestamp()) // 5}"
    html = cache.get(key)
    if html is None:
        html = render_live(at, QueryDict(query))
        cache.set(key, html, 10)
    return str(html)


@require_GET
@login_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    """Operations dashboard: systems, the order flow, backlog, exceptions, failures, alerts;
    kept live over a websocket."""
    at = now()
    tr, error = page_range(request.GET, at)
    return render(request, "dashboards/ops.html", {**live_context(at, tr), "range_error": error})


@require_GET
@login_required
@never_cache
def live_fragment(request: HttpRequest) -> HttpResponse:
    """The live part alone (the page polls it while its websocket is down)."""
    return HttpResponse(render_live(params=request.GET))
