"""``manage.py simulate`` against a live server: a few hundred orders of each scenario.

Everything goes through the real endpoints (OTLP from the OpenTelemetry SDK, signed
Shopify webhooks, CloudEvents); the hops stored are then stitched into transactions and
swept (what ``manage.py stitch`` does), the KPI rollups filled and read through
``GET /api/v1/kpis``, and the alert rules evaluated on business time: every fault a
scenario injects must show up as the exception, KPI or alert it should cause.

Where a figure follows from the data stored (which orders waited past a deadline, which
failed hops were retried successfully), it is recomputed here from the stage columns and
hops and compared exactly; counts the command reports (faults, duplicate deliveries) are
compared exactly where the simulation model makes them exact.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client

from observatory.access.actions import do_create_api_token, do_create_ingest_token
from observatory.alerts.actions import do_create_rule, do_evaluate
from observatory.alerts.models import FIRING, Alert, Rule
from observatory.alerts.models import RESOLVED as ALERT_RESOLVED
from observatory.hops.models import DuplicateDelivery, Hop, HopKey
from observatory.kpis.actions import do_fill_rollups
from observatory.kpis.compute import exact_quantile
from observatory.pipeline.wiring import tick as do_pipeline_tick
from observatory.simulator import catalog
from observatory.simulator.timing import WAREHOUSE_CLOSE_H, WAREHOUSE_OPEN_H, is_open
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import (
    STAGE_COLUMNS,
    Conflict,
    SlaPolicy,
    Transaction,
    TransactionHop,
    TransactionKey,
)
from observatory.triage.models import CONFLICT, DUPLICATE, FAILED_HOP, OPEN, RESOLVED, STUCK, Issue
from observatory.triage.sla import satisfying_stages

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
        #: set by scenario_run: where the history ends, and the business "now" of the sweep
        self.started = self.swept_at = datetime.now(UTC)
        #: the ground truth the run wrote (scenario_run asks for one)
        self.truth: dict[str, Any] = {}

    def truths(self, kind: str = "order", **where: str) -> list[dict[str, Any]]:
        """The ground truth's transactions of ``kind`` (and ``channel``...)."""
        return [
            t
            for t in self.truth["transactions"]
            if t["kind"] == kind and all(t[k] == v for k, v in where.items())
        ]


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


def business_end() -> datetime:
    """Where the scenario runs' history ends: the latest Wednesday, 09:07 UTC.

    The history follows business-hours curves (local hour, weekday), and the faults are
    placed in it by order count; ending it at the same weekday and hour whatever the
    wall clock says gives the same traffic around every fault window at every run (with
    the history ending at the moment the tests run, a silent-warehouse window could fall
    in a night when no warehouse works, or an outage catch no web order)."""
    now = datetime.now(UTC)
    end = now.replace(hour=9, minute=7, second=0, microsecond=0)
    end -= timedelta(days=(end.weekday() - 2) % 7)
    return end if end < now else end - timedelta(days=7)


def scenario_run(
    live_server: Any, scenario: str, seed: int, tmp_path: Path, days: str = "2"
) -> Run:
    started = business_end()
    truth = tmp_path / "truth.json"
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
        "--history-end",
        started.isoformat(),
        "--truth",
        str(truth),
    )
    assert run.orders == ORDERS and run.errors == 0
    assert f"ground truth: {truth} (" in run.lines[-2]
    run.truth = json.loads(truth.read_text())
    assert run.truth["end"] == started.isoformat().replace("+00:00", "Z")
    # the truth counts the deliveries the server counted
    deliveries = run.truth["deliveries"].values()
    assert sum(d["deliveries"] for d in deliveries) == run.hops
    assert sum(d["duplicates"] for d in deliveries) == run.webhook_duplicates
    # every hop the command says it delivered is stored once, or counted as a duplicate
    assert Hop.objects.count() + DuplicateDelivery.objects.count() == run.hops
    # inventory snapshots are deliveries but no hops (docs/ingest.md): counted apart
    snapshots = sum(1 for s in run.truth["inventory"]["snapshots"] if s["delivered"])
    assert snapshots and f"inventory snapshots sent: {snapshots:,}" in run.lines
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
    assert not Hop.objects.filter(start_time__gt=started).exists()  # nothing after its end
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
    # one turn of the pipeline, as `manage.py stitch --now <the history's end>` does:
    # stitch, then sweep the SLAs as of the end of the history
    run.started = run.swept_at = started
    do_pipeline_tick(clock=lambda: started, full=True)
    check_stuck(run)
    check_failed_hops()
    return run


def orders() -> Any:
    return Transaction.objects.filter(merged_into__isnull=True, kind="order")


REF_KINDS = ("order_number", "pos_receipt", "marketplace_order_id")


def refs(transactions: Any) -> set[str]:
    """The refs (the ground truth's names) of these order transactions."""
    return set(
        TransactionKey.objects.filter(transaction__in=transactions, kind__in=REF_KINDS)
        .values_list("value", flat=True)
        .distinct()
    )


def check_transactions(run: Run) -> None:
    """One transaction per order, of the right channel, captured; posted unless the
    ground truth says the order never was (chaos: lost queue messages, orders shipped
    without the ERP), but for the youngest; the warehouse, carrier and Shopify stages
    reached.

    A replayed posting (chaos) makes the ERP create a second sales order for an order;
    the link to the order is refused (one order, one sales order), so that sales order is
    a transaction of its own, never captured, named by the duplicate exception."""
    truth = run.truths()
    assert len(truth) == ORDERS
    # every capture was delivered in these runs (a Shopify retry could bring one after
    # the end: the truth would say so)
    assert all(t["stages"]["captured"]["delivered"] for t in truth)
    captured = orders().filter(captured_at__isnull=False)
    assert captured.count() == ORDERS
    assert Counter(captured.values_list("channel", flat=True)) == run.channels
    assert refs(captured) == {t["ref"] for t in truth}
    second = orders().filter(captured_at__isnull=True)
    assert second.count() == run.faults["replayed_posting"]
    assert all(t.keys.count() == 1 and t.posted_at for t in second)
    hour_ago = run.started - timedelta(hours=1)
    old = orders().filter(captured_at__lt=hour_ago)
    unposted = old.filter(posted_at__isnull=True, cancelled_at__isnull=True)
    assert refs(unposted) == {
        t["ref"]
        for t in truth
        if not {"posted", "cancelled"} & set(t["stages"])
        and datetime.fromisoformat(t["stages"]["captured"]["at"]) < hour_ago
    }
    for stage in ("validated", "payment_authorized", "released", "picked", "shipped"):
        assert orders().filter(**{f"{stage}_at__isnull": False}).exists(), stage
    assert orders().filter(invoiced_at__isnull=False, fulfillment_synced_at__isnull=False)
    updates = Transaction.objects.filter(merged_into__isnull=True, kind="inventory_update")
    assert updates.count() == run.counts["inventory_updates"]
    assert not updates.filter(inventory_published_at__isnull=True).exclude(
        inventory_adjusted_at__gt=run.started - timedelta(hours=1)
    )


# --- what the sweep, the KPIs and the alerts must say -------------------------------------


def expected_stuck(at: datetime) -> dict[tuple[int, str], datetime | None]:
    """(transaction, stage) -> what ended the wait (None: still waiting), for every
    transaction that was past a deadline of an active SLA policy (plus its batch
    allowance) at some moment before ``at``: recomputed from the stage columns.

    A later stage of the same sequence ends the wait too when the policy lets the stage be
    skipped (never for ``posted``); so does a cancellation. A channel's own policy
    replaces the every-channel one.
    """
    policies = list(SlaPolicy.objects.filter(active=True).order_by("id"))
    specific: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
    for p in policies:
        if p.channel:
            specific[(p.transaction_kind, p.from_stage, p.to_stage)].add(p.channel)
    out: dict[tuple[int, str], datetime | None] = {}
    for p in policies:
        start = f"{p.from_stage}_at"
        stages = satisfying_stages(p.to_stage) if p.skippable else (p.to_stage,)
        ends = [f"{s}_at" for s in stages if s in STAGE_COLUMNS]
        qs = Transaction.objects.filter(
            merged_into__isnull=True, kind=p.transaction_kind, **{f"{start}__isnull": False}
        )
        if p.channel:
            qs = qs.filter(channel=p.channel)
        else:
            qs = qs.exclude(channel__in=specific[(p.transaction_kind, p.from_stage, p.to_stage)])
        limit = timedelta(seconds=p.deadline_s + p.batch_allowance_s)
        for row in qs.values("id", start, "cancelled_at", *ends):
            due = row[start] + limit
            if due >= at:
                continue
            came = [row[c] for c in [*ends, "cancelled_at"] if row[c] is not None and row[c] <= at]
            ended = min(came, default=None)
            if ended is None or ended > due:
                out.setdefault((row["id"], p.to_stage), ended)
    return out


def check_stuck(run: Run) -> dict[tuple[int, str], Issue]:
    """One ``stuck`` exception per transaction and stage that waited past its deadline:
    still open while it waits, resolved when the stage came (on business time) otherwise.

    The history reached the server in a burst before the one sweep, so most of these were
    overdue while no sweep looked: they must be there all the same."""
    expected = expected_stuck(run.swept_at)
    stuck = {(i.transaction_id, i.stage): i for i in Issue.objects.filter(kind=STUCK)}
    assert set(stuck) == set(expected)
    for key, ended in expected.items():
        issue = stuck[key]
        if ended is None:
            assert issue.state == OPEN, (key, issue)
        else:
            assert (issue.state, issue.resolved_at) == (RESOLVED, ended), (key, issue)
    return stuck


def check_failed_hops() -> Counter[str]:
    """One ``failed_hop`` exception per (transaction, system, operation) with a failure,
    resolved exactly when a later hop of the same operation on it succeeded. Returns how
    many per system."""
    failed_at: dict[tuple[int, str, str], datetime] = {}
    ok_at: defaultdict[tuple[int, str, str], list[datetime]] = defaultdict(list)
    for tx, system, operation, outcome, start in TransactionHop.objects.filter(
        transaction__merged_into__isnull=True
    ).values_list(
        "transaction_id", "hop__system", "hop__operation", "hop__outcome", "hop__start_time"
    ):
        key = (tx, system, operation)
        if outcome == "error":
            failed_at[key] = max(failed_at.get(key, start), start)
        elif outcome == "ok":
            ok_at[key].append(start)
    issues = {
        (i.transaction_id, i.system, i.operation): i for i in Issue.objects.filter(kind=FAILED_HOP)
    }
    assert set(issues) == set(failed_at)
    for key, last in failed_at.items():
        retried = any(at > last for at in ok_at[key])
        assert issues[key].state == (RESOLVED if retried else OPEN), (key, issues[key])
    return Counter(system for _, system, _ in failed_at)


def kpis(since: datetime, until: datetime, **filters: str) -> dict[str, Any]:
    """Fill the rollups, then ``GET /api/v1/kpis`` as an API client would."""
    do_fill_rollups()
    _, token = do_create_api_token("scenario-check", "read")
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(
        "/api/v1/kpis", {"since": since.isoformat(), "until": until.isoformat(), **filters}
    )
    assert answer.status_code == 200, answer.content
    body: dict[str, Any] = answer.json()["kpis"]
    return body


def whole_run(run: Run, **filters: str) -> dict[str, Any]:
    """The KPIs over everything the run sent (its history starts at most 2 days back)."""
    return kpis(run.started - timedelta(days=3), run.started + timedelta(minutes=1), **filters)


def lags(values: list[tuple[datetime, datetime]]) -> list[float]:
    return sorted(max(0.0, (end - begin).total_seconds()) for begin, end in values)


def wms_silence_rule() -> Rule:
    """A rule as an operator would add it (a ``silence`` rule, docs/alerts.md): the warehouse has sent
    nothing for 30 minutes while the ERP kept sending. (The default rules watch the ERP.)"""
    return do_create_rule(
        who="scenario-check",
        name="Warehouse silent while the ERP posts",
        kind="silence",
        severity="critical",
        system="wms",
        while_system="erp",
        window_s=1800,
    )


def evaluate_at(at: datetime) -> None:
    do_evaluate(clock=lambda: at)


def warehouses_busy(at: datetime, window: timedelta) -> bool:
    """Every warehouse in its shift all through ``[at - window, at]``."""
    return all(
        is_open(moment, w.utc_offset_h, WAREHOUSE_OPEN_H, WAREHOUSE_CLOSE_H)
        for w in catalog.WAREHOUSES
        for moment in (at - window, at)
    )


def test_normal(live_server: Any, tmp_path: Path) -> None:
    run = scenario_run(live_server, "normal", seed=11, tmp_path=tmp_path)
    assert not run.faults
    assert not DuplicateDelivery.objects.exists()
    errors = Hop.objects.filter(outcome="error")
    assert all("timed out" in h.status_message for h in errors)
    check_transactions(run)
    assert not Conflict.objects.exists()
    assert not Issue.objects.filter(kind__in=[CONFLICT, DUPLICATE]).exists()
    posted = orders().filter(channel="web", posted_at__isnull=False)
    late = posted.filter(posted_at__gt=F("captured_at") + timedelta(seconds=60))
    assert late.count() <= 0.05 * posted.count()  # the 60 s SLA holds for almost all
    # the few the connector's timeout retry made late are resolved exceptions, none open
    stuck = Issue.objects.filter(kind=STUCK, stage="posted", transaction__channel="web")
    assert set(stuck.values_list("transaction_id", flat=True)) == set(
        late.values_list("id", flat=True)
    )
    assert not stuck.exclude(state=RESOLVED)
    k = whole_run(run)
    dups = k["duplicate_rate"]
    assert (dups["deliveries"], dups["duplicates"], dups["rate"], dups["posted_twice"]) == (
        run.hops,
        0,
        0.0,
        0,
    )
    assert all(s["duplicates"] == 0 for s in dups["by_source"].values())
    assert dups["worst_source_rate"] == 0.0
    assert k["retries"]["replays"] == 0
    web = whole_run(run, channel="web")["acceptance_to_posting"]
    assert web["count"] == posted.count() and web["within_sla"] >= 0.95
    # a warehouse at work is never silent for half an hour: asked at every hour of the
    # history when every warehouse was in its shift (the first hours had no orders yet)
    rule = wms_silence_rule()
    window = timedelta(seconds=rule.window_s or 0)
    at = run.started.replace(minute=0, second=0, microsecond=0) - timedelta(hours=40)
    asked = 0
    while at < run.started:
        if warehouses_busy(at, window):
            evaluate_at(at)
            asked += 1
        at += timedelta(hours=1)
    assert asked >= 10
    assert not Alert.objects.filter(rule=rule).exists()


def test_erp_outage(live_server: Any, tmp_path: Path) -> None:
    run = scenario_run(live_server, "erp-outage", seed=12, tmp_path=tmp_path)
    begin, end = run.windows["ERP outage"]
    failed = Hop.objects.filter(system="erp", outcome="error", status_message__contains="503")
    assert failed.count() == run.faults["erp_503"] >= 5
    assert all(begin <= h.start_time < end for h in failed)
    assert failed.filter(retry_attempt__gte=2).exists()
    assert failed.filter(extra__events__0__name="exception").exists()
    drained = Hop.objects.filter(system="erp", outcome="ok", retry_attempt__gte=2)
    assert drained.exists() and all(h.start_time >= end for h in drained)
    check_transactions(run)
    assert orders().filter(failed_hop_count__gt=0).exists()
    # every web order captured in the outage (bar its last minute) waited past the 60 s
    # SLA: a stuck exception each, closed when its posting landed after the outage
    caught = orders().filter(
        channel="web", captured_at__gte=begin, captured_at__lt=end - timedelta(seconds=60)
    )
    assert caught.exists()
    stuck = Issue.objects.filter(kind=STUCK, stage="posted", transaction__in=caught)
    assert stuck.count() == caught.count()
    for issue in stuck.select_related("transaction"):
        assert (issue.state, issue.resolution) == (RESOLVED, "posted reached")
        assert issue.resolved_at == issue.transaction.posted_at >= end
    # the failed postings: one exception per order and operation (a POS batch: per
    # receipt), each closed by the retry that went through after the outage
    failed_here = set(
        TransactionHop.objects.filter(
            hop__in=failed, transaction__merged_into__isnull=True
        ).values_list("transaction_id", "hop__operation")
    )
    exceptions = Issue.objects.filter(
        kind=FAILED_HOP, system="erp", event_at__gte=begin, event_at__lt=end
    )
    assert {(i.transaction_id, i.operation) for i in exceptions} == failed_here
    assert len(failed_here) >= 2
    assert all(i.state == RESOLVED for i in exceptions)
    assert all(i.resolution == "a later attempt succeeded" for i in exceptions)
    # acceptance-to-posting through the API, for the web orders captured in the outage
    # (bar its last minute, when a posting retried after it could still be in time):
    # every one of them late
    a2p = kpis(begin, end - timedelta(seconds=60), channel="web")["acceptance_to_posting"]
    values = lags(list(caught.values_list("captured_at", "posted_at")))
    assert a2p["count"] == len(values) == caught.count()
    # (a quantile from the rollups' sketches is within 1 % of the exact one: docs/kpis.md)
    assert a2p["p95_s"] == pytest.approx(exact_quantile(values, 0.95), rel=0.01)
    assert a2p["p95_s"] > 60 and a2p["within_sla"] == 0.0
    # ... which the SLO attainment of the whole run shows
    overall = whole_run(run, channel="web")["acceptance_to_posting"]
    web = orders().filter(channel="web", posted_at__isnull=False)
    on_time = web.filter(posted_at__lte=F("captured_at") + timedelta(seconds=60)).count()
    assert overall["within_sla"] == pytest.approx(on_time / web.count())
    assert overall["within_sla"] < 1


def test_peak_sale(live_server: Any, tmp_path: Path) -> None:
    run = scenario_run(live_server, "peak-sale", seed=13, tmp_path=tmp_path, days="0.5")
    assert run.faults["inventory_lag_over_sla"] > 0
    check_transactions(run)
    updates = Transaction.objects.filter(
        merged_into__isnull=True, kind="inventory_update", inventory_published_at__isnull=False
    )
    slow = updates.filter(
        inventory_published_at__gt=F("inventory_adjusted_at") + timedelta(minutes=5)
    )
    assert slow.count() >= 0.05 * updates.count() > 0
    # each slow update was stuck past the 5 min SLA: an exception, resolved on publication
    late = Issue.objects.filter(kind=STUCK, stage="inventory_published", state=RESOLVED)
    assert set(late.values_list("transaction_id", flat=True)) == set(
        slow.values_list("id", flat=True)
    )
    lag = whole_run(run)["inventory_sync_lag"]
    values = lags(list(updates.values_list("inventory_adjusted_at", "inventory_published_at")))
    assert lag["count"] == len(values) == updates.count()
    assert lag["p95_s"] == pytest.approx(exact_quantile(values, 0.95), rel=0.01)
    assert lag["p95_s"] > 300
    assert lag["max_s"] == pytest.approx(values[-1])


def test_chaos(live_server: Any, tmp_path: Path) -> None:
    run = scenario_run(live_server, "chaos", seed=14, tmp_path=tmp_path)
    for fault in ("duplicate_delivery", "lost_event", "conflicting_id", "wms_silent_dropped"):
        assert run.faults[fault] > 0, fault
    # duplicate webhook deliveries are stored once and counted, and are no exception
    shopify_dups = DuplicateDelivery.objects.filter(hop__via="shopify").count()
    assert shopify_dups == run.webhook_duplicates > 0
    assert shopify_dups == DuplicateDelivery.objects.count()
    k = whole_run(run)
    dup = k["duplicate_rate"]
    # docs/kpis.md: duplicate deliveries / all deliveries, repeats included: every delivery
    # the command made is a stored hop or a repeat of one
    assert (dup["duplicates"], dup["deliveries"]) == (run.webhook_duplicates, run.hops)
    assert dup["rate"] == pytest.approx(run.webhook_duplicates / run.hops)
    # a replayed posting: the ERP made a second sales order, so the order was posted twice
    replays = Hop.objects.filter(replay=True)
    assert replays.count() == run.faults["replayed_posting"] == k["retries"]["replays"]
    twice = Issue.objects.filter(kind=DUPLICATE)
    assert {i.detail["duplicate"] for i in twice} <= {"posted_twice"}
    assert {i.hop_id for i in twice} == set(replays.values_list("id", flat=True))
    assert twice.count() == run.faults["replayed_posting"] == dup["posted_twice"]
    # the conflicting ERP ids are refused links, with both sides recorded; one conflict
    # exception per refused posting, however many of its keys clash
    refused = Conflict.objects.exclude(hop__replay=True)
    conflicting = Hop.objects.filter(pk__in=refused.values("hop_id"))
    assert conflicting.count() == run.faults["conflicting_id"]
    assert {h.operation for h in conflicting} == {"netsuite.salesOrder.create"}
    for conflict in Conflict.objects.all():
        assert conflict.transaction_id and conflict.other_transaction_id
        assert conflict.transaction_id != conflict.other_transaction_id
    exceptions = Issue.objects.filter(kind=CONFLICT)
    assert {i.hop_id for i in exceptions} == set(conflicting.values_list("id", flat=True))
    assert exceptions.count() == run.faults["conflicting_id"]
    assert all(i.detail["transaction_id"] and i.detail["other_transaction_id"] for i in exceptions)
    # lost events: captured in Shopify, never validated nor posted: stuck
    check_transactions(run)
    lost = orders().filter(channel="web", captured_at__isnull=False, validated_at__isnull=True)
    # (an order placed in the run's last seconds may still wait for a validation that was
    # due after the run's end: it is no lost one, but looks the same)
    recent = lost.filter(captured_at__gte=run.started - timedelta(minutes=1)).count()
    assert run.faults["lost_event"] <= lost.count() <= run.faults["lost_event"] + recent
    assert refs(lost) >= {e["ref"] for e in run.truth["lost"]}
    # shipped but never posted: the ERP never heard of these orders, a 3PL shipped them
    # from Shopify (their warehouse hops carry the order number, no sales order)
    never = run.truth["shipped_unposted"]
    assert len(never) == run.faults["shipped_unposted"] > 0
    shipped_unposted = (
        orders().filter(keys__kind="order_number").filter(keys__value__in=[e["ref"] for e in never])
    )
    assert shipped_unposted.count() == len(never)
    for tx in shipped_unposted:
        assert tx.validated_at and not tx.posted_at and not tx.invoiced_at
        assert not tx.keys.filter(kind="erp_sales_order").exists()
    assert shipped_unposted.filter(shipped_at__isnull=False).exists()
    # open stuck exceptions: the lost orders, those shipped without the ERP (no later
    # stage stands in for a posting), and the POS sales left out of their batch posting
    # (past the POS deadline and its batch allowance, 75 minutes)
    overdue = lost.filter(captured_at__lt=run.swept_at - timedelta(seconds=60))
    waiting = shipped_unposted.filter(captured_at__lt=run.swept_at - timedelta(seconds=60))
    left_out = orders().filter(
        keys__kind="pos_receipt",
        keys__value__in=[e["ref"] for e in run.truth["pos_receipts_left_out"]],
        posted_at__isnull=True,
        captured_at__lt=run.swept_at - timedelta(minutes=75),
    )
    open_stuck = Issue.objects.filter(kind=STUCK, stage="posted", state=OPEN)
    assert set(open_stuck.values_list("transaction_id", flat=True)) == set(
        overdue.values_list("id", flat=True)
    ) | set(waiting.values_list("id", flat=True)) | set(left_out.values_list("id", flat=True))
    assert overdue.exists()
    # the silent warehouse: no WMS hop in its window while the ERP kept posting
    begin, end = run.windows["silent warehouse"]
    assert not Hop.objects.filter(system="wms", start_time__gte=begin, start_time__lt=end)
    assert Hop.objects.filter(system="erp", start_time__gte=begin, start_time__lt=end)
    # ... which a silence rule sees at the end of the window, and sees end when the
    # warehouse speaks again
    rule = wms_silence_rule()
    at = end - timedelta(seconds=1)
    evaluate_at(at)
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.fired_at, alert.labels["system"]) == (FIRING, at, "wms")
    back = Hop.objects.filter(system="wms", start_time__gte=end).earliest("start_time")
    evaluate_at(back.start_time)
    alert.refresh_from_db()
    assert alert.state == ALERT_RESOLVED
    # the lost orders page the ERP team through the default stuck rule
    evaluate_at(run.swept_at)
    stuck_rule = Rule.objects.get(kind="stuck", stage="posted", channel="web")
    paged = Alert.objects.get(rule=stuck_rule, state=FIRING)
    assert paged.value == overdue.count() + waiting.count() and paged.labels["system"] == "erp"


def test_same_seed_is_idempotent(live_server: Any) -> None:
    # the same end too: a history ending "now" moves on between the runs, and a hop that
    # fell due in between is new
    end = business_end().isoformat()
    args = ("--orders", "60", "--backfill-days", "0.5", "--seed", "5", "--history-end", end)
    first = simulate(live_server.url, *args)
    stored = Hop.objects.count()
    assert stored == first.hops
    again = simulate(live_server.url, *args)
    assert again.hops == first.hops
    assert Hop.objects.count() == stored  # the same ids: every delivery a duplicate
    assert DuplicateDelivery.objects.count() == again.hops


def test_live_orders_then_drain(live_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    run = simulate(
        live_server.url,
        *("--orders", "20", "--rate", "10", "--speed", "30", "--seed", "6"),
        *("--truth", str(path)),
    )
    assert run.orders == 20 and run.errors == 0
    assert Hop.objects.count() == run.hops
    do_stitch()
    web = orders().filter(channel="web")
    assert web.exists() and not web.filter(validated_at__isnull=True).exists()
    # the ground truth of a live run: business times as stamped on the hops
    truth = json.loads(path.read_text())
    assert run.lines[-2].startswith(f"ground truth: {path} (")
    assert truth["start"] < truth["end"] <= datetime.now(UTC).isoformat()
    assert sum(d["deliveries"] for d in truth["deliveries"].values()) == run.hops
    stored = {
        key.value: key.transaction
        for key in TransactionKey.objects.filter(kind="order_number").select_related("transaction")
    }
    web_truth = [t for t in truth["transactions"] if t["channel"] == "web"]
    assert web_truth
    for t in web_truth:
        captured = t["stages"]["captured"]
        if captured["delivered"]:
            assert stored[t["ref"]].captured_at == datetime.fromisoformat(captured["at"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--truth", "/nonexistent-dir/truth.json"), "does not exist"),
        (("--export-delay", "0"), "--export-delay must be positive"),
        (("--relay-every", "-1"), "must not be negative"),
        (("--shopify-retry-rate", "1.5"), "a share between 0 and 1"),
    ],
)
def test_telemetry_and_truth_options_are_checked(
    live_server: Any, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        simulate(live_server.url, "--orders", "5", *args)


def test_no_telemetry_delay(live_server: Any) -> None:
    end = business_end().isoformat()
    args = ("--orders", "40", "--backfill-days", "0.5", "--seed", "5", "--history-end", end)
    run = simulate(live_server.url, *args, "--no-telemetry-delay")
    assert "telemetry delay: none (--no-telemetry-delay)" in run.lines
    assert run.errors == 0 and Hop.objects.count() == run.hops


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


@pytest.mark.parametrize(
    ("end", "extra", "message"),
    [
        ("yesterday", (), "is not an ISO 8601 time"),
        ((datetime.now(UTC) + timedelta(hours=1)).isoformat(), (), "is in the future"),
        ("2026-01-07T09:07Z", ("--duration", "5"), "goes with --backfill-days and no live"),
    ],
)
def test_history_end_is_checked(
    live_server: Any, end: str, extra: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        simulate(live_server.url, "--backfill-days", "0.1", "--history-end", end, *extra)


def test_history_once_sends_the_history_on_the_first_run_only(
    live_server: Any, tmp_path: Path
) -> None:
    """make run starts the simulator with --history-once .data/demo-history: a second
    start on the same data goes on with the live traffic, without a second history."""
    marker = tmp_path / "demo-history"
    args = ("--backfill-days", "0.2", "--duration", "1", "--drain", "0")
    simulate(live_server.url, *args, "--seed", "3", "--history-once", str(marker))
    assert marker.exists()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)  # the history is older
    history = Hop.objects.filter(start_time__lt=an_hour_ago).count()
    assert history > 0
    # another seed: a history sent again would be new hops, not duplicates
    second = simulate(live_server.url, *args, "--seed", "4", "--history-once", str(marker))
    assert second.lines[0].startswith("history already sent")
    assert Hop.objects.filter(start_time__lt=an_hour_ago).count() == history
