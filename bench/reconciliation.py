"""Reconciliation at scale on PostgreSQL (docs/reconciliation.md): a full rebuild of the
default rules, one business day's incremental run, the pages and the API.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        .venv/bin/python bench/reconciliation.py [--orders 1000000] [--days 90]
                                                 [--requests 200] [--reuse]

Creates (or recreates) the scratch database ``observatory_bench_reconciliation`` on the
server of ``DATABASE_URL``, migrates it and COPYs (binary) ``--orders`` already-stitched
orders spread over the ``--days`` business days before now, as the stitcher leaves them
for reconciliation: transactions, their stage-reached rows with the amounts of the hops
that reached them, the memberships and document keys the rules read (no hop rows:
reconciliation never reads them). The mix: 55 % web orders (Shopify capture, ERP posting
with its sales order, a warehouse shipment and two carrier scans with its tracking number,
7 % refunded and four in five of those settled; a tenth in EUR), 33 % POS sales in five
stores posted in 15-minute batch postings per store, 12 % marketplace orders. Gaps: 1 % of
web and marketplace orders never posted, 1 % posted for another total, 0.5 % posted twice,
1 % of POS receipts left out of their batch, a fifth of refunds never settled. The rules
run in New York's time zone, the stores in their own.

Then it measures:

1. a full rebuild of every default rule (target: under 5 minutes at 1M orders over 90
   days);
2. one business day's incremental run: every transaction of a day in the middle of the
   range touched again, as late data touching that day would (target: under 10 s), and a
   small one (a thousand transactions);
3. ``GET /reconciliation/`` (31 days) and a day's page, signed in (target: p95 under
   300 ms);
4. ``GET /api/v1/reconciliation`` (31 days) and ``GET /api/v1/reconciliation/{rule}/{day}``
   with a read token (target: p95 under 100 ms).

``--reuse`` measures a database loaded before. The last line is the summary.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from lookup import Run, quantile  # noqa: E402
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

DB = "observatory_bench_reconciliation"
FLUSH = 200_000  # stage rows generated before every table's buffered rows are COPYed
STORES = {
    "ST07": "America/New_York",
    "ST12": "America/New_York",
    "ST21": "America/Chicago",
    "ST33": "America/Chicago",
    "ST45": "America/Los_Angeles",
}
SHOP_ZONE = "America/New_York"


def tables() -> Specs:
    """buffer name -> (table, columns, binary COPY types)."""
    from observatory.hops.models import HopKey

    specs = transaction_tables()
    return {
        "tx": specs["tx"],
        "stage": specs["stage"],
        "hopkey": (
            HopKey._meta.db_table,
            ("id", "hop_id", "kind", "value", "fanout"),
            ("int8", "int8", "text", "text", "bool"),
        ),
        "txhop": specs["txhop"],
    }


class Gen:
    """Orders in business-time order, as the stitcher would have left them."""

    def __init__(self, seed: int, orders: int, days: int, end: datetime) -> None:
        from observatory.transactions.models import STAGE_COLUMNS

        self.rnd = random.Random(seed)
        self.orders = orders
        self.start = end - timedelta(days=days)
        self.span_s = days * 86400.0
        self.stage_columns = STAGE_COLUMNS
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.ids: dict[str, int] = defaultdict(int)
        #: POS receipts waiting for their store's batch: store -> (boundary, receipts)
        self.pending: dict[str, tuple[datetime, list[tuple[int, Decimal]]]] = {}
        self.created = end

    def take(self, name: str) -> int:
        self.ids[name] += 1
        return self.ids[name]

    def stage(
        self,
        tx: int,
        stage: str,
        at: datetime,
        system: str,
        hop: int,
        amount: Decimal | None,
        currency: str,
        fanout: bool = False,
    ) -> None:
        self.rows["stage"].append(
            (self.take("stage"), tx, stage, at, system, "", hop, amount,
             currency if amount is not None else "", fanout)
        )  # fmt: skip
        self.rows["txhop"].append((self.take("txhop"), tx, hop))

    def key(self, hop: int, kind: str, value: str, fanout: bool = False) -> None:
        self.rows["hopkey"].append((self.take("hopkey"), hop, kind, value, fanout))

    def transaction(
        self, tx: int, channel: str, store: str, stages: dict[str, datetime], amount: Any, cur: str
    ) -> None:
        times = list(stages.values())
        current = max(stages, key=lambda s: self.stage_columns.index(s)) if stages else ""
        self.rows["tx"].append(
            (tx, "order", channel, store, current, amount, cur if amount is not None else "",
             min(times), max(times), len(times), 0, self.created, self.created,
             *(stages.get(s) for s in self.stage_columns))
        )  # fmt: skip

    def order(self, i: int) -> None:
        rnd = self.rnd
        at = self.start + timedelta(seconds=self.span_s * (i + rnd.random()) / self.orders)
        self.flush_batches(at)
        u = rnd.random()
        channel = "web" if u < 0.55 else "pos" if u < 0.88 else "marketplace"
        tx = self.take("tx")
        amount = Decimal(rnd.randint(1500, 40000)) / 100
        cur = "EUR" if channel == "web" and rnd.random() < 0.1 else "USD"
        stages: dict[str, datetime] = {}
        if channel == "pos":
            store = rnd.choice(list(STORES))
            hop = self.take("hop")
            self.stage(tx, "captured", at, "pos", hop, amount, cur)
            stages["captured"] = at
            boundary = at.replace(minute=at.minute // 15 * 15, second=0, microsecond=0)
            boundary += timedelta(minutes=15)
            waiting = self.pending.setdefault(store, (boundary, []))
            if rnd.random() >= 0.01:  # else: left out of its batch
                waiting[1].append((tx, amount))
            self.transaction(tx, "pos", store, stages, amount, cur)
            return
        source = "shopify" if channel == "web" else "marketplace"
        self.stage(tx, "captured", at, source, self.take("hop"), amount, cur)
        stages["captured"] = at
        r = rnd.random()
        if r >= 0.01:  # else: never posted
            posted = at + timedelta(seconds=rnd.uniform(5, 120))
            total = amount + Decimal("1.37") if r < 0.02 else amount
            hop = self.take("hop")
            self.stage(tx, "posted", posted, "erp", hop, total, cur)
            self.key(hop, "erp_sales_order", f"SO-{i}")
            stages["posted"] = posted
            if r > 0.995:  # posted twice: the second sales order is a transaction of its own
                again = posted + timedelta(minutes=10)
                hop = self.take("hop")
                second = self.take("tx")
                self.stage(tx, "posted", again, "erp", hop, total, cur)
                self.stage(second, "posted", again, "erp", hop, total, cur)
                self.key(hop, "erp_sales_order", f"SO-{i}-B")
                self.transaction(second, channel, "", {"posted": again}, total, cur)
        shipped = at + timedelta(hours=rnd.uniform(4, 40))
        tracking = f"1Z{i:010d}"
        hop = self.take("hop")
        self.stage(tx, "shipped", shipped, "wms", hop, None, cur)
        self.key(hop, "tracking_number", tracking)
        for scan in range(2):
            hop = self.take("hop")
            self.stage(tx, "shipped", shipped + timedelta(hours=3 + 20 * scan), "carrier", hop,
                       None, cur)  # fmt: skip
            self.key(hop, "tracking_number", tracking)
        stages["shipped"] = shipped
        if channel == "web" and rnd.random() < 0.07:
            refunded = shipped + timedelta(days=rnd.uniform(3, 10))
            if refunded < self.created:
                refund = (amount * Decimal("0.4")).quantize(Decimal("0.01"))
                hop = self.take("hop")
                self.stage(tx, "refunded", refunded, "shopify", hop, refund, cur)
                self.key(hop, "refund_id", f"R{i}")
                stages["refunded"] = refunded
                if rnd.random() < 0.8:
                    settled = refunded + timedelta(hours=rnd.uniform(1, 20))
                    hop = self.take("hop")
                    self.stage(tx, "refund_settled", settled, "erp", hop, refund, cur)
                    self.key(hop, "refund_id", f"R{i}")
                    stages["refund_settled"] = settled
        self.transaction(tx, channel, "", stages, amount, cur)

    def flush_batches(self, now: datetime, everything: bool = False) -> None:
        """Post every store batch whose boundary has passed: one hop naming its receipts."""
        for store, (boundary, receipts) in list(self.pending.items()):
            if not everything and boundary > now:
                continue
            del self.pending[store]
            if not receipts:
                continue
            hop = self.take("hop")
            posted = boundary + timedelta(seconds=70)
            total = sum((a for _, a in receipts), Decimal(0))
            for tx, _ in receipts:
                self.stage(tx, "posted", posted, "erp", hop, total, "USD", fanout=True)
                self.key(hop, "pos_receipt", f"R-{tx}", fanout=True)
            self.key(hop, "batch_id", f"B-{store}-{boundary:%Y%m%d%H%M}")
            # the receipts' transactions reached posted (their stage columns stay as
            # written: reconciliation reads the stage rows)


def load(gen: Gen) -> dict[str, int]:
    from django.db import connection

    specs = tables()
    names = [table for table, _, _ in specs.values()]
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute("SET maintenance_work_mem = '1GB'")
        indexes = secondary_indexes(cur, names)
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        t = time.perf_counter()
        for i in range(gen.orders):
            gen.order(i)
            if len(gen.rows["stage"]) >= FLUSH:
                copy_rows(cur, specs, gen.rows)
                print(f"\r  {i + 1:,} orders", end="", flush=True)
        gen.flush_batches(gen.created, everything=True)
        copy_rows(cur, specs, gen.rows)
        print(f"\r  {gen.orders:,} orders COPYed in {time.perf_counter() - t:.0f} s" + " " * 20)
        took = rebuild_indexes(cur, indexes)
        print(f"  {len(indexes)} indexes rebuilt in {took:.0f} s")
        reset_sequences(cur, names)
        cur.execute("RESET maintenance_work_mem")
    counts = {}
    with connection.cursor() as cur:
        for table in names:
            cur.execute(f"VACUUM ANALYZE {table}")
            cur.execute(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{table}'")
            counts[table] = cur.fetchone()[0]
    return counts


def configure() -> None:
    from observatory.reconciliation.models import Rule, StoreZone

    Rule.objects.update(time_zone=SHOP_ZONE)
    for store, zone in STORES.items():
        StoreZone.objects.update_or_create(store_id=store, defaults={"time_zone": zone})


def timed(label: str, fn: Any) -> float:
    t = time.perf_counter()
    out = fn()
    took = time.perf_counter() - t
    print(f"  {label:<44} {took:8.1f} s   {getattr(out, 'summary', lambda: '')()}")
    return took


def touch_day(day: datetime, limit: int | None = None) -> int:
    """Queue every transaction of one business day (New York) for reconciliation, as the
    stitcher queues what it touched."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO transactions_touched (consumer, transaction_id) "
            "SELECT 'reconciliation', id FROM transactions_transaction "
            "WHERE captured_at >= %s AND captured_at < %s ORDER BY id "
            + (f"LIMIT {int(limit)} " if limit else "")
            + "ON CONFLICT DO NOTHING",
            [day, day + timedelta(days=1)],
        )
        return int(cur.rowcount)


def requests(n: int, day: str, since: str, until: str) -> dict[str, Run]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from observatory.access.actions import do_create_api_token

    collect_static()
    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_user("bench", password="x", is_staff=True)
    page = Client()
    page.force_login(user)
    _, token = do_create_api_token(f"bench-{time.time_ns()}", "read")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    window = f"since={since}&until={until}"
    runs = {
        "GET /reconciliation/ (31 days)": (page, f"/reconciliation/?{window}"),
        "GET /reconciliation/<rule>/<day>/": (page, f"/reconciliation/shopify-orders/{day}/"),
        "GET /api/v1/reconciliation (31 days)": (api, f"/api/v1/reconciliation?{window}"),
        "GET /api/v1/reconciliation/{rule}/{day}": (
            api,
            f"/api/v1/reconciliation/pos-cash-sales/{day}",
        ),
    }
    out = {}
    for label, (client, url) in runs.items():
        assert client.get(url).status_code == 200, url  # warm
        run = Run()
        for _ in range(n):
            response = run.get(client, url)
            assert response.status_code == 200
        run.report(label, p99=False)
        out[label] = run
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="measure the database loaded before")
    args = parser.parse_args()
    open_scratch(DB, reuse=args.reuse)
    from django.core.management import call_command
    from django.db import connection

    from observatory.reconciliation.actions import do_reconcile
    from observatory.reconciliation.models import Result

    end = datetime.now(UTC).replace(hour=5, minute=0, second=0, microsecond=0)
    if not args.reuse:
        call_command("migrate", verbosity=0)
        print(f"loading {args.orders:,} orders over {args.days} days")
        counts = load(Gen(args.seed, args.orders, args.days, end))
        print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    configure()
    print(f"PostgreSQL {connection.pg_version}; rules in {SHOP_ZONE}, stores in their zones")

    rebuild = timed("full rebuild, every default rule", lambda: do_reconcile(full=True))
    days = Result.objects.order_by("day").values_list("day", flat=True).distinct()
    listed = list(days)
    middle = listed[len(listed) // 2]
    midnight = datetime(middle.year, middle.month, middle.day, 5, tzinfo=UTC)  # NY, winter
    touched = touch_day(midnight)
    day_run = timed(
        f"incremental: one day touched ({touched:,} transactions)", lambda: do_reconcile(force=True)
    )
    small = touch_day(midnight, 1000)
    small_run = timed(f"incremental: {small:,} transactions", lambda: do_reconcile(force=True))
    nothing = timed("incremental: nothing touched", lambda: do_reconcile(force=True))

    last = listed[-1]
    since = (last - timedelta(days=30)).isoformat()
    print(f"requests ({args.requests} each, in-process, signed in / read token):")
    runs = requests(args.requests, middle.isoformat(), since, last.isoformat())
    p95 = {k: quantile(r.ms, 0.95) for k, r in runs.items()}
    page = max(v for k, v in p95.items() if "/api/" not in k)
    api = max(v for k, v in p95.items() if "/api/" in k)
    print(
        f"reconciliation at {args.orders:,} orders over {args.days} days: rebuild "
        f"{rebuild:.0f} s (target 300), one day {day_run:.1f} s (target 10; "
        f"{small_run:.1f} s for {small:,}, {nothing:.2f} s idle), pages p95 {page:.0f} ms "
        f"(target 300), API p95 {api:.0f} ms (target 100)"
    )


if __name__ == "__main__":
    main()
