"""Reads for KPIs: ``kpi_values`` (the API and the alert rules), chart series, and the
source readers the fill shares.

A window ``[since, until)`` is cut (``compute.plan_window``) into whole days, hours and
minutes answered by rollup rows, and sub-bucket edges: seconds at either end read straight
from the source rows, and edges in hours older than the minute rollups from that hour's
facts, read once per process and kept under the hour rows' ids and digests
(``raw_facts``). So any window gives the same figures as a recount (``bruteforce.py``)
without a scan of 90 days of hops. The snapshot KPIs are small indexed queries that never
look up every transaction: the backlog, now or at the end of a past window, from the late
stages the fill keeps (``OpenStage``); exceptions of a channel or store through the
channel and store the fill keeps with each (``IssueSeen``).

The parts:

* ``readers``: the source readers (order and hop facts) and SLA deadlines;
* ``totals``: rollup totals over a window, with its raw edges;
* ``backlog``: the reconciliation backlog, and the per-policy queries behind it;
* ``exceptions``: exception aging, exception and alert resolution times;
* ``assembly``: every KPI of the registry from those (``kpi_values``).
"""

from observatory.kpis.queries.assembly import duplicates_by_source, kpi_values
from observatory.kpis.queries.backlog import (
    anchor_expr,
    backlog,
    backlog_members,
    judged_by,
)
from observatory.kpis.queries.exceptions import (
    exception_aging,
    exceptions_resolution,
    issues,
    resolution_time,
    value_at_risk,
)
from observatory.kpis.queries.readers import (
    LIVE_SLACK,
    Deadlines,
    hop_facts,
    minutes_from,
    order_facts,
    ranges_q,
)
from observatory.kpis.queries.totals import (
    HopTotal,
    LagTotal,
    OrderTotal,
    hop_counts,
    hop_totals,
    order_total,
    sketch_of,
)

__all__ = [
    "LIVE_SLACK",
    "Deadlines",
    "HopTotal",
    "LagTotal",
    "OrderTotal",
    "anchor_expr",
    "backlog",
    "backlog_members",
    "duplicates_by_source",
    "exception_aging",
    "exceptions_resolution",
    "hop_counts",
    "hop_facts",
    "hop_totals",
    "issues",
    "judged_by",
    "kpi_values",
    "minutes_from",
    "order_facts",
    "order_total",
    "ranges_q",
    "resolution_time",
    "sketch_of",
    "value_at_risk",
]
