"""Executive KPI pages at ``/executive/`` (docs/kpis.md): cards with the figure, the change
against the previous period and how often the promise to customers was kept; charts of
the trends; the data of every chart as CSV; a layout that prints.

Every figure comes from the KPI rollups (``observatory.kpis``), the same ones behind
``GET /api/v1/kpis``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from observatory.dashboards import kpi_figures as figs
from observatory.dashboards import series
from observatory.dashboards.kpi_figures import to_json as figure_json
from observatory.kpis import queries
from observatory.kpis.compute import ALL, HOUR, floor_to, rate
from observatory.kpis.models import BacklogSample
from observatory.lib.clock import now
from observatory.lib.download import attach, csv_text
from observatory.triage import queries as triage_queries
from observatory.triage import sla

WINDOWS = (7, 30, 90)
DEFAULT_DAYS = 30
#: Share of orders (updates) that should meet their deadline: the service-level objective.
SLO_TARGET = 0.95


@dataclass(frozen=True)
class Filters:
    days: int = DEFAULT_DAYS
    channel: str = ""
    store: str = ""

    @classmethod
    def from_params(cls, params: Any) -> Filters:
        try:
            days = int(params.get("window", DEFAULT_DAYS))
        except (TypeError, ValueError):
            days = DEFAULT_DAYS
        return cls(
            days=days if days in WINDOWS else DEFAULT_DAYS,
            channel=str(params.get("channel", "") or "").strip()[:32],
            store=str(params.get("store", "") or "").strip()[:64],
        )

    def query(self, **extra: Any) -> str:
        params = {"window": self.days, "channel": self.channel, "store": self.store, **extra}
        return urlencode({k: v for k, v in params.items() if v not in ("", None)})

    @property
    def scope(self) -> str:
        """The filters in words: ``web orders at store ST-12``."""
        what = f"{self.channel} orders" if self.channel else "all channels"
        return what + (f" at store {self.store}" if self.store else "")


@dataclass
class Card:
    key: str
    title: str
    question: str
    value: str
    previous: str = ""
    change: float | None = None
    lower_is_better: bool = True
    slo: float | None = None
    slo_words: str = ""
    note: str = ""
    testid: str = ""

    @property
    def trend(self) -> str:
        """``better``, ``worse`` or ``same`` against the previous period."""
        if self.change is None or abs(self.change) < 0.005:
            return "same"
        improved = (self.change < 0) == self.lower_is_better
        return "better" if improved else "worse"

    @property
    def slo_met(self) -> bool | None:
        return None if self.slo is None else self.slo >= SLO_TARGET


def period_start(f: Filters, at: datetime) -> datetime:
    """The start of the period shown: ``f.days`` before the current hour began."""
    return floor_to(at, HOUR) - timedelta(days=f.days)


def _change(current: float | None, previous: float | None) -> float | None:
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def _p95(total: queries.LagTotal) -> float | None:
    return total.quantiles((0.95,))[0]


def _backlog_then(at: datetime, channel: str, store: str) -> int | None:
    """The sampled backlog nearest before ``at`` (None when none was taken)."""
    row = (
        BacklogSample.objects.filter(
            channel=channel or ALL, store=store or ALL, stage=ALL, at__lte=at
        )
        .order_by("-at")
        .values_list("count", flat=True)
        .first()
    )
    return None if row is None else int(row)


def posting_deadlines() -> dict[str, int]:
    """Channel ("" for every other channel) -> the captured -> posted deadline, seconds."""
    return {
        p.channel: p.deadline_s
        for p in triage_queries.policies()
        if (p.transaction_kind, p.from_stage, p.to_stage) == ("order", "captured", "posted")
    }


def cards(f: Filters, at: datetime) -> list[Card]:
    """The headline figures of the window, each against the same length of time before."""
    span = timedelta(days=f.days)
    # periods start on the hour: whole hour and day rollups, no raw rows to read
    since = period_start(f, at)
    prev = since - span
    ch, st = f.channel or None, f.store or None
    cur = queries.order_total(since, at, channel=ch, store=st, at=at)
    old = queries.order_total(prev, since, channel=ch, store=st, at=at)
    hops_now = queries.hop_counts(since, at, channel=ch, store=st, at=at)
    hops_then = queries.hop_counts(prev, since, channel=ch, store=st, at=at)
    backlog_now = queries.backlog(None, at, channel=ch, store=st, at=at)["total"]
    backlog_then = _backlog_then(since, f.channel, f.store)
    _, fix_now = queries.exceptions_resolution(since, at, channel=ch, store=st)
    _, fix_then = queries.exceptions_resolution(prev, since, channel=ch, store=st)

    def lag_card(key: str, title: str, question: str, c: Any, o: Any, deadline: str) -> Card:
        now_v, then_v = _p95(c), _p95(o)
        share = rate(c.within, c.count)
        return Card(
            key,
            title,
            question,
            figs.human_s(now_v),
            figs.human_s(then_v),
            _change(now_v, then_v),
            slo=share,
            slo_words=(
                f"{share:.1%} within {deadline} (target {SLO_TARGET:.0%})"
                if share is not None
                else "nothing measured yet"
            ),
            note=f"slowest 5 % of {c.count:,}; typical {figs.human_s(c.quantiles((0.5,))[0])}",
            testid=key,
        )

    # time to the ERP per channel: each against its own deadline (web 1 min, a POS batch
    # 1 h), so the figure and its "within" line speak of the same orders
    deadlines = posting_deadlines()
    channels = [f.channel] if f.channel else sorted(c for c in deadlines if c)
    posting_cards = []
    for channel in channels or [""]:
        if channel and not f.channel:
            c_now = queries.order_total(since, at, channel=channel, store=st, at=at)
            c_then = queries.order_total(prev, since, channel=channel, store=st, at=at)
        else:
            c_now, c_then = cur, old
        limit = deadlines.get(channel, deadlines.get(""))
        card = lag_card(
            "acceptance_to_posting",
            f"Time from order to ERP: {channel} orders" if channel else "Time from order to ERP",
            "How long until the ERP had the order",
            c_now.a2p,
            c_then.a2p,
            sla.human(limit) if limit else "the deadline",
        )
        if channel:
            card.key = f"acceptance_to_posting:{channel}"
            card.testid = f"acceptance_to_posting-{channel}"
        posting_cards.append(card)

    dup_now = rate(hops_now.duplicates, hops_now.hops + hops_now.duplicates)
    dup_then = rate(hops_then.duplicates, hops_then.hops + hops_then.duplicates)
    exc_now = rate(cur.with_exception, cur.orders)
    exc_then = rate(old.with_exception, old.orders)
    return [
        Card(
            "orders",
            "Orders",
            "How many orders came in",
            f"{cur.orders:,}",
            f"{old.orders:,}",
            _change(cur.orders, old.orders),
            lower_is_better=False,
            note=f"{cur.inv_updates:,} stock updates too",
            testid="orders",
        ),
        *posting_cards,
        lag_card(
            "fulfillment_propagation",
            "Shipment shown in Shopify",
            "How long until customers saw their shipment",
            cur.ful,
            old.ful,
            "15 min",
        ),
        lag_card(
            "inventory_sync_lag",
            "Stock update delay",
            "How long until a stock change reached the shop",
            cur.inv,
            old.inv,
            "5 min",
        ),
        Card(
            "exception_rate",
            "Orders with a problem",
            "Share of orders with a failed step or an exception",
            _pct(exc_now),
            _pct(exc_then),
            _change(exc_now, exc_then),
            note=f"{cur.with_exception:,} of {cur.orders:,} orders",
            testid="exception_rate",
        ),
        Card(
            "duplicate_rate",
            "Repeated messages",
            "Share of messages that arrived more than once",
            _pct(dup_now),
            _pct(dup_then),
            _change(dup_now, dup_then),
            note=f"{hops_now.duplicates:,} repeats; {cur.posted_twice:,} orders posted twice",
            testid="duplicate_rate",
        ),
        Card(
            "reconciliation_backlog",
            "Orders past their deadline",
            "Waiting right now for a step that is overdue",
            f"{backlog_now:,}",
            "" if backlog_then is None else f"{backlog_then:,}",
            _change(backlog_now, backlog_then),
            note="now; compared with the start of the period",
            testid="backlog",
        ),
        Card(
            "resolution_time",
            "Time to fix",
            "From an exception opening to its resolution, on average",
            figs.human_s(fix_now),
            figs.human_s(fix_then),
            _change(fix_now, fix_then),
            note="exceptions opened in the period and resolved",
            testid="resolution",
        ),
    ]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


# --- charts -----------------------------------------------------------------------------------


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


def _chart_builders(f: Filters, at: datetime) -> dict[str, Callable[[], Chart]]:
    ch, st = f.channel or None, f.store or None
    memo: dict[str, Any] = {}

    def a2p90() -> dict[str, list[dict[str, Any]]]:
        if "a2p" not in memo:
            memo["a2p"] = series.daily_a2p_by_channel(90, at, channel=ch, store=st)
        got: dict[str, list[dict[str, Any]]] = memo["a2p"]
        return got

    def posting(days: int) -> Chart:
        data = {c: rows[-days:] for c, rows in a2p90().items()}
        return Chart(
            f"posting-{days}",
            f"Time from order to ERP, last {days} days",
            "Per day and channel: the typical order (dotted) and the slowest 5 % (solid).",
            figs.posting_times(data),
            _a2p_rows(a2p90(), days),
            ("day", "channel", "orders_posted", "p50_s", "p95_s"),
            empty=not any(r["count"] for rows in data.values() for r in rows),
        )

    def exceptions() -> Chart:
        rows = series.daily_orders(f.days, at, channel=ch, store=st)
        return Chart(
            "exceptions",
            "Orders with a problem",
            "Per day: the share of orders with a failed step or an exception (line), "
            "over the number of orders (bars).",
            figs.daily_rate(rows, count="orders"),
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
        total, rows = series.inventory_lag(period_start(f, at), at, channel=ch, store=st)
        return Chart(
            "inventory",
            "How long stock updates took to reach the shop",
            f"{total.inv.count:,} stock updates, by delay; red: past the 5 minute deadline.",
            figs.distribution(rows, deadline_bin=4),
            rows,
            ("bin", "count"),
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
        "posting-30": lambda: posting(30),
        "posting-90": lambda: posting(90),
        "exceptions": exceptions,
        "duplicates": duplicates,
        "backlog": backlog,
        "inventory": inventory,
        "resolution": resolution,
    }


CHART_KEYS = (
    "posting-30",
    "posting-90",
    "exceptions",
    "duplicates",
    "backlog",
    "inventory",
    "resolution",
)


@require_GET
@login_required
def page(request: HttpRequest) -> HttpResponse:
    """KPI cards and trend charts, filtered by window, channel and store."""
    f = Filters.from_params(request.GET)
    at = now()
    builders = _chart_builders(f, at)
    charts = []
    for key in CHART_KEYS:
        chart = builders[key]()
        chart.figure = figure_json(chart.figure, {"displayModeBar": False})
        charts.append(chart)
    channels, stores = series.dimension_values(90, at)
    return render(
        request,
        "dashboards/executive.html",
        {
            "f": f,
            "at": at,
            "windows": WINDOWS,
            "channels": channels,
            "stores": stores,
            "cards": cards(f, at),
            "charts": charts,
            "slo_target": SLO_TARGET,
        },
    )


@require_GET
@login_required
def csv_download(request: HttpRequest, chart: str) -> HttpResponse:
    """The data behind one chart (or the cards: ``summary``), as CSV."""
    f = Filters.from_params(request.GET)
    at = now()
    if chart == "summary":
        rows = [
            {
                "kpi": c.key,
                "title": c.title,
                "value": c.value,
                "previous_period": c.previous,
                "change": "" if c.change is None else f"{c.change:.4f}",
                "within_deadline": "" if c.slo is None else f"{c.slo:.4f}",
            }
            for c in cards(f, at)
        ]
        body = csv_text(
            ("kpi", "title", "value", "previous_period", "change", "within_deadline"), rows
        )
    else:
        builder = _chart_builders(f, at).get(chart)
        if builder is None:
            raise Http404("no such chart")
        built = builder()
        body = csv_text(built.columns, built.rows)
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    scope = "-".join(p for p in (f.channel, f.store) if p) or "all"
    return attach(response, f"observatory-{chart}-{f.days}d-{scope}-{at:%Y%m%d}.csv")
