"""``GET /metrics``: the Prometheus text format, for Prometheus, Grafana and on-call tools
(docs/metrics.md).

The server runs several processes (web workers, the Celery worker), so no figure is a
counter kept in one process's memory: every scrape reads the database, with a fixed number
of set-based aggregate queries over tables that stay small however many orders there are
(the KPI day rollups, the covering index of the open late stages, the partial index of
unresolved exceptions, the stitcher's queue, the reporting streams). Only the ``process_*``
figures are the answering process's own (``prometheus_client``'s process collector).

Labels are bounded: systems, channels, stages, kinds, owners, rule names and severities,
never an order, a key or a store.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Min, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from observatory.access.queries import Denied, api_token
from observatory.alerts.models import FIRING, Alert, Rule
from observatory.hops.models import DroppedLogRecords, Hop, Waiting
from observatory.hops.queries import system_marks
from observatory.kpis.compute import ALL, DAY, floor_to
from observatory.kpis.models import HOPS, ORDERS, HopRollup, OrderRollup, RetiredTotal
from observatory.kpis.queries.backlog import backlog
from observatory.lib import sketch
from observatory.lib.clock import now
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import UNRESOLVED, Issue

#: Histogram bounds (seconds) every latency histogram has; the SLA deadlines of the
#: policies ending at its stage are added, so "within the SLA" is a bucket of its own.
LADDER_S: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 14400, 86400)

#: Histograms: metric name, help, the day rollup's count and sketch columns, and the stage
#: of the SLA policies whose deadlines become buckets.
HISTOGRAMS = (
    (
        "observatory_acceptance_to_posting_seconds",
        "Time from a channel accepting an order (captured) to the ERP holding it (posted), "
        "per order, by the channel of the order; orders counted at their captured time.",
        "a2p_count",
        "a2p_sketch",
        "posted",
    ),
    (
        "observatory_inventory_sync_lag_seconds",
        "Time from a stock change at the source of truth (inventory_adjusted) to a selling "
        "channel showing it (inventory_published), per inventory update, by channel.",
        "inv_count",
        "inv_sketch",
        "inventory_published",
    ),
)


def buckets_for(stage: str, policies: Sequence[sla.Policy]) -> list[float]:
    """The ladder and every SLA deadline of a policy ending at ``stage``."""
    deadlines = {float(p.deadline_s) for p in policies if p.to_stage == stage}
    return sorted(set(LADDER_S) | {d for d in deadlines if d > 0})


def histogram_buckets(
    merged: sketch.Sketch, bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs up to ``+Inf`` and the sum of the values, from a
    merged sketch: a bound falls inside one bin, so its count is within the sketch's
    relative accuracy (0.5 %) of the exact one; the sum adds each bin's representative."""
    out = [(_le(bound), float(merged.count_at_most(bound))) for bound in bounds]
    out.append(("+Inf", float(merged.count)))
    return out, merged.total()


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


#: (sketch column, channel) -> the (id, digest) of the settled day rows merged, and their
#: merged sketch (``DatabaseCollector._latencies``)
_SETTLED: dict[tuple[str, str], tuple[frozenset[tuple[int, int]], sketch.Sketch]] = {}


def _settled(
    days: QuerySet[OrderRollup], blob: str, channel: str, rows: frozenset[tuple[int, int]]
) -> sketch.Sketch:
    """The merged ``blob`` sketches of a channel's settled day rows ``rows``, read and
    merged again only when those rows changed since the last scrape of this process."""
    cached = _SETTLED.get((blob, channel))
    if cached is None or cached[0] != rows:
        read = days.filter(id__in=[i for i, _ in rows]).values_list(blob, flat=True)
        cached = (rows, sketch.merge_encoded(read))
        _SETTLED[(blob, channel)] = cached
    return cached[1]


class DatabaseCollector(Collector):
    """Every Observatory figure, read from the database at collection time."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at

    def collect(self) -> Iterator[Metric]:
        at = self.at or now()
        yield from self._hops()
        yield from self._latencies(at)
        yield from self._exceptions(at)
        yield from self._backlog(at)
        yield from self._watermarks(at)
        yield from self._alerts()
        yield from self._stitcher(at)

    # --- hops: day rollups of every channel and store (a handful of rows a day) -----------
    def _hops(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "observatory_hops_received",
            "Hops stored and stitched, by system and outcome (ok or error), counted at their "
            "business time by the KPI fill: from the hop rollups.",
            labels=["system", "outcome"],
        )
        duplicates = CounterMetricFamily(
            "observatory_duplicate_deliveries",
            "Re-deliveries of a hop already stored (same span, event or Shopify event id), "
            "by sending system.",
            labels=["system"],
        )
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        rows = (
            HopRollup.objects.filter(resolution=DAY, channel=ALL, store=ALL)
            .values("system")
            .annotate(n=Sum("hops"), e=Sum("errors"), d=Sum("duplicates"))
            .order_by()
            .values_list("system", "n", "e", "d")
        )
        # plus what the days retention removed had counted: the counters never go down
        retired = RetiredTotal.objects.filter(family=HOPS).values_list(
            "key", "hops", "errors", "duplicates"
        )
        for system, hops, errors, dups in [*rows, *retired]:
            t = totals[system]
            t[0], t[1], t[2] = t[0] + hops, t[1] + errors, t[2] + dups
        for system, (hops, errors, dups) in sorted(totals.items()):
            received.add_metric([system, "ok"], float(hops - errors))
            received.add_metric([system, "error"], float(errors))
            duplicates.add_metric([system], float(dups))
        yield received
        yield duplicates
        dropped = CounterMetricFamily(
            "observatory_log_records_dropped",
            "OTLP log records that carried no business key, so were counted and never "
            "stored, by sending system (docs/ingest.md, OTLP/HTTP logs).",
            labels=["system"],
        )
        for system, count in DroppedLogRecords.objects.values_list("system", "count"):
            dropped.add_metric([system], float(count))
        yield dropped

    # --- latencies: the day rollups' sketches of each channel, merged ---------------------
    def _latencies(self, at: datetime) -> Iterator[Metric]:
        # the days before yesterday come merged from this process's memory, under the
        # (id, digest) of their rows (a rebuilt row has a new id, a changed one a new
        # digest): each scrape reads the sketches of the last two days only
        settled_before = floor_to(at, DAY) - timedelta(days=1)
        days = OrderRollup.objects.filter(resolution=DAY, store=ALL).exclude(channel=ALL)
        counts = [count for _, _, count, _, _ in HISTOGRAMS]
        blobs = [blob for _, _, _, blob, _ in HISTOGRAMS]
        meta = list(days.values("id", "digest", "channel", "bucket", *counts))
        recent = {
            row["id"]: row
            for row in days.filter(
                id__in=[m["id"] for m in meta if m["bucket"] >= settled_before]
            ).values("id", *blobs)
        }
        retired = list(
            RetiredTotal.objects.filter(family=ORDERS).values(*counts, *blobs, channel=F("key"))
        )
        policies = triage_queries.policies() if meta or retired else []
        for name, doc, count, blob, stage in HISTOGRAMS:
            family = HistogramMetricFamily(name, doc, labels=["channel"])
            bounds = buckets_for(stage, policies)
            parts: dict[str, list[sketch.Sketch]] = defaultdict(list)
            old: dict[str, set[tuple[int, int]]] = defaultdict(set)
            for m in meta:
                if not m[count]:
                    continue
                if m["bucket"] < settled_before:
                    old[m["channel"]].add((m["id"], m["digest"]))
                else:
                    parts[m["channel"]].append(sketch.Sketch.decode(recent[m["id"]][blob]))
            for row in retired:
                if row[count]:
                    parts[row["channel"]].append(sketch.Sketch.decode(row[blob]))
            for channel, rows in old.items():
                parts[channel].append(_settled(days, blob, channel, frozenset(rows)))
            for channel, sketches in sorted(parts.items()):
                buckets, total = histogram_buckets(sketch.merge(sketches), bounds)
                family.add_metric([channel], buckets, total)
            yield family

    # --- exceptions: a partial index of the unresolved ones -------------------------------
    def _exceptions(self, at: datetime) -> Iterator[Metric]:
        labels = ["kind", "system", "owner"]
        count = GaugeMetricFamily(
            "observatory_exceptions_open",
            "Unresolved exceptions (open or acknowledged), by kind, system and owning team.",
            labels=labels,
        )
        oldest = GaugeMetricFamily(
            "observatory_exceptions_oldest_age_seconds",
            "Age of the oldest unresolved exception, counted from when it became a problem "
            "in business time, by kind, system and owning team.",
            labels=labels,
        )
        rows = (
            Issue.objects.filter(state__in=UNRESOLVED)
            .values("kind", "system", "owner")
            .annotate(n=Count("*"), first=Min("opened_at"))
            .order_by("kind", "system", "owner")
            .values_list("kind", "system", "owner", "n", "first")
        )
        for kind, system, owner, n, first in rows:
            count.add_metric([kind, system, owner], float(n))
            oldest.add_metric([kind, system, owner], max(0.0, (at - first).total_seconds()))
        yield count
        yield oldest

    # --- the reconciliation backlog now: the covering index of the open late stages -------
    def _backlog(self, at: datetime) -> Iterator[Metric]:
        figures = backlog(None, at, at=at)
        by_stage = GaugeMetricFamily(
            "observatory_reconciliation_backlog",
            "Transactions past a stage deadline and still missing that stage, by the missing "
            "stage (the reconciliation_backlog KPI now).",
            labels=["stage"],
        )
        for stage, n in figures["by_stage"].items():
            by_stage.add_metric([stage], float(n))
        yield by_stage
        yield GaugeMetricFamily(
            "observatory_reconciliation_backlog_transactions",
            "Transactions past any stage deadline and still missing the stage.",
            value=float(figures["total"]),
        )

    # --- watermarks: one row per reporting stream -----------------------------------------
    def _watermarks(self, at: datetime) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "observatory_watermark_lag_seconds",
            "How far each system's watermark (the business time its telemetry is complete up "
            "to: docs/watermarks.md) is behind now.",
            labels=["system"],
        )
        for system, mark in sorted(system_marks(at).items()):
            behind = mark.behind_s(at)
            if behind is not None:
                lag.add_metric([system], max(0.0, behind))
        yield lag

    # --- alerts: the active rules, and the firing alerts by rule --------------------------
    def _alerts(self) -> Iterator[Metric]:
        firing = GaugeMetricFamily(
            "observatory_alerts_firing",
            "Alerts firing now, by rule and severity (0 for a rule with none).",
            labels=["rule", "severity"],
        )
        counts = dict(
            Alert.objects.filter(state=FIRING)
            .values("rule_id")
            .annotate(n=Count("*"))
            .values_list("rule_id", "n")
        )
        for rule_id, name, severity in Rule.objects.filter(
            Q(active=True) | Q(id__in=list(counts))
        ).values_list("id", "name", "severity"):
            firing.add_metric([name, severity], float(counts.get(rule_id, 0)))
        yield firing

    # --- the stitcher's queue -------------------------------------------------------------
    def _stitcher(self, at: datetime) -> Iterator[Metric]:
        first = Waiting.objects.aggregate(first=Min("hop_id"))["first"]
        size = Waiting.objects.count() if first is not None else 0
        age = 0.0
        if first is not None:
            received = Hop.objects.filter(id=first).values_list("received_at", flat=True).first()
            if received is not None:
                age = max(0.0, (at - received).total_seconds())
        yield GaugeMetricFamily(
            "observatory_stitcher_queue_hops",
            "Hops stored and not yet taken by the stitcher.",
            value=float(size),
        )
        yield GaugeMetricFamily(
            "observatory_stitcher_queue_oldest_age_seconds",
            "How long the longest-waiting hop has waited for the stitcher (0: none waits).",
            value=age,
        )


def registry() -> CollectorRegistry:
    """A registry of the database figures and this process's own."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector())
    ProcessCollector(registry=reg)
    return reg


# --- the endpoint -------------------------------------------------------------------------


def allowed_address(address: str) -> bool:
    """Whether ``address`` is in ``settings.METRICS_ALLOWED_IPS`` (addresses or CIDRs)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def refusal(request: HttpRequest) -> Denied | None:
    """Why the request may not read the metrics, or None: a read API token (bearer), a
    signed-in session, or, without either, a client address in METRICS_ALLOWED_IPS."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, plain = header.partition(" ")
        if scheme.lower() != "bearer" or not plain.strip():
            return Denied(401, "Authorization must be 'Bearer <API token>'")
        row = api_token(plain.strip())
        return row if isinstance(row, Denied) else None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return None
    if allowed_address(request.META.get("REMOTE_ADDR", "")):
        return None
    return Denied(
        401,
        "GET /metrics needs 'Authorization: Bearer <API token>' (a read token), or a client "
        "address in METRICS_ALLOWED_IPS",
    )


@require_safe
def endpoint(request: HttpRequest) -> HttpResponse:
    denied = refusal(request)
    if denied is not None:
        response = HttpResponse(
            denied.message + "\n", status=denied.status, content_type="text/plain"
        )
        if denied.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="observatory"'
        return response
    # a database outage is a 503 with Retry-After (lib.outage's middleware)
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
