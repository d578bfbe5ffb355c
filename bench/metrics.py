"""``GET /metrics`` at scale on PostgreSQL (docs/metrics.md; docs/performance.md,
"Prometheus metrics").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        .venv/bin/python bench/metrics.py [--orders 1000000] [--days 90] [--requests 200]

Creates (or recreates) the scratch database ``observatory_bench_metrics`` on the server of
``DATABASE_URL`` (``--db`` to change it), migrates it and loads ``--orders`` orders over the
last ``--days`` days with bench/kpis.py's generator (hops of six systems, transactions with
their stage times, repeated deliveries, exceptions for failed postings and for orders never
posted, inventory updates), then runs the first full KPI fill, as bench/kpis.py does. On
top: the reporting streams of the systems and of ``--stores`` POS stores, ``--waiting``
hops queued for the stitcher (a worker a few seconds behind), and one alert evaluation.

Then ``GET /metrics`` through Django's request handling in-process with a read API token,
``--requests`` times after a first one: p50 / p95 / p99 server time and this process's CPU
per scrape (on a machine shared with other work, the CPU is the steadier figure), the SQL statements a
scrape runs, the answer's size and series, and each part of the collector on its own; and
the plans of the queries over the big tables (exceptions, late stages), which must read
their indexes only. ``--reuse`` measures the database loaded before.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kpis import Gen, load  # noqa: E402
from scratch import open_scratch  # noqa: E402

SYSTEMS = ("shopify", "middleware", "erp", "wms", "carrier", "pos")


def pcts(ms: list[float]) -> str:
    ordered = sorted(ms)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]

    return (
        f"p50 {statistics.median(ordered):6.1f} ms   p95 {q(0.95):6.1f} ms   "
        f"p99 {q(0.99):6.1f} ms   (n={len(ms)})"
    )


def extras(stores: int, waiting: int) -> None:
    """Streams, a stitcher queue and an alert evaluation over the loaded data."""
    from django.db import connection

    from observatory.alerts.actions import do_evaluate
    from observatory.hops.models import Hop, Stream, Waiting
    from observatory.lib.clock import now

    at = now()
    rows = [
        Stream(system=s, reported_up_to=at - timedelta(seconds=30), last_arrival_at=at)
        for s in SYSTEMS
        if s != "pos"
    ]
    rows += [
        Stream(
            system="pos",
            store_id=f"ST-{i:03d}",
            reported_up_to=at - timedelta(seconds=60 + i),
            last_arrival_at=at - timedelta(seconds=i),
        )
        for i in range(stores)
    ]
    Stream.objects.all().delete()
    Stream.objects.bulk_create(rows)
    Waiting.objects.all().delete()
    last = list(Hop.objects.order_by("-id").values_list("id", flat=True)[:waiting])
    Waiting.objects.bulk_create([Waiting(hop_id=i) for i in last], batch_size=5000)
    result = do_evaluate()
    print(f"streams: {len(rows):,}; stitcher queue: {len(last):,} hops; alerts: {result.firing}")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def plans() -> None:
    """The plans of the scrape's queries over the tables that grow with the orders."""
    from django.db import connection
    from django.db.models import Count, Min

    from observatory.kpis.queries.backlog import _open_stages
    from observatory.lib.clock import now
    from observatory.triage.models import UNRESOLVED, Issue

    exceptions = (
        Issue.objects.filter(state__in=UNRESOLVED)
        .values("kind", "system", "owner")
        .annotate(n=Count("*"), first=Min("opened_at"))
        .order_by("kind", "system", "owner")
    )
    at = now()
    backlog = (
        _open_stages(None, at, channel=None, store=None, system=None)
        .values("stage")
        .annotate(n=Count("stage"))
        .order_by()
    )
    for label, qs in (("exceptions", exceptions), ("reconciliation backlog", backlog)):
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            lines = [r[0] for r in cur.fetchall()]
        scans = [ln.strip() for ln in lines if "Scan" in ln]
        took = next((ln.strip() for ln in lines if ln.startswith("Execution Time")), "")
        print(f"  {label}: {'; '.join(scans)}; {took}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--waiting", type=int, default=2000)
    parser.add_argument("--db", default="observatory_bench_metrics")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--reuse", action="store_true", help="measure the loaded database")
    args = parser.parse_args()

    open_scratch(args.db, reuse=args.reuse)
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from observatory.access.actions import do_create_api_token
    from observatory.dashboards.metrics import DatabaseCollector
    from observatory.kpis.actions import do_fill_rollups
    from observatory.kpis.models import HopRollup, OpenStage, OrderRollup
    from observatory.lib.clock import now
    from observatory.triage.models import UNRESOLVED, Issue

    call_command("migrate", verbosity=0)
    if not args.reuse:
        t = time.perf_counter()
        counts = load(Gen(args.seed, now(), args.days, args.orders), args.orders)
        print(
            f"loaded {counts['tx']:,} transactions, {counts['hops']:,} hops, "
            f"{counts['issues']:,} exceptions by COPY in {time.perf_counter() - t:.0f} s"
        )
        t = time.perf_counter()
        do_fill_rollups(full=True)
        print(f"first full fill in {time.perf_counter() - t:.0f} s")
        extras(args.stores, args.waiting)
    print(
        f"tables: {OrderRollup.objects.count():,} order rollup rows, "
        f"{HopRollup.objects.count():,} hop rollup rows, "
        f"{OpenStage.objects.filter(closed_at__isnull=True).count():,} open late stages, "
        f"{Issue.objects.filter(state__in=UNRESOLVED).count():,} unresolved exceptions"
    )

    _, token = do_create_api_token(f"bench-{time.time()}", "read")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="203.0.113.9")
    t = time.perf_counter()
    first = api.get("/metrics")
    cold = (time.perf_counter() - t) * 1000
    assert first.status_code == 200, first.content
    body = first.content.decode()
    series = sum(1 for ln in body.splitlines() if ln and not ln.startswith("#"))
    with CaptureQueriesContext(connection) as queries:
        api.get("/metrics")
    print(
        f"\nGET /metrics: {len(body):,} bytes, {series:,} series, "
        f"{len(queries.captured_queries)} SQL statements a scrape; first {cold:.1f} ms"
    )
    ms, cpu = [], []
    for _ in range(args.requests):
        reset_queries()
        t, c = time.perf_counter(), time.process_time()
        response = api.get("/metrics")
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        assert response.status_code == 200
    print(f"  server time  {pcts(ms)}")
    print(f"  its CPU      {pcts(cpu)}   (this process; the rest is the database and waiting)")

    collector = DatabaseCollector()
    at = now()
    parts: list[tuple[str, Any]] = [
        ("hops and duplicates", collector._hops),
        ("latency histograms", lambda: collector._latencies(at)),
        ("exceptions", lambda: collector._exceptions(at)),
        ("reconciliation backlog", lambda: collector._backlog(at)),
        ("watermarks", lambda: collector._watermarks(at)),
        ("alerts", collector._alerts),
        ("stitcher queue", lambda: collector._stitcher(at)),
    ]
    print("\neach part of the collector alone:")
    for label, part in parts:
        times = []
        for _ in range(max(10, args.requests // 5)):
            t = time.perf_counter()
            list(part())
            times.append((time.perf_counter() - t) * 1000)
        print(f"  {label:<24} {pcts(times)}")
    print("\nplans:")
    plans()


if __name__ == "__main__":
    main()
