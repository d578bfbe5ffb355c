"""The business outcomes on ``/executive/`` (docs/kpis.md): what the problems are worth,
whether orders reached the books the day they were taken, whether cancellations and
refunds worked, how often shipments were rerouted and whether
the channels show the stock the warehouse holds; each figure with its definition in
words (the registry's), against the period before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from observatory.dashboards.executive_charts import period_start
from observatory.kpis import compute, registry
from observatory.kpis.queries.cancellations import cancellation_success
from observatory.kpis.queries.exceptions import value_at_risk
from observatory.kpis.queries.inventory import inventory_drift
from observatory.kpis.queries.refunds import refund_reconciliation
from observatory.kpis.queries.shipments import reroute_rate

if TYPE_CHECKING:
    from observatory.dashboards.executive import Filters
    from observatory.dashboards.slo import Totals

#: the business KPIs shown, in order
KPIS = (
    "value_at_risk",
    "posting_completeness",
    "cancellation_success",
    "refund_reconciliation",
    "reroute_rate",
    "inventory_drift",
)


@dataclass
class Outcome:
    key: str
    title: str
    #: the KPI's definition in words (``kpis.registry``)
    definition: str
    value: str
    previous: str
    change: float | None
    lower_is_better: bool
    note: str
    #: the headline as a number (CSV), in ``unit``: ``count`` or ``ratio``
    raw: float | None
    raw_previous: float | None
    unit: str
    #: no deadline share of its own (the summary CSV's column stays empty)
    slo: float | None = None

    @property
    def testid(self) -> str:
        return self.key

    @property
    def trend(self) -> str:
        if self.change is None or abs(self.change) < 0.005:
            return "same"
        return "better" if (self.change < 0) == self.lower_is_better else "worse"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _money(by_currency: dict[str, float]) -> str:
    """``USD 12,340; EUR 500``: never a sum across currencies."""
    return "; ".join(f"{c} {v:,.0f}" for c, v in sorted(by_currency.items())) or "nothing"


def _change(now_v: float | None, then_v: float | None) -> float | None:
    if now_v is None or then_v is None or then_v == 0:
        return None
    return (now_v - then_v) / abs(then_v)


def _period(
    f: Filters, since: datetime, until: datetime, at: datetime, totals: Totals
) -> dict[str, Any]:
    ch, st = f.channel or None, f.store or None
    return {
        "value_at_risk": value_at_risk(until, channel=ch, store=st, at=at),
        # ``posting_completeness`` from the page's order totals (the cards read them too)
        "posting_completeness": compute.posting_figures(totals(since, until, ch, st).posting, at),
        "cancellation_success": cancellation_success(since, until, channel=ch, store=st),
        "refund_reconciliation": refund_reconciliation(since, until, channel=ch, store=st, at=at),
        "reroute_rate": reroute_rate(since, until, channel=ch, store=st),
        "inventory_drift": inventory_drift(since, until, store=st),
    }


_NOTES: dict[str, Callable[[dict[str, Any]], str]] = {
    "value_at_risk": lambda v: f"{v['orders']:,} orders with an open exception",
    "posting_completeness": lambda v: (
        f"{v['posted']:,} of {v['orders']:,} orders; posted "
        + _money({c: m["value_posted"] for c, m in v["by_currency"].items()})
    ),
    "cancellation_success": lambda v: f"{v['succeeded']:,} of {v['requested']:,} cancellations",
    "refund_reconciliation": lambda v: f"{v['settled_within_sla']:,} of {v['refunds']:,} refunds",
    "reroute_rate": lambda v: f"{v['rerouted']:,} of {v['shipments']:,} shipments",
    "inventory_drift": lambda v: (
        f"{v['off']:,} of {v['pairs']:,} sku-locations, {v['units_off']:,} units off"
    ),
}


def outcomes(f: Filters, at: datetime, totals: Totals) -> list[Outcome]:
    """The business KPIs of the period, each against the period before (one small
    indexed statement per KPI and period; posting completeness from ``totals``, the
    page's remembered order totals)."""
    since = period_start(f, at)
    prev = since - (at - since)
    now_v, then_v = _period(f, since, at, at, totals), _period(f, prev, since, at, totals)
    out = []
    for key in KPIS:
        kpi = registry.get(key)
        cur, old = now_v[key], then_v[key]
        if key == "value_at_risk":
            value, previous = _money(cur["by_currency"]), _money(old["by_currency"])
            raw, raw_prev, unit = float(cur["orders"]), float(old["orders"]), "count"
        else:
            raw, raw_prev, unit = cur["rate"], old["rate"], "ratio"
            value, previous = _pct(raw), _pct(raw_prev)
        out.append(
            Outcome(
                key=key,
                title=kpi.title,
                definition=kpi.meaning,
                value=value,
                previous=previous,
                change=_change(raw, raw_prev),
                lower_is_better=kpi.lower_is_better,
                note=_NOTES[key](cur),
                raw=raw,
                raw_previous=raw_prev,
                unit=unit,
            )
        )
    return out
