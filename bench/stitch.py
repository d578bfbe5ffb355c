"""Stitcher throughput on PostgreSQL over a backlog of waiting hops (docs/performance.md, "Stitching").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        .venv/bin/python bench/stitch.py [--hops 1000000] [--chunk 5000] [--workers 2]
        [--profile]

Creates (or recreates) the scratch database ``observatory_bench_stitch`` on the server of
``DATABASE_URL`` (``--db`` to change the name), migrates it, COPYs ``--hops`` realistic
order hops into ``hops_hop`` / ``hops_hopkey`` and the stitcher's queue, then times
``do_stitch`` over the whole backlog and prints hops/s (target: at least 10,000). It runs
``--workers`` stitcher processes side by side, as the Celery worker does (``--concurrency
2`` in the Procfile); ``--profile`` runs one, under cProfile.

The traffic: orders start ten a second; each has 5 to 10 hops spread over a day
(Shopify create and pay, middleware validation, ERP posting, WMS pick and ship, carrier
scans, Shopify fulfillment, ERP invoice) with the usual mix of keys (order number,
Shopify id, correlation id, ERP number, shipment, tracking, fulfillment, invoice) and
shared ones (sku, location); one order in five is posted by an ERP batch hop instead,
which names 50 orders in one fan-out array. Hops are stored in business-time order, so
every chunk holds pieces of thousands of orders, most of whose other hops are elsewhere
in the backlog.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import open_scratch  # noqa: E402

T0 = datetime(2026, 11, 1, tzinfo=UTC)

#: (offset seconds, system, operation, platform_status, stage, key builder)
STEPS: list[tuple[float, str, str, str, str, str]] = [
    (0, "shopify", "orders/create", "orders/create", "", "create"),
    (4, "shopify", "orders/paid", "orders/paid", "", "create"),
    (9, "middleware", "validate_order", "", "validated", "validate"),
    (40, "erp", "post_sales_order", "Pending Fulfillment", "", "post"),
    (1800, "wms", "pick", "", "picked", "pick"),
    (5400, "wms", "ship", "", "shipped", "ship"),
    (6000, "shopify", "fulfillments/create", "in_transit", "", "fulfil"),
    (14400, "carrier", "tracker.updated", "in_transit", "", "track"),
    (64800, "carrier", "tracker.updated", "delivered", "", "track"),
    (86400, "erp", "invoice", "Billed", "", "invoice"),
]


def keys_for(step: str, i: int) -> list[tuple[str, str]]:
    return order_keys(i)[step]


def order_keys(i: int) -> dict[str, list[tuple[str, str]]]:
    """The keys of order ``i``'s hops, by key builder (the last field of STEPS)."""
    o, so, sh, trk = f"#{100000 + i}", f"SO-{500000 + i}", f"SH-{i}", f"1Z{i:012d}"
    return {
        "create": [("order_number", o), ("shopify_order_id", str(8_000_000_000 + i))],
        "validate": [("order_number", o), ("correlation_id", f"c-{i:08x}"), ("sku", "SKU-1")],
        "post": [("order_number", o), ("erp_sales_order", so)],
        "pick": [("erp_sales_order", so), ("shipment_id", sh), ("location", "WH-1")],
        "ship": [("shipment_id", sh), ("tracking_number", trk)],
        "fulfil": [
            ("shopify_order_id", str(8_000_000_000 + i)),
            ("fulfillment_id", f"F{i}"),
            ("tracking_number", trk),
        ],
        "track": [("tracking_number", trk)],
        "invoice": [("erp_sales_order", so), ("invoice_id", f"INV-{i}")],
    }


def generate(n_hops: int, seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Hop rows and key rows, ``n_hops`` of them, ordered by business time."""
    rnd = random.Random(seed)
    events: list[tuple[datetime, str, str, str, str, str, list[tuple[str, str, bool]]]] = []
    i = 0
    batch: list[int] = []
    while len(events) < n_hops:
        start = T0 + timedelta(seconds=i / 10)
        k = rnd.randint(5, 10)
        batched = rnd.random() < 0.2
        for step_no, (offset, system, op, status, stage, builder) in enumerate(STEPS[:k]):
            if batched and builder == "post":
                batch.append(i)
                continue
            at = start + timedelta(seconds=offset * rnd.uniform(0.8, 1.5))
            keys = [(kind, value, False) for kind, value in keys_for(builder, i)]
            uid = f"event:bench:{i}:{step_no}"
            events.append((at, uid, system, op, status, stage, keys))
        if len(batch) >= 50:
            at = start + timedelta(seconds=300)
            keys = [("order_number", f"#{100000 + j}", True) for j in batch]
            keys.append(("batch_id", f"B-{i}", False))
            events.append(
                (at, f"event:bench:batch:{i}", "erp", "batch_post", "Pending Fulfillment", "", keys)
            )
            batch = []
        i += 1
    events = sorted(events[:n_hops])
    hops, keys = [], []
    received = T0 + timedelta(days=3)
    for hop_id, (at, uid, system, op, status, stage, hop_keys) in enumerate(events, start=1):
        hops.append(
            (hop_id, uid, "event", "urn:bench", system, op, at, at, 12.5, "ok", "", "", "", "",
             0, False, status, stage, "web" if system == "shopify" else "", "", None, "",
             received, "{}", "{}")
        )  # fmt: skip
        keys.extend((hop_id, kind, value, fanout) for kind, value, fanout in hop_keys)
    return hops, keys


def load(hops: list[tuple[Any, ...]], keys: list[tuple[Any, ...]]) -> None:
    from django.db import connection

    from observatory.hops.store import HOPS, KEYS, WAITING

    HOP_TABLE, HOP_COLUMNS = HOPS.name, HOPS.names
    KEY_TABLE, KEY_COLUMNS = KEYS.name, KEYS.names
    WAITING_TABLE = WAITING.name

    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        with cur.copy(f"COPY {HOP_TABLE} ({', '.join(HOP_COLUMNS)}) FROM STDIN") as copy:
            for row in hops:
                copy.write_row(row)
        with cur.copy(f"COPY {KEY_TABLE} ({', '.join(KEY_COLUMNS)}) FROM STDIN") as copy:
            for row in keys:
                copy.write_row(row)
        with cur.copy(f"COPY {WAITING_TABLE} (hop_id) FROM STDIN") as copy:
            for row in hops:
                copy.write_row((row[0],))
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('{HOP_TABLE}', 'id'), "
            f"(SELECT MAX(id) FROM {HOP_TABLE}))"
        )
        cur.execute(f"ANALYZE {HOP_TABLE}")
        cur.execute(f"ANALYZE {KEY_TABLE}")
        cur.execute(f"ANALYZE {WAITING_TABLE}")


def backend_cpu(pid: int) -> float:
    """CPU seconds used so far by a local PostgreSQL backend (-1 when not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stitch_and_time(chunk: int, profile: bool) -> tuple[Any, float, float]:
    """``do_stitch`` until the backlog is empty; (its result, this process's CPU seconds,
    its PostgreSQL backend's CPU seconds)."""
    from django.db import connection

    from observatory.transactions.actions import do_stitch

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    pg_cpu0, py_cpu0 = backend_cpu(backend), time.process_time()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    result = do_stitch(limit_chunk=chunk)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    py_cpu, pg_cpu = time.process_time() - py_cpu0, backend_cpu(backend) - pg_cpu0
    connection.close()
    return result, py_cpu, pg_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--db", default="observatory_bench_stitch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workers", type=int, default=2, help="stitcher processes side by side (default 2)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile summary (one worker)"
    )
    args = parser.parse_args()
    if args.profile:
        args.workers = 1

    open_scratch(args.db)
    from django.core.management import call_command
    from django.db import connection

    from observatory.transactions.actions import StitchResult

    call_command("migrate", verbosity=0)
    t = time.perf_counter()
    hops, keys = generate(args.hops, args.seed)
    print(f"generated {len(hops):,} hops / {len(keys):,} keys in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    load(hops, keys)
    print(f"COPY into {args.db}: {time.perf_counter() - t:.1f}s")
    del hops, keys

    if args.workers == 1:
        t = time.perf_counter()
        result, py_cpu, pg_cpu = stitch_and_time(args.chunk, args.profile)
        elapsed = time.perf_counter() - t
    else:
        # as the Celery worker runs it (--concurrency 2): processes side by side, each
        # with its own connection, until the backlog is empty (the pool's connections
        # must not be shared across the fork)
        connection.close()
        connection.close_pool()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(args.workers) as pool:
            t = time.perf_counter()
            parts = pool.starmap(stitch_and_time, [(args.chunk, False)] * args.workers)
            elapsed = time.perf_counter() - t
        result = StitchResult()
        for part, _, _ in parts:
            for name in ("hops", "chunks", "merged", "conflicts", "resolved_hops"):
                setattr(result, name, getattr(result, name) + getattr(part, name))
        py_cpu, pg_cpu = sum(p[1] for p in parts), sum(p[2] for p in parts)
        print(f"{args.workers} workers: " + ", ".join(f"{p[0].hops:,} hops" for p in parts))
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM transactions_transaction WHERE merged_into_id IS NULL")
        live = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM hops_waiting")
        waiting = cur.fetchone()[0]
    print(
        f"stitched {result.hops:,} hops in {elapsed:.1f}s ({result.chunks} chunks of "
        f"<= {args.chunk}): {live:,} live transactions, {result.merged:,} merges, "
        f"{result.conflicts:,} conflicts, {waiting:,} hops still waiting; "
        f"{result.resolved_hops:,} hops resolved"
    )
    if pg_cpu >= 0:
        # On a busy machine the wall clock mostly measures the neighbours: the CPU the
        # stitchers and their backends spent says what a hop costs whatever the machine.
        print(
            f"cpu: stitcher {py_cpu:.1f}s + its PostgreSQL backend {pg_cpu:.1f}s "
            f"= {result.hops / (py_cpu + pg_cpu):,.0f} hops per cpu-second"
        )
    print(f"{result.hops / elapsed:,.0f} hops/s")


if __name__ == "__main__":
    main()
