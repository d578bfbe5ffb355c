"""Order lookup by any key, the order page and key search at scale on PostgreSQL
(docs/performance.md, "Reading orders").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        .venv/bin/python bench/lookup.py [--orders 1000000] [--lookups 1000] [--pages 200]

Creates (or recreates) the scratch database ``observatory_bench_lookup`` on the server of
``DATABASE_URL`` (``--db`` to change it), migrates it and COPYs (binary) ``--orders``
already-stitched orders, their business times spread over the 90 days before now (all
finished: the last ones started two days ago). Each order has the ten hops of
bench/stitch.py (Shopify create and pay, middleware validation, ERP posting, WMS pick and
ship, Shopify fulfillment, two carrier scans, ERP invoice) with the same keys, stored in
business-time order as ingest writes them, so one order's hops are scattered over the
table. Three percent of the orders have a failed ERP posting retried (an 11th hop and a
resolved ``failed_hop`` exception), one percent a failed posting never retried (they stop
there, with an open ``failed_hop`` and an open ``stuck`` exception); one hop in a hundred
was delivered twice. One order in a thousand has a fulfillment id equal to another
order's shipment id, so a bare lookup of that value is ambiguous (409). Rows: the hops and
their keys, the transactions with their stage columns, their keys, memberships and
stage-reached events (one per hop and stage, as the stitcher writes them), duplicate
deliveries and exceptions. The tables' non-unique secondary indexes are dropped for the
load and rebuilt after it.

Then, through Django's request handling in-process (middleware, auth, view, template;
the API with a read token, the pages signed in as a user of group ``ops``):

1. ``GET /api/v1/orders/{key}`` for ``--lookups`` random keys drawn evenly across the
   eight key kinds, half as ``kind=value`` and half bare (order numbers with and without
   their ``#``): p50 / p95 / p99 (target p95 under 25 ms) and SQL queries per request;
   plus the 409 (ambiguous) and 404 answers;
2. ``GET /orders/<id>/``, the order page, for ``--pages`` random orders: p50 / p95 and
   SQL queries per request;
3. key search, ``GET /orders/?q=<prefix>`` (the API's order list has no ``q``) for
   ``--pages`` prefixes matching about a hundred keys each, then for short ones (``#10``,
   ``SO-5``) that match up to every key of a kind.

For each: this process's CPU per request and the SQL it ran (count, and the kinds of
query that took the most time). ``--reuse`` measures the database loaded before.

The stitcher's throughput on a backlog of 1,000,000 hops is bench/stitch.py's.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from kpis import ISSUE_COLS  # noqa: E402
from scratch import (  # noqa: E402
    Specs,
    collect_static,
    copy_rows,
    open_scratch,
    rebuild_indexes,
    reset_sequences,
    secondary_indexes,
    transaction_tables,
)
from stitch import STEPS, order_keys  # noqa: E402

FLUSH_HOPS = 100_000  # hops generated before the buffered rows of every table are COPYed
DAYS = 90
FAIL_RATE = 0.03  # a failed ERP posting, retried and posted
STOP_RATE = 0.01  # a failed ERP posting never retried: the order stops there
DUP_RATE = 0.01  # hops delivered twice
COLLIDE_EVERY = 1000  # one order in this many shares a bare value with another
KEY_KINDS = (
    "order_number", "shopify_order_id", "correlation_id", "erp_sales_order", "shipment_id",
    "tracking_number", "fulfillment_id", "invoice_id",
)  # fmt: skip
#: the first characters of a key: each matches many (up to every) key of a kind
SHORT_PREFIXES = ("#10", "10", "SO-5", "SH-1", "1Z0", "INV-", "c-00", "800", "F1")
#: median duration (ms) of a hop by system
DURATION_MS = {"shopify": 120.0, "middleware": 150.0, "erp": 900.0, "wms": 800.0, "carrier": 300.0}
OWNERS = {"shopify": "ecommerce", "erp": "finance-systems", "wms": "warehouse",
          "carrier": "logistics", "middleware": "integration"}  # fmt: skip
POST_STEP = next(n for n, step in enumerate(STEPS) if step[5] == "post")
FAILURE = "NetSuite request timed out after 30 s"

ISSUE_TYPES = ("int8", "text", "text", "int8", "int8", "text", "text", "text", "text", "text",
               "bytea", "text", "timestamptz", "timestamptz", "text", "timestamptz", "text",
               "text")  # fmt: skip


def tables() -> Specs:
    """buffer name -> (table, columns, binary COPY types), in the order they are COPYed."""
    from observatory.hops.models import DuplicateDelivery, Stitched
    from observatory.hops.store import HOPS, KEYS
    from observatory.transactions.models import TransactionKey
    from observatory.triage.models import Issue

    shared = transaction_tables()
    return {
        "tx": shared["tx"],
        "txkey": (
            TransactionKey._meta.db_table,
            ("id", "transaction_id", "kind", "value"),
            ("int8", "int8", "text", "text"),
        ),
        "hop": (HOPS.name, HOPS.names, tuple(HOPS.copy_types)),
        "stitched": (Stitched._meta.db_table, ("hop_id", "at"), ("int8", "timestamptz")),
        "hopkey": (
            KEYS.name,
            ("id", *KEYS.names),
            ("int8", *KEYS.copy_types),
        ),
        "txhop": shared["txhop"],
        "stage": shared["stage"],
        "dup": (
            DuplicateDelivery._meta.db_table,
            ("id", "hop_id", "received_at"),
            ("int8", "int8", "timestamptz"),
        ),
        "issue": (Issue._meta.db_table, ("id", *ISSUE_COLS), ISSUE_TYPES),
    }


def jsonb(value: dict[str, Any]) -> bytes:
    """jsonb's binary form: a version byte and the JSON text (``hops.store._jsonb``)."""
    return b"\x01" + orjson.dumps(value)


# --- the data --------------------------------------------------------------------------------


class Gen:
    """Orders in start-time order; their hops come out in business-time order (a heap holds
    those not yet due), each with its keys, membership, stage events and duplicates."""

    def __init__(self, seed: int, orders: int, now: datetime) -> None:
        from observatory.transactions import stages as st
        from observatory.transactions.actions import load_status_maps
        from tracing.conventions import SHARED_KINDS

        self.rnd = random.Random(seed)
        self.orders = orders
        self.t0 = now - timedelta(days=DAYS)
        self.span_s = (DAYS - 2) * 86400.0
        self.shared = SHARED_KINDS
        self.current_stage = st.current_stage
        maps = load_status_maps()
        #: the stage(s) each step reaches, as the stitcher derives them from the status maps
        self.step_stages = [
            st.derive(maps, system=s, stage=stage, platform_status=status, operation=op).stages
            for _, s, op, status, stage, _ in STEPS
        ]
        self.failed_stages = st.derive(
            maps, system="erp", stage="", platform_status="", operation=STEPS[POST_STEP][2]
        ).stages
        self.heap: list[tuple[datetime, int, tuple[Any, ...]]] = []
        self.seq = 0
        self.ids: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.counts: Counter[str] = Counter()

    def take(self, name: str) -> int:
        return next(self.ids[name])

    def keys(self, i: int) -> dict[str, list[tuple[str, str]]]:
        keys = order_keys(i)
        if i % COLLIDE_EVERY == COLLIDE_EVERY - 1:
            # this order's fulfillment id is the previous order's shipment id
            keys["fulfil"] = [
                (k, f"SH-{i - 1}" if k == "fulfillment_id" else v) for k, v in keys["fulfil"]
            ]
        return keys

    def order(self, i: int) -> None:
        """Plan order ``i``: its transaction row and keys now, its hops onto the heap."""
        from observatory.transactions.models import STAGE_COLUMNS

        rnd = self.rnd
        tx = i + 1
        start = self.t0 + timedelta(seconds=self.span_s * (i + rnd.random()) / self.orders)
        # hops due before this order starts leave the heap: the table is in business-time
        # order, so an order's hops lie among those of thousands of others
        while self.heap and self.heap[0][0] <= start:
            self.emit(*heapq.heappop(self.heap))
        u = rnd.random()
        fate = "stop" if u < STOP_RATE else "retry" if u < STOP_RATE + FAIL_RATE else "ok"
        plan: list[tuple[datetime, int, str, int, list[tuple[str, str]]]] = []
        order_keys = self.keys(i)
        for step_no, (offset, _, _, _, _, builder) in enumerate(STEPS):
            at = start + timedelta(seconds=offset * rnd.uniform(0.8, 1.5))
            keys = order_keys[builder]
            if step_no == POST_STEP and fate != "ok":
                plan.append((at, step_no, "error", 0, keys))
                if fate == "stop":
                    break
                at += timedelta(seconds=60 * math.exp(rnd.gauss(0, 0.5)))
                plan.append((at, step_no, "ok", 1, keys))
                continue
            plan.append((at, step_no, "ok", 0, keys))
        trace = f"{rnd.getrandbits(128):032x}"
        amount = Decimal(rnd.randint(1500, 40000)) / 100
        first: dict[str, datetime] = {}
        tx_keys: dict[tuple[str, str], None] = {}
        stitched: list[datetime] = []
        for n, (at, step_no, outcome, retry, keys) in enumerate(plan):
            system = STEPS[step_no][1]
            dur = (
                30000.0 if outcome == "error" else DURATION_MS[system] * math.exp(rnd.gauss(0, 0.5))
            )
            received = at + timedelta(milliseconds=dur + 400)
            stitched_at = received + timedelta(seconds=2)
            stitched.append(stitched_at)
            for stage in self.failed_stages if outcome == "error" else self.step_stages[step_no]:
                if stage not in first or at < first[stage]:
                    first[stage] = at
            for kind, value in keys:
                if kind not in self.shared:
                    tx_keys[(kind, value)] = None
            dup = (
                received + timedelta(seconds=rnd.uniform(1, 600))
                if rnd.random() < DUP_RATE
                else None
            )
            self.seq += 1
            item = (tx, i, n, step_no, outcome, retry, keys, dur, received, stitched_at, trace,
                    dup, amount if n == 0 else None, fate)  # fmt: skip
            heapq.heappush(self.heap, (at, self.seq, item))
        times = [p[0] for p in plan]
        self.rows["tx"].append(
            (tx, "order", "web", "", self.current_stage(first), amount, "USD", min(times),
             max(times), len(plan), sum(1 for p in plan if p[2] == "error"), min(stitched),
             max(stitched), *(first.get(s) for s in STAGE_COLUMNS))
        )  # fmt: skip
        for kind, value in tx_keys:
            self.rows["txkey"].append((self.take("txkey"), tx, kind, value))
        if fate == "stop":  # never posted: the sweep found it stuck past its 1-minute SLA
            opened = first["captured"] + timedelta(seconds=65)
            self.rows["issue"].append(
                (self.take("issue"), "stuck", "open", tx, None, "erp", "", "posted",
                 OWNERS["erp"], f"#{100000 + i}: not posted within 1 min", b"\x01{}",
                 f"stuck:{tx}:posted", opened, opened, "", None, "", "")
            )  # fmt: skip
        self.counts["orders"] += 1

    def emit(self, at: datetime, _seq: int, item: tuple[Any, ...]) -> None:
        """Buffer one hop and the rows that hang off it."""
        tx, i, n, step_no, outcome, retry, keys, dur, received, stitched_at, trace, dup, amount, fate = item  # fmt: skip
        _, system, op, status, stage, _ = STEPS[step_no]
        hop_id = self.take("hop")
        failed = outcome == "error"
        traced = system in ("middleware", "erp")
        attributes: dict[str, Any] = {f"retail.{kind}": value for kind, value in keys}
        if failed:
            attributes["error.type"] = "timeout"
        self.rows["hop"].append(
            (hop_id, f"event:bench:{i:07d}:{n}", "otlp" if traced else "event", "urn:bench",
             system, op, at, at + timedelta(milliseconds=dur), dur, outcome,
             FAILURE if failed else "", trace if traced else "",
             f"{hop_id:016x}" if traced else "", "", retry, False, "" if failed else status,
             stage, "web" if system == "shopify" else "", "", amount,
             "USD" if amount is not None else "", received, jsonb(attributes), b"\x01{}")
        )  # fmt: skip
        self.rows["stitched"].append((hop_id, stitched_at))
        for kind, value in keys:
            self.rows["hopkey"].append((self.take("hopkey"), hop_id, kind, value, False))
        self.rows["txhop"].append((self.take("txhop"), tx, hop_id))
        for s in self.failed_stages if failed else self.step_stages[step_no]:
            self.rows["stage"].append(
                (self.take("stage"), tx, s, at, system, "" if failed else status, hop_id,
                 amount, "USD" if amount is not None else "", False)
            )  # fmt: skip
        if dup is not None:
            self.rows["dup"].append((self.take("dup"), hop_id, dup))
        if failed:
            retried = fate == "retry"
            self.rows["issue"].append(
                (self.take("issue"), "failed_hop", "resolved" if retried else "open", tx,
                 hop_id, system, op, "", OWNERS[system],
                 f"#{100000 + i}: {system} {op} failed: {FAILURE}",
                 jsonb({"failures": 1, "first_failed_at": at.isoformat(),
                        "last_error": FAILURE, "retry_attempt": retry}),
                 f"failed_hop:{tx}:{system}:{op}", at, stitched_at, "",
                 at + timedelta(minutes=10) if retried else None, "system" if retried else "",
                 "a later attempt succeeded" if retried else "")
            )  # fmt: skip
        self.counts["hops"] += 1

    def drain(self) -> None:
        while self.heap:
            self.emit(*heapq.heappop(self.heap))


# --- loading ---------------------------------------------------------------------------------


def load(gen: Gen, orders: int) -> dict[str, int]:
    """COPY ``orders`` orders with their secondary indexes dropped, rebuild those, set the
    sequences, VACUUM ANALYZE. Returns the rows per table."""
    from django.db import connection

    specs = tables()
    names = [table for table, _, _ in specs.values()]
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute("SET maintenance_work_mem = '1GB'")
        indexes = secondary_indexes(cur, names)
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        print(f"dropped {len(indexes)} secondary indexes: {', '.join(n for n, _ in indexes)}")
        t = time.perf_counter()
        for i in range(orders):
            gen.order(i)
            if len(gen.rows["hop"]) >= FLUSH_HOPS:
                copy_rows(cur, specs, gen.rows)
                rate = gen.counts["hops"] / (time.perf_counter() - t)
                print(
                    f"\r  {gen.counts['orders']:,} orders, {gen.counts['hops']:,} hops "
                    f"({rate:,.0f} hops/s, load {os.getloadavg()[0]:.1f})",
                    end="",
                    flush=True,
                )
        gen.drain()
        copy_rows(cur, specs, gen.rows)
        print(
            f"\r  {gen.counts['orders']:,} orders, {gen.counts['hops']:,} hops COPYed in "
            f"{time.perf_counter() - t:.0f} s" + " " * 30
        )
        took = rebuild_indexes(cur, indexes, each=True)
        print(f"rebuilt {len(indexes)} indexes in {took:.0f} s")
        reset_sequences(cur, names)
        cur.execute("RESET maintenance_work_mem")
    t = time.perf_counter()
    counts = {}
    with connection.cursor() as cur:
        for table in names:
            cur.execute(f"VACUUM ANALYZE {table}")
            cur.execute(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'")
            counts[table] = cur.fetchone()[0]
    print(f"VACUUM ANALYZE: {time.perf_counter() - t:.0f} s")
    return counts


# --- measuring -------------------------------------------------------------------------------

_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


def shape(sql: str) -> str:
    """A query with its literals blanked, to add up the time per kind of query."""
    return _LITERALS.sub("?", sql)


def quantile(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def pcts(ms: list[float], p99: bool = True) -> str:
    out = f"p50 {statistics.median(ms):6.1f} ms   p95 {quantile(ms, 0.95):6.1f} ms"
    if p99:
        out += f"   p99 {quantile(ms, 0.99):6.1f} ms"
    return out + f"   max {max(ms):6.1f} ms   (n={len(ms)})"


class Run:
    """Timed requests, each with its SQL captured (count and per-query time)."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.cpu: list[float] = []
        self.queries: list[int] = []
        self.sql: dict[str, list[float]] = defaultdict(list)

    def get(self, client: Any, url: str) -> Any:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        connection.queries_log.clear()  # a bounded deque: full, it would capture nothing
        with CaptureQueriesContext(connection) as ctx:
            t, cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            self.ms.append((time.perf_counter() - t) * 1000)
            self.cpu.append((time.process_time() - cpu) * 1000)
        self.queries.append(len(ctx.captured_queries))
        for q in ctx.captured_queries:
            self.sql[shape(q["sql"])].append(float(q["time"]) * 1000)
        return response

    def report(self, label: str, p99: bool = True) -> None:
        spread = Counter(self.queries)
        per = ", ".join(f"{n} queries x{c}" for n, c in sorted(spread.items()))
        print(f"  {label:<34} {pcts(self.ms, p99)}")
        sql = [sum(t) / len(self.ms) for t in self.sql.values()]
        print(
            f"  {'':<34} this process's CPU p50 {statistics.median(self.cpu):.1f} ms, "
            f"SQL {sum(sql):.1f} ms a request; SQL per request: {per}"
        )
        heavy = sorted(self.sql.items(), key=lambda kv: -sum(kv[1]))[:4]
        for sql, times in heavy:
            print(
                f"  {'':<36}{sum(times) / len(self.ms):5.2f} ms/request "
                f"(p95 {quantile(times, 0.95):5.2f} ms): {sql[:110]}"
            )


def sample_keys(n: int, rnd: random.Random) -> list[tuple[str, int]]:
    """``n`` (key as sent, transaction id) drawn evenly over the key kinds of random
    transactions: half ``kind=value``, half bare (order numbers half with their ``#``,
    half without). Bare values that more than one transaction answers are left out."""
    from django.db import connection

    from observatory.transactions.queries import bare_variants

    with connection.cursor() as cur:
        cur.execute("SELECT MAX(id) FROM transactions_transaction")
        top = cur.fetchone()[0]
        per_kind = math.ceil(n / len(KEY_KINDS))
        ids = rnd.sample(range(1, top + 1), min(top, per_kind * 3))
        cur.execute(
            "SELECT transaction_id, kind, value FROM transactions_transactionkey "
            "WHERE transaction_id = ANY(%s)",
            [ids],
        )
        by_kind: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for tx, kind, value in cur.fetchall():
            by_kind[kind].append((tx, value))
        picked: list[tuple[str, int, bool]] = []
        for kind in KEY_KINDS:
            chosen = rnd.sample(by_kind[kind], min(per_kind, len(by_kind[kind])))
            for j, (tx, value) in enumerate(chosen):
                if j % 2 == 0:
                    picked.append((f"{kind}={value}", tx, False))
                else:
                    bare = value[1:] if kind == "order_number" and j % 4 == 3 else value
                    picked.append((bare, tx, True))
        wanted = {v for key, _, bare in picked if bare for v in bare_variants(key)}
        cur.execute(
            "SELECT value, array_agg(DISTINCT transaction_id) FROM transactions_transactionkey "
            "WHERE value = ANY(%s) GROUP BY value",
            [sorted(wanted)],
        )
        holders = dict(cur.fetchall())
    out = []
    for key, tx, bare in picked:
        if bare and len({t for v in bare_variants(key) for t in holders.get(v, ())}) != 1:
            continue
        out.append((key, tx))
    rnd.shuffle(out)
    return out[:n]


def ambiguous(values: list[str], most: int = 20) -> list[str]:
    """The first ``most`` of ``values`` that two transactions hold (as any kinds)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT value FROM transactions_transactionkey WHERE value = ANY(%s) "
            "GROUP BY value HAVING COUNT(DISTINCT transaction_id) = 2",
            [values],
        )
        found = {v for (v,) in cur.fetchall()}
    return [v for v in values if v in found][:most]


def measure(args: argparse.Namespace, orders: int) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from observatory.access.actions import do_create_api_token

    collect_static()
    rnd = random.Random(args.seed + 1)
    _, token = do_create_api_token(f"bench-lookup-{time.time()}", "read")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    user, _ = get_user_model().objects.get_or_create(username="bench-ops")
    user.groups.add(Group.objects.get_or_create(name="ops")[0])
    web = Client()
    web.force_login(user)

    keys = sample_keys(args.lookups, rnd)
    kinds = Counter(k.split("=", 1)[0] if "=" in k else "(bare)" for k, _ in keys)
    print(
        f"\nserver time through Django's request handling, in-process (load average "
        f"{os.getloadavg()[0]:.1f}); {len(keys)} keys: "
        + ", ".join(f"{kind} {c}" for kind, c in sorted(kinds.items()))
    )
    assert api.get("/api/v1/orders/" + quote(keys[0][0], safe="=")).status_code == 200  # warm-up
    run = Run()
    for key, tx in keys:
        r = run.get(api, "/api/v1/orders/" + quote(key, safe="="))
        assert r.status_code == 200, (key, r.status_code, r.content[:300])
        assert r.json()["id"] == tx, (key, tx, r.json()["id"])
    run.report("GET /api/v1/orders/{key}")
    target = "met" if quantile(run.ms, 0.95) < 25 else "MISSED"
    print(f"  {'':<34} target p95 < 25 ms: {target}")

    # ambiguous bare values (one order in COLLIDE_EVERY shares one) and keys nobody has
    collide = ambiguous([f"SH-{i - 1}" for i in range(COLLIDE_EVERY - 1, orders, COLLIDE_EVERY)])
    amb = Run()
    for value in collide:
        r = amb.get(api, "/api/v1/orders/" + quote(value))
        assert r.status_code == 409 and len(r.json()["candidates"]) == 2, (value, r.content)
    if collide:
        amb.report("  409 (bare value of two orders)", p99=False)
    missing = Run()
    for k in range(20):
        key = f"order_number=#{10_000_000 + k}" if k % 2 else f"NOPE-{k}"
        assert missing.get(api, "/api/v1/orders/" + quote(key, safe="=")).status_code == 404
    missing.report("  404 (no such key)", p99=False)

    top = orders
    ids = [rnd.randint(1, top) for _ in range(args.pages)]
    assert web.get(f"/orders/{ids[0]}/").status_code == 200  # warm-up
    page = Run()
    for tx in ids:
        r = page.get(web, f"/orders/{tx}/")
        assert r.status_code == 200, (tx, r.status_code)
    page.report("GET /orders/<id>/ (order page)", p99=False)

    print("  (GET /api/v1/orders has no q parameter: key search is the page's, /orders/?q=)")
    prefixes = []
    for key, _ in keys[: args.pages]:
        value = key.split("=", 1)[1] if "=" in key else key
        prefixes.append(value[: max(2, len(value) - 2)])
    search = Run()
    for prefix in prefixes:
        r = search.get(web, "/orders/?" + f"q={quote(prefix)}")
        assert r.status_code in (200, 302), (prefix, r.status_code)
    search.report("GET /orders/?q=<prefix> (search)", p99=False)
    print(f"  prefixes like {', '.join(prefixes[:6])}")
    short = Run()  # what someone types first: prefixes most keys of a kind share
    for prefix in SHORT_PREFIXES * 3:
        assert short.get(web, f"/orders/?q={quote(prefix)}").status_code in (200, 302)
    short.report("  short prefixes", p99=False)
    print(f"  ({', '.join(SHORT_PREFIXES)}; 3 times each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--db", default="observatory_bench_lookup")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--reuse", action="store_true", help="measure the loaded database")
    args = parser.parse_args()

    import logging

    open_scratch(args.db, reuse=args.reuse)
    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404s and 409s asked for
    from django.core.management import call_command
    from django.db import connection

    from observatory.lib.clock import now

    call_command("migrate", verbosity=0)
    if not args.reuse:
        t = time.perf_counter()
        counts = load(Gen(args.seed, args.orders, now()), args.orders)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            size = cur.fetchone()[0]
        print(
            f"loaded {sum(counts.values()):,} rows ("
            + ", ".join(f"{table} {n:,}" for table, n in counts.items())
            + f") in {(time.perf_counter() - t) / 60:.1f} min; {size / 1e9:.2f} GB on disk"
        )
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM transactions_transaction")
        orders = cur.fetchone()[0]
    measure(args, orders)
    print(
        "\nthe stitcher's throughput on a backlog of 1,000,000 hops: bench/stitch.py "
        "(not measured again here)"
    )


if __name__ == "__main__":
    main()
