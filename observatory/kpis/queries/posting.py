"""``posting_completeness`` (docs/kpis.md): of the orders captured in a window, those the
ERP posted before the end of their business day, and what they were worth per currency.

The figures live in the orders rollup with the other order KPIs: the fill gives each
captured order its verdict (``business_days.BusinessDays.verdict``: posted in its day or
not, and when its day ends), each rollup row sums them per currency and day end
(``compute.Posting``), and a window's answer merges its rows, and the raw facts of its
edges, and judges the orders not posted whose day has ended by ``at``
(``compute.posting_figures``). A window of 90 days reads 90 day rows, not a million orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from observatory.kpis import compute
from observatory.kpis.queries.totals import order_total


def posting_completeness(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    at: datetime,
) -> dict[str, Any]:
    """``orders``: orders captured in ``[since, until)`` that were posted before the end
    of their business day, or whose business day ended by ``at`` (an unposted order of a
    day still running is not judged yet); ``posted``: of those, the ones posted by then;
    ``by_currency``: currency -> ``value`` (the judged orders' amounts) and
    ``value_posted`` (the posted ones'), never summed across currencies.

    The amount is the transaction's own (``Transaction.amount``: the first amount its hops
    carried, the capture's whenever the capture carries one), the figure ``value_at_risk``
    and the exception queue show too."""
    total = order_total(since, until, channel=channel, store=store, at=at)
    return compute.posting_figures(total.posting, at)
