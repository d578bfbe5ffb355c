"""KPI answers from rollups against the same figures computed straight from the hops
(docs/performance.md, "KPIs").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        .venv/bin/python bench/kpis.py [--orders 1000000] [--days 90] [--requests 30]

Creates (or recreates) the scratch database ``observatory_bench_kpis`` on the server of
``DATABASE_URL`` (``--db`` to change it), migrates it and COPYs ``--orders`` orders spread
over the last ``--days`` days, already stitched: their hops (about six an order: the
channel's capture, validation, the ERP posting with its retries, pick, ship, Shopify's
fulfillment), the transactions with their stage times, the memberships, a percent of
repeated deliveries, exceptions for failed postings and orders never posted, and one
inventory update for every ten orders. Then:

1. times the first full rollup fill (``do_fill_rollups(full=True)``);
2. times ``GET /api/v1/kpis`` over the last 30 and 90 days (with and without a channel
   filter), over 30 days that ended 30 days ago (with and without one) and 30 days that
   ended yesterday, and ``GET /executive/``, each ``--requests`` times after a first one
   through Django's request handling (the server time: middleware, auth, view, template),
   and prints p50 / p95 and the first request's time (window edges in hours older than
   the minute rollups are read from the source once per process, then kept);
3. computes the same figures (acceptance-to-posting p50/p95/p99, hop health per system
   and operation, exception rate, duplicate rate) with direct SQL over the hops for the
   last 30 and 90 days and the 30 days ending 30 days ago, times it, and checks the two
   agree (quantiles within 1 %).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import collect_static, open_scratch  # noqa: E402

CHUNK = 20_000  # orders generated and COPYed at a time
STORES = [f"ST-{i:02d}" for i in range(1, 41)]
#: share of orders per hour of the day (UTC), a retail curve
HOURLY = [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 9, 9, 8, 8, 8, 8, 9, 10, 9, 7, 4, 2]


def lognormal(rnd: random.Random, median_s: float, sigma: float = 0.8) -> float:
    return median_s * math.exp(rnd.gauss(0.0, sigma))


# --- the data ---------------------------------------------------------------------------------

HOP_COLS = (
    "id", "uid", "via", "source", "system", "operation", "start_time", "end_time",
    "duration_ms", "outcome", "status_message", "trace_id", "span_id", "parent_span_id",
    "retry_attempt", "replay", "platform_status", "stage", "channel", "store_id", "currency",
    "received_at", "attributes", "extra",
)  # fmt: skip
STAGES = (
    "captured", "validated", "payment_authorized", "reserved", "posted", "released", "picked",
    "shipped", "delivered", "invoiced", "cancelled", "return_requested", "return_received",
    "refunded", "refund_settled", "inventory_adjusted", "inventory_published",
    "fulfillment_synced",
)  # fmt: skip
TX_COLS = (
    "id", "kind", "channel", "store_id", "current_stage", "currency", "first_hop_at",
    "last_hop_at", "hop_count", "failed_hop_count", "created_at", "updated_at",
    *(f"{s}_at" for s in STAGES),
)  # fmt: skip
ISSUE_COLS = (
    "kind", "state", "transaction_id", "hop_id", "system", "operation", "stage", "owner",
    "summary", "detail", "dedupe_key", "event_at", "opened_at", "acknowledged_by",
    "resolved_at", "resolved_by", "resolution",
)  # fmt: skip


class Gen:
    """Rows for one chunk of orders at a time (ids carried over between chunks)."""

    def __init__(self, seed: int, now: datetime, days: int, orders: int) -> None:
        self.rnd = random.Random(seed)
        self.now = now
        self.start = now - timedelta(days=days)
        self.days = days
        self.hop_id = 0
        self.tx_id = 0
        self.order_no = 0
        # capture times in time order, as a live system receives them: hops then sit in the
        # table roughly in business-time order, as ingest writes them
        self.captures = sorted(self._when() for _ in range(orders))
        self.next_capture = 0

    def _when(self) -> datetime:
        """A capture time in the window, on the hourly curve."""
        rnd = self.rnd
        while True:
            at = self.start + timedelta(seconds=rnd.random() * self.days * 86400)
            if rnd.random() * 10 < HOURLY[at.hour]:
                return at

    def when(self) -> datetime:
        at = self.captures[self.next_capture % len(self.captures)]
        self.next_capture += 1
        return at

    def chunk(self, n: int, inventory_every: int = 10) -> dict[str, list[tuple[Any, ...]]]:
        out: dict[str, list[tuple[Any, ...]]] = {
            "hops": [], "tx": [], "links": [], "dups": [], "issues": []
        }  # fmt: skip
        for _ in range(n):
            self.order_no += 1
            self.order(out)
            if self.order_no % inventory_every == 0:
                self.inventory(out)
        out["hops"].sort(key=lambda row: row[6])  # stored in business-time order
        return out

    def hop(
        self,
        out: dict[str, list[tuple[Any, ...]]],
        tx: int,
        at: datetime,
        system: str,
        op: str,
        stage: str,
        dur_ms: float,
        *,
        channel: str = "",
        store: str = "",
        outcome: str = "ok",
        message: str = "",
        retry: int = 0,
    ) -> int | None:
        if at > self.now:
            return None
        self.hop_id += 1
        got = at + timedelta(milliseconds=dur_ms + 400)
        out["hops"].append(
            (self.hop_id, f"event:bench:{self.hop_id}", "event", "urn:bench", system, op, at,
             at + timedelta(milliseconds=dur_ms), dur_ms, outcome, message, "", "", "", retry,
             False, "", stage, channel, store, "", got, "{}", "{}", got + timedelta(seconds=2))
        )  # fmt: skip
        out["links"].append((tx, self.hop_id))
        return self.hop_id

    def order(self, out: dict[str, list[tuple[Any, ...]]]) -> None:
        rnd = self.rnd
        self.tx_id += 1
        tx = self.tx_id
        u = rnd.random()
        channel = "web" if u < 0.55 else "pos" if u < 0.88 else "marketplace"
        store = rnd.choice(STORES) if channel == "pos" else ""
        t = self.when()
        stages: dict[str, datetime] = {}
        times: list[datetime] = []
        failed = 0

        def add(at: datetime, system: str, op: str, stage: str, dur: float, **kw: Any) -> bool:
            hid = self.hop(out, tx, at, system, op, stage, dur, **kw)
            if hid is None:
                return False
            times.append(at)
            if stage and kw.get("outcome", "ok") == "ok":
                stages.setdefault(stage, at)
                if system == "shopify" and stage == "shipped":
                    stages.setdefault("fulfillment_synced", at)
            if rnd.random() < 0.01:  # a repeated delivery of the same message
                out["dups"].append((hid, at + timedelta(seconds=rnd.uniform(1, 600))))
            return True

        first = {"web": ("shopify", "orders/create"), "pos": ("pos", "sale"),
                 "marketplace": ("marketplace", "order.notification")}[channel]  # fmt: skip
        add(t, *first, "captured", lognormal(rnd, 120, 0.5), channel=channel, store=store)
        if channel == "pos":
            batch = (
                t
                + timedelta(minutes=15 - t.minute % 15)
                + timedelta(seconds=lognormal(rnd, 90, 0.6))
            )
            add(batch, "erp", "netsuite.cashSale.batchCreate", "posted", lognormal(rnd, 1200, 0.5))
        else:
            v = t + timedelta(seconds=lognormal(rnd, 4, 0.7))
            add(v, "middleware", "validate order", "validated", lognormal(rnd, 150, 0.6))
            if rnd.random() < 0.02:  # lost: never posted (a backlog and a stuck exception)
                self._finish(out, tx, channel, store, stages, times, failed, stuck=True)
                return
            p = v + timedelta(seconds=lognormal(rnd, 18, 0.9))
            if rnd.random() < 0.015:  # the first posting fails, the retry posts it
                add(p, "erp", "netsuite.salesOrder.create", "", 30000, outcome="error",
                    message="NetSuite request timed out after 30 s")  # fmt: skip
                failed += 1
                p += timedelta(seconds=lognormal(rnd, 60, 0.5))
                add(p, "erp", "netsuite.salesOrder.create", "posted", lognormal(rnd, 900, 0.5),
                    retry=1)  # fmt: skip
            else:
                add(p, "erp", "netsuite.salesOrder.create", "posted", lognormal(rnd, 900, 0.5))
            k = p + timedelta(seconds=lognormal(rnd, 2 * 3600, 0.7))
            add(k, "wms", "pick_pack", "picked", lognormal(rnd, 2000, 0.6))
            s = k + timedelta(seconds=lognormal(rnd, 3 * 3600, 0.6))
            add(s, "wms", "ship", "shipped", lognormal(rnd, 800, 0.6))
            if channel == "web" and rnd.random() < 0.97:
                f = s + timedelta(seconds=lognormal(rnd, 90, 1.0))
                add(f, "shopify", "fulfillments/create", "shipped", lognormal(rnd, 140, 0.5))
            elif channel == "marketplace":
                f = s + timedelta(seconds=lognormal(rnd, 300, 0.8))
                add(f, "marketplace", "shipment.confirm", "", lognormal(rnd, 300, 0.5))
        self._finish(out, tx, channel, store, stages, times, failed, stuck=False)

    def _finish(
        self,
        out: dict[str, list[tuple[Any, ...]]],
        tx: int,
        channel: str,
        store: str,
        stages: dict[str, datetime],
        times: list[datetime],
        failed: int,
        *,
        stuck: bool,
        kind: str = "order",
    ) -> None:
        if not times:
            return
        current = max(stages, key=lambda s: STAGES.index(s)) if stages else ""
        last = max(times)
        updated = last + timedelta(seconds=3)
        out["tx"].append(
            (tx, kind, channel, store, current, "", min(times), last, len(times), failed,
             min(times), updated, *(stages.get(s) for s in STAGES))
        )  # fmt: skip
        captured = stages.get("captured")
        if failed:
            opened = last
            out["issues"].append(
                ("failed_hop", "resolved", tx, None, "erp", "netsuite.salesOrder.create", "",
                 "finance-systems", "posting failed", "{}", f"failed_hop:{tx}:erp", opened,
                 opened, "", opened + timedelta(minutes=self.rnd.uniform(1, 30)), "system",
                 "a later attempt succeeded")
            )  # fmt: skip
        if stuck and captured is not None and captured < self.now - timedelta(minutes=2):
            opened = captured + timedelta(seconds=65)
            resolved = self.rnd.random() < 0.6
            out["issues"].append(
                ("stuck", "resolved" if resolved else "open", tx, None, "erp", "", "posted",
                 "finance-systems", "not posted within 1 min", "{}", f"stuck:{tx}:posted",
                 opened, opened, "",
                 opened + timedelta(hours=self.rnd.uniform(0.2, 20)) if resolved else None,
                 "olivia" if resolved else "", "resolved by hand" if resolved else "")
            )  # fmt: skip

    def inventory(self, out: dict[str, list[tuple[Any, ...]]]) -> None:
        rnd = self.rnd
        self.tx_id += 1
        tx = self.tx_id
        t = self.captures[max(0, self.next_capture - 1)] + timedelta(seconds=rnd.uniform(0, 60))
        stages: dict[str, datetime] = {}
        times: list[datetime] = []
        if self.hop(out, tx, t, "erp", "inventory.adjusted", "inventory_adjusted", 300.0):
            stages["inventory_adjusted"] = t
            times.append(t)
        lag = lognormal(rnd, 40, 0.9) if rnd.random() > 0.03 else rnd.uniform(300, 3600)
        p = t + timedelta(seconds=lag)
        if self.hop(out, tx, p, "shopify", "inventory_levels/update", "inventory_published", 90.0):
            stages["inventory_published"] = p
            times.append(p)
        self._finish(out, tx, "", "", stages, times, 0, stuck=False, kind="inventory_update")


def load(gen: Gen, orders: int) -> dict[str, int]:
    from django.db import connection

    from observatory.hops.models import DuplicateDelivery, Hop, Stitched
    from observatory.transactions.models import Transaction, TransactionHop
    from observatory.triage.models import Issue

    tables = {
        "hops": (Hop._meta.db_table, HOP_COLS),
        "stitched": (Stitched._meta.db_table, ("hop_id", "at")),
        "tx": (Transaction._meta.db_table, TX_COLS),
        "links": (TransactionHop._meta.db_table, ("transaction_id", "hop_id")),
        "dups": (DuplicateDelivery._meta.db_table, ("hop_id", "received_at")),
        "issues": (Issue._meta.db_table, ISSUE_COLS),
    }
    counts = dict.fromkeys(tables, 0)
    done = 0
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        while done < orders:
            n = min(CHUNK, orders - done)
            rows = gen.chunk(n)
            # a hop row ends with its stitch time, which the stitch log holds
            rows["stitched"] = [(row[0], row[-1]) for row in rows["hops"]]
            rows["hops"] = [row[:-1] for row in rows["hops"]]
            for name in ("tx", "hops", "stitched", "links", "dups", "issues"):
                table, cols = tables[name]
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row(row)
                counts[name] += len(rows[name])
            done += n
            print(f"\r  {done:,} orders loaded", end="", flush=True)
        print()
        for name, (table, _) in tables.items():
            if name == "stitched":
                continue  # keyed by hop id
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
            )
    with connection.cursor() as cur:
        for table, _ in tables.values():
            cur.execute(f"VACUUM ANALYZE {table}")
    return counts


# --- measuring ---------------------------------------------------------------------------------


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pcts(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


DIRECT = {
    # quantiles by the sketches' rank rule: the value at floor(q * (n - 1)) of the sorted ones
    "acceptance_to_posting": """
        SELECT count(*),
               (array_agg(lag ORDER BY lag))[floor(0.5 * (count(*) - 1))::int + 1],
               (array_agg(lag ORDER BY lag))[floor(0.95 * (count(*) - 1))::int + 1],
               (array_agg(lag ORDER BY lag))[floor(0.99 * (count(*) - 1))::int + 1]
        FROM (
            SELECT CASE WHEN MIN(h.start_time) FILTER (WHERE h.stage = 'posted') IS NOT NULL
                   THEN GREATEST(0, EXTRACT(EPOCH FROM
                       MIN(h.start_time) FILTER (WHERE h.stage = 'posted' AND h.outcome = 'ok')
                     - MIN(h.start_time) FILTER (WHERE h.stage = 'captured'))) END AS lag
            FROM hops_hop h
            JOIN transactions_transactionhop th ON th.hop_id = h.id
            JOIN transactions_transaction t ON t.id = th.transaction_id AND t.kind = 'order'
            WHERE h.start_time >= %(since)s AND h.start_time < %(until)s + interval '2 days'
            GROUP BY th.transaction_id
            HAVING MIN(h.start_time) FILTER (WHERE h.stage = 'captured') >= %(since)s
               AND MIN(h.start_time) FILTER (WHERE h.stage = 'captured') < %(until)s
        ) x WHERE lag IS NOT NULL""",
    "hop_health": """
        SELECT system, operation, count(*),
               avg((outcome = 'error')::int),
               (array_agg(duration_ms ORDER BY duration_ms))[floor(0.5 * (count(*) - 1))::int + 1],
               (array_agg(duration_ms ORDER BY duration_ms))[floor(0.95 * (count(*) - 1))::int + 1]
        FROM hops_hop
        WHERE start_time >= %(since)s AND start_time < %(until)s
        GROUP BY system, operation ORDER BY system, operation""",
    "exception_rate": """
        SELECT count(*), count(*) FILTER (WHERE failed OR issued)
        FROM (
            SELECT th.transaction_id,
                   bool_or(h.outcome = 'error') AS failed,
                   EXISTS (SELECT 1 FROM triage_issue i
                           WHERE i.transaction_id = th.transaction_id) AS issued
            FROM hops_hop h
            JOIN transactions_transactionhop th ON th.hop_id = h.id
            JOIN transactions_transaction t ON t.id = th.transaction_id AND t.kind = 'order'
            WHERE h.start_time >= %(since)s AND h.start_time < %(until)s + interval '2 days'
            GROUP BY th.transaction_id
            HAVING MIN(h.start_time) FILTER (WHERE h.stage = 'captured') >= %(since)s
               AND MIN(h.start_time) FILTER (WHERE h.stage = 'captured') < %(until)s
        ) x""",
    "duplicate_rate": """
        SELECT count(*) + (SELECT count(*) FROM hops_duplicatedelivery d
                           JOIN hops_hop h2 ON h2.id = d.hop_id
                           WHERE h2.start_time >= %(since)s AND h2.start_time < %(until)s),
               (SELECT count(*) FROM hops_duplicatedelivery d
                JOIN hops_hop h2 ON h2.id = d.hop_id
                WHERE h2.start_time >= %(since)s AND h2.start_time < %(until)s)
        FROM hops_hop WHERE start_time >= %(since)s AND start_time < %(until)s""",
}


def direct(since: datetime, until: datetime) -> tuple[float, dict[str, Any]]:
    from django.db import connection

    out: dict[str, Any] = {}
    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SET work_mem = '64MB'")
        for name, sql in DIRECT.items():
            cur.execute(sql, {"since": since, "until": until})
            out[name] = cur.fetchall()
        cur.execute("RESET work_mem")
    return (time.perf_counter() - t) * 1000, out


def close(a: float | None, b: float | None, rel: float = 0.01) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * abs(b) + 1e-9


def compare(k: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """Where the rollup figures and the direct SQL ones differ (counts exactly, quantiles
    within the contract's 1 %: the sketches answer within 0.5 %)."""
    bad = []
    n, p50, p95, p99 = d["acceptance_to_posting"][0]
    a = k["acceptance_to_posting"]
    if a["count"] != n:
        bad.append(f"a2p count {a['count']} != {n}")
    for q, v in (("p50_s", p50), ("p95_s", p95), ("p99_s", p99)):
        if not close(a[q], None if v is None else float(v)):  # None: nothing was posted
            bad.append(f"a2p {q} {a[q]} != {v}")
    rows = {(r["system"], r["operation"]): r for r in k["hop_health"]["rows"]}
    for system, op, count, err, p50, p95 in d["hop_health"]:
        r = rows.get((system, op))
        if r is None or r["count"] != count:
            bad.append(f"hop_health {system}/{op} count {r and r['count']} != {count}")
            continue
        if not close(r["error_rate"], float(err), 1e-9):
            bad.append(f"hop_health {system}/{op} error rate")
        if not close(r["p95_ms"], float(p95)) or not close(r["p50_ms"], float(p50)):
            bad.append(
                f"hop_health {system}/{op} p50/p95 {r['p50_ms']}/{r['p95_ms']} != {p50}/{p95}"
            )
    orders, with_exc = d["exception_rate"][0]
    e = k["exception_rate"]
    if (e["orders"], e["with_exception"]) != (orders, with_exc):
        bad.append(f"exception_rate {e['orders']}/{e['with_exception']} != {orders}/{with_exc}")
    deliveries, dups = d["duplicate_rate"][0]
    u = k["duplicate_rate"]
    if (u["deliveries"], u["duplicates"]) != (deliveries, dups):
        bad.append(f"duplicate_rate {u['deliveries']}/{u['duplicates']} != {deliveries}/{dups}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--db", default="observatory_bench_kpis")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database")
    parser.add_argument("--refill", action="store_true", help="with --reuse: fill from scratch")
    args = parser.parse_args()

    open_scratch(args.db, reuse=args.reuse)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from observatory.access.actions import do_create_api_token
    from observatory.kpis.actions import do_fill_rollups
    from observatory.kpis.models import HopRollup, OpenStage, OrderRollup
    from observatory.lib.clock import now

    at = now()
    call_command("migrate", verbosity=0)
    if not args.reuse:
        t = time.perf_counter()
        counts = load(Gen(args.seed, at, args.days, args.orders), args.orders)
        print(
            f"loaded {counts['tx']:,} transactions, {counts['hops']:,} hops, "
            f"{counts['links']:,} memberships, {counts['dups']:,} repeats, "
            f"{counts['issues']:,} exceptions by COPY in {time.perf_counter() - t:.0f} s"
        )
        t = time.perf_counter()
        result = do_fill_rollups(full=True)
        print(
            f"first full fill: {result.recomputed['orders']:,} + {result.recomputed['hops']:,} "
            f"hour buckets in {time.perf_counter() - t:.0f} s -> "
            f"{OrderRollup.objects.count():,} order rows, {HopRollup.objects.count():,} hop rows"
        )
    if args.reuse and args.refill:
        t = time.perf_counter()
        result = do_fill_rollups(full=True)
        print(f"full refill: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    result = do_fill_rollups()
    print(f"an incremental fill with nothing new: {(time.perf_counter() - t) * 1000:.0f} ms")
    # steady state, as autovacuum leaves it: a fill that just replaced every rollup row
    # leaves as many dead ones behind, which the first minutes of queries would wade through
    from django.db import connection

    with connection.cursor() as cur:
        for model in (OrderRollup, HopRollup, OpenStage):
            cur.execute(f"VACUUM ANALYZE {model._meta.db_table}")

    collect_static()
    _, token = do_create_api_token(f"bench-{time.time()}", "read")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    user, _ = get_user_model().objects.get_or_create(username="bench-exec")
    web = Client()
    web.force_login(user)

    def iso(d: datetime) -> str:
        return d.isoformat().replace("+00:00", "Z")

    print(f"\nserver time, {args.requests} requests each after a first one (its time: 'first')")
    answers = {}

    def last(days: int, channel: str = "") -> dict[str, str]:
        # "the last N days", as a dashboard or an alert rule asks: until is the moment
        # of the request
        end = now()
        params = {"since": iso(end - timedelta(days=days)), "until": iso(end)}
        return {**params, "channel": channel} if channel else params

    def ended(days: int, ago: timedelta, channel: str = "") -> dict[str, str]:
        # a window that ended in the past: its edges fall in hours without minute
        # rollups, and the backlog and the exceptions are as they stood at its end
        params = {"since": iso(at - ago - timedelta(days=days)), "until": iso(at - ago)}
        return {**params, "channel": channel} if channel else params

    cases: list[tuple[str, Any, tuple[int, str] | None]] = []
    for days in (30, 90):
        for channel in ("", "web"):
            label = f"{days:>2} days{' channel=web' if channel else ''}"
            cases.append((label, lambda d=days, c=channel: last(d, c), (days, channel)))
    for channel in ("", "web"):
        suffix = " channel=web" if channel else ""
        cases.append(
            (
                f"30 days ending 30 days ago{suffix}",
                lambda c=channel: ended(30, timedelta(days=30), c),
                None,
            )
        )
    cases.append(("30 days ending yesterday", lambda: ended(30, timedelta(days=1)), None))
    for label, params, key in cases:
        t = time.perf_counter()
        first = api.get("/api/v1/kpis", params())
        cold = (time.perf_counter() - t) * 1000
        assert first.status_code == 200, first.content
        if key is not None:
            answers[key] = first.json()["kpis"]
        ms = timed(lambda p=params: api.get("/api/v1/kpis", p()), args.requests)
        print(f"  {'GET /api/v1/kpis ' + label:<54} {pcts(ms)}   first {cold:6.1f} ms")
    for days in (30, 90):
        url = f"/executive/?window={days}"
        t = time.perf_counter()
        assert web.get(url).status_code == 200
        cold = (time.perf_counter() - t) * 1000
        ms = timed(lambda u=url: web.get(u), max(5, args.requests // 3))
        print(f"  {'GET ' + url:<54} {pcts(ms)}   first {cold:6.1f} ms")

    print("\nthe same figures by direct SQL over the hops (work_mem 64MB):")
    windows = [(f"{days:>2} days", None, days) for days in (30, 90)]
    windows.append(("30 days ending 30 days ago", timedelta(days=30), 30))
    for label, ago, days in windows:
        end = now() if ago is None else at - ago
        since = end - timedelta(days=days)
        ms, figures = direct(since, end)
        ms2, _ = direct(since, end)
        same = api.get("/api/v1/kpis", {"since": iso(since), "until": iso(end)}).json()["kpis"]
        if ago is None:
            answers[(days, "")] = same
        problems = compare(same, figures)
        verdict = "agree" if not problems else "DISAGREE: " + "; ".join(problems[:5])
        print(f"  {label}: {ms:8.0f} ms, again {ms2:8.0f} ms   rollups and SQL {verdict}")
    a = answers[(90, "")]["acceptance_to_posting"]
    print(
        f"\n90 days: {a['count']:,} orders posted, p50 {a['p50_s']:.1f} s, p95 {a['p95_s']:.1f} s, "
        f"p99 {a['p99_s']:.1f} s, {a['within_sla']:.1%} within their deadline"
    )


if __name__ == "__main__":
    main()
