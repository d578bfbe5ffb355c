"""``manage.py simulate`` against a live server: a few hundred orders of each scenario.

Everything goes through the real endpoints (OTLP from the OpenTelemetry SDK, signed
Shopify webhooks, CloudEvents); the hops stored are then stitched into transactions.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from observatory.access.actions import do_create_ingest_token
from observatory.hops.models import DuplicateDelivery, Hop, HopKey
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import Conflict, Transaction

# transactional: the seeded reference data is restored by tests/conftest.py
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ORDERS = 300
RESULT = re.compile(r"simulated ([\d,]+) orders, ([\d,]+) hops, ([\d,]+) send errors")


class Run:
    """The command's output, parsed."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        match = RESULT.fullmatch(lines[-1])
        assert match, lines[-1]
        self.orders, self.hops, self.errors = (int(g.replace(",", "")) for g in match.groups())
        self.channels = _tally(_line(lines, "orders by channel: ").split(" (")[0])
        self.counts = _tally(_line(lines, "also: "))
        self.faults = _tally(_line(lines, "faults injected: "))
        sent = _line(lines, "hops sent by endpoint: ")
        dup = re.search(r"webhooks [\d,]+ in [\d,]+ requests \(([\d,]+) answered", sent)
        self.webhook_duplicates = int(dup.group(1).replace(",", "")) if dup else 0
        self.windows: dict[str, tuple[datetime, datetime]] = {}
        for line in lines:
            found = re.match(r"\s+(.+) window \(business time\): (\S+ \S+) - (\S+) UTC", line)
            if found:
                begin = datetime.fromisoformat(found.group(2)).replace(tzinfo=UTC)
                end = datetime.fromisoformat(f"{begin.date()}T{found.group(3)}+00:00")
                if end < begin:
                    end += timedelta(days=1)
                self.windows[found.group(1)] = (begin, end)


def _line(lines: list[str], prefix: str) -> str:
    return next(line[len(prefix) :] for line in lines if line.startswith(prefix))


def _tally(text: str) -> Counter[str]:
    out: Counter[str] = Counter()
    if text.strip() == "none":
        return out
    for part in text.split(", "):
        name, value = part.rsplit(" ", 1)
        out[name] = int(value.replace(",", ""))
    return out


def simulate(url: str, *args: str, token: str | None = None) -> Run:
    if token is None:
        _, token = do_create_ingest_token("simulator")
    out = StringIO()
    call_command("simulate", "--url", url, "--token", token, "--quiet", *args, stdout=out)
    return Run(out.getvalue().splitlines())


def scenario_run(live_server: Any, scenario: str, seed: int, days: str = "2") -> Run:
    started = datetime.now(UTC)
    run = simulate(
        live_server.url,
        "--orders",
        str(ORDERS),
        "--backfill-days",
        days,
        "--scenario",
        scenario,
        "--seed",
        str(seed),
    )
    assert run.orders == ORDERS and run.errors == 0
    # every hop the command says it delivered is stored once, or counted as a duplicate
    assert Hop.objects.count() + DuplicateDelivery.objects.count() == run.hops
    assert set(Hop.objects.values_list("via", flat=True)) == {"otlp", "event", "shopify"}
    kinds = set(HopKey.objects.values_list("kind", flat=True))
    assert {
        "order_number",
        "shopify_order_id",
        "erp_sales_order",
        "shipment_id",
        "tracking_number",
        "fulfillment_id",
        "invoice_id",
        "pos_receipt",
        "batch_id",
        "store_id",
        "marketplace_order_id",
        "inventory_update_id",
        "sku",
        "location",
        "correlation_id",
    } <= kinds
    assert not Hop.objects.filter(start_time__gt=datetime.now(UTC)).exists()
    assert Hop.objects.filter(start_time__lt=started - timedelta(hours=6)).exists()
    # a POS batch posting fans out to its receipts; a queue consumer links to its producer
    batch = Hop.objects.filter(operation="netsuite.cashSale.batchCreate", outcome="ok").first()
    assert batch is not None and batch.keys.filter(kind="pos_receipt", fanout=True).exists()
    validate = Hop.objects.filter(operation="process orders.validate").first()
    assert validate is not None and validate.extra["links"]
    bridge = Hop.objects.get(span_id=validate.extra["links"][0]["span_id"])
    assert bridge.trace_id != validate.trace_id
    assert {k.kind for k in validate.keys.all()} >= {"order_number", "shopify_order_id"}
    # the server's status maps see the platform words
    assert Hop.objects.filter(system="erp", platform_status="Pending Fulfillment").exists()
    assert Hop.objects.filter(system="carrier", platform_status__in=["in_transit", "InTransit"])
    do_stitch()
    return run


def orders() -> Any:
    return Transaction.objects.filter(merged_into__isnull=True, kind="order")


def check_transactions(run: Run, *, lost: int = 0) -> None:
    """One transaction per order, of the right channel, captured; all but the lost and
    the youngest posted; the warehouse, carrier and Shopify stages reached."""
    assert orders().count() == ORDERS
    assert Counter(orders().values_list("channel", flat=True)) == run.channels
    assert not orders().filter(captured_at__isnull=True).exists()
    old = orders().filter(captured_at__lt=datetime.now(UTC) - timedelta(hours=1))
    unposted = old.filter(posted_at__isnull=True, cancelled_at__isnull=True).count()
    # a lost order captured in the last hour is not counted here
    assert (unposted == 0) if not lost else (1 <= unposted <= lost)
    for stage in ("validated", "payment_authorized", "released", "picked", "shipped"):
        assert orders().filter(**{f"{stage}_at__isnull": False}).exists(), stage
    assert orders().filter(invoiced_at__isnull=False, fulfillment_synced_at__isnull=False)
    updates = Transaction.objects.filter(merged_into__isnull=True, kind="inventory_update")
    assert updates.count() == run.counts["inventory_updates"]
    assert not updates.filter(inventory_published_at__isnull=True).exclude(
        inventory_adjusted_at__gt=datetime.now(UTC) - timedelta(hours=1)
    )


def test_normal(live_server: Any) -> None:
    run = scenario_run(live_server, "normal", seed=11)
    assert not run.faults
    assert not DuplicateDelivery.objects.exists()
    errors = Hop.objects.filter(outcome="error")
    assert all("timed out" in h.status_message for h in errors)
    check_transactions(run)
    assert not Conflict.objects.exists()
    posted = orders().filter(channel="web", posted_at__isnull=False)
    late = posted.filter(posted_at__gt=F("captured_at") + timedelta(seconds=60))
    assert late.count() <= 0.05 * posted.count()  # the 60 s SLA holds for almost all


def test_erp_outage(live_server: Any) -> None:
    run = scenario_run(live_server, "erp-outage", seed=12)
    begin, end = run.windows["ERP outage"]
    failed = Hop.objects.filter(system="erp", outcome="error", status_message__contains="503")
    assert failed.count() == run.faults["erp_503"] >= 5
    assert all(begin <= h.start_time < end for h in failed)
    assert failed.filter(retry_attempt__gte=2).exists()
    assert failed.filter(extra__events__0__name="exception").exists()
    drained = Hop.objects.filter(system="erp", outcome="ok", retry_attempt__gte=2)
    assert drained.exists() and all(h.start_time >= end for h in drained)
    check_transactions(run)
    stuck = orders().filter(posted_at__gt=F("captured_at") + timedelta(seconds=60))
    assert stuck.filter(captured_at__gte=begin, captured_at__lt=end).exists()
    assert orders().filter(failed_hop_count__gt=0).exists()


def test_peak_sale(live_server: Any) -> None:
    run = scenario_run(live_server, "peak-sale", seed=13, days="0.5")
    assert run.faults["inventory_lag_over_sla"] > 0
    check_transactions(run)
    updates = Transaction.objects.filter(
        merged_into__isnull=True, kind="inventory_update", inventory_published_at__isnull=False
    )
    slow = updates.filter(
        inventory_published_at__gt=F("inventory_adjusted_at") + timedelta(minutes=5)
    )
    assert slow.count() >= 0.05 * updates.count() > 0


def test_chaos(live_server: Any) -> None:
    run = scenario_run(live_server, "chaos", seed=14)
    for fault in ("duplicate_delivery", "lost_event", "conflicting_id", "wms_silent_dropped"):
        assert run.faults[fault] > 0, fault
    # duplicate webhook deliveries are stored once and counted
    shopify_dups = DuplicateDelivery.objects.filter(hop__via="shopify").count()
    assert shopify_dups == run.webhook_duplicates > 0
    assert Hop.objects.filter(replay=True).count() == run.faults["replayed_posting"]
    # the conflicting ERP ids are refused links, with both sides recorded
    conflicting = Hop.objects.filter(pk__in=Conflict.objects.values("hop_id"))
    assert conflicting.count() == run.faults["conflicting_id"]
    assert {h.operation for h in conflicting} == {"netsuite.salesOrder.create"}
    for conflict in Conflict.objects.all():
        assert conflict.transaction_id and conflict.other_transaction_id
        assert conflict.transaction_id != conflict.other_transaction_id
    # lost events: captured in Shopify, never posted
    check_transactions(run, lost=run.faults["lost_event"])
    # the silent warehouse: no WMS hop in its window while the ERP kept posting
    begin, end = run.windows["silent warehouse"]
    assert not Hop.objects.filter(system="wms", start_time__gte=begin, start_time__lt=end)
    assert Hop.objects.filter(system="erp", start_time__gte=begin, start_time__lt=end)


def test_same_seed_is_idempotent(live_server: Any) -> None:
    args = ("--orders", "60", "--backfill-days", "0.5", "--seed", "5")
    first = simulate(live_server.url, *args)
    stored = Hop.objects.count()
    assert stored == first.hops
    again = simulate(live_server.url, *args)
    assert again.hops == first.hops
    assert Hop.objects.count() == stored  # the same ids: every delivery a duplicate
    assert DuplicateDelivery.objects.count() == again.hops


def test_live_orders_then_drain(live_server: Any) -> None:
    run = simulate(
        live_server.url, "--orders", "20", "--rate", "10", "--speed", "30", "--seed", "6"
    )
    assert run.orders == 20 and run.errors == 0
    assert Hop.objects.count() == run.hops
    do_stitch()
    web = orders().filter(channel="web")
    assert web.exists() and not web.filter(validated_at__isnull=True).exists()


def test_unreachable_or_refused_is_reported_not_raised(live_server: Any) -> None:
    out = StringIO()
    with pytest.raises(CommandError, match="no hop could be delivered"):
        call_command(
            "simulate",
            "--url",
            live_server.url,
            "--token",
            "obs_in_not-a-token",
            "--orders",
            "5",
            "--backfill-days",
            "0.1",
            "--quiet",
            stdout=out,
        )
    lines = out.getvalue().splitlines()
    assert RESULT.fullmatch(lines[-1])
    assert "HTTP 401" in "\n".join(lines)
