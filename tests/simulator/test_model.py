"""The simulation model alone: deterministic, realistic, and each scenario's faults present."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from observatory.simulator import model
from observatory.simulator.model import Plan, Simulation, Step, history_volume
from observatory.simulator.payloads import render
from observatory.simulator.scenarios import SCENARIOS
from observatory.simulator.timing import (
    WAREHOUSE_CLOSE_H,
    WAREHOUSE_OPEN_H,
    TimeMap,
    ceil_to,
    next_open,
)
from observatory.simulator.transport import Stats, WebhookSender
from tracing import shopify

START = datetime(2026, 3, 11, 15, 30, tzinfo=UTC)


def run(scenario: str = "normal", seed: int = 7, orders: int = 300, days: float = 2) -> Simulation:
    return Simulation(
        Plan(
            seed=seed,
            start=START,
            scenario=SCENARIOS[scenario],
            history_days=days,
            history_orders=orders,
        )
    )


def history(scenario: str = "normal", **kw: Any) -> tuple[Simulation, list[Step]]:
    sim = run(scenario, **kw)
    return sim, list(sim.steps_until(START))


def fingerprint(step: Step) -> tuple[Any, ...]:
    hook = step.webhook
    return (
        step.at,
        step.send_at,
        step.via,
        step.system,
        step.operation,
        sorted((k, str(v)) for k, v in step.keys.items()),
        step.stage,
        step.platform_status,
        step.outcome,
        step.retry_attempt,
        step.event_id,
        str(step.amount),
        hook and (hook.event_id, hook.webhook_id),
    )


def by_ref(steps: list[Step]) -> dict[str, list[Step]]:
    out: dict[str, list[Step]] = defaultdict(list)
    for step in steps:
        out[step.ref].append(step)
    return out


def placed_times(sim: Simulation, steps: list[Step]) -> dict[str, datetime]:
    """Capture time of each web order (its orders/create webhook)."""
    return {
        s.ref: s.at
        for s in steps
        if s.via == model.WEBHOOK and s.operation == "orders/create" and not s.fault
    }


def posted_times(steps: list[Step]) -> dict[str, datetime]:
    return {
        s.ref: s.at
        for s in steps
        if s.operation == "netsuite.salesOrder.create" and s.outcome == "ok" and not s.replay
    }


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_same_steps_and_payloads() -> None:
    _, first = history("chaos")
    _, again = history("chaos")
    assert [fingerprint(s) for s in first] == [fingerprint(s) for s in again]
    stamp = TimeMap(START).stamp
    bodies = [render(s.webhook, s.at, stamp) for s in first if s.webhook]
    bodies_again = [render(s.webhook, s.at, stamp) for s in again if s.webhook]
    assert orjson.dumps(bodies) == orjson.dumps(bodies_again)


def test_another_seed_other_ids() -> None:
    _, first = history(seed=1)
    _, other = history(seed=2)
    ids = {s.keys.get("order_number") for s in first} - {None}
    other_ids = {s.keys.get("order_number") for s in other} - {None}
    assert ids and other_ids and not ids & other_ids
    events = {s.event_id for s in first if s.event_id}
    assert not events & {s.event_id for s in other if s.event_id}


def test_slicing_time_differently_gives_the_same_steps() -> None:
    _, whole = history("erp-outage")
    sim = run("erp-outage")
    sliced: list[Step] = []
    moment = START - timedelta(days=2, hours=1)
    while moment < START:
        moment = min(START, moment + timedelta(minutes=37))
        sliced += sim.pop_due(moment, limit=17)
        sliced += sim.steps_until(moment)
    assert [fingerprint(s) for s in sliced] == [fingerprint(s) for s in whole]


# --- realism -------------------------------------------------------------------------------


def test_volume_channels_and_business_hours() -> None:
    sim, steps = history(orders=history_volume(3, SCENARIOS["normal"]), days=3)
    assert sim.orders == 3 * model.DAILY_ORDERS
    mix = sim.orders_by_channel
    assert mix["web"] > mix["pos"] > mix["marketplace"] > 0
    sales = [s for s in steps if s.operation == "pos.sale.complete"]
    stores = {s.store_id for s in sales}
    assert len(stores) >= 4
    for sale in sales:
        store = next(st for st in model.cat.STORES if st.store_id == sale.store_id)
        assert 10 <= (sale.at + timedelta(hours=store.utc_offset_h)).hour < 21
    offsets = {w.code: w.utc_offset_h for w in model.cat.WAREHOUSES}
    for step in steps:
        if step.system == "wms" and step.operation.startswith("shipment."):
            offset = offsets[step.attributes["retail.location_id"]]
            hour = (step.at + timedelta(hours=offset)).hour
            assert WAREHOUSE_OPEN_H <= hour < WAREHOUSE_CLOSE_H
        assert step.send_at >= step.at
        assert step.at >= START - timedelta(days=3, hours=1)
    web = [s for s in steps if s.operation == "orders/create"]
    evening = sum(1 for s in web if 18 <= (s.at - timedelta(hours=5)).hour < 22)
    night = sum(1 for s in web if 2 <= (s.at - timedelta(hours=5)).hour < 6)
    assert evening > 4 * night


def test_amounts_are_realistic() -> None:
    _, steps = history()
    totals = [s.webhook.order.total for s in steps if s.webhook and s.operation == "orders/create"]
    assert all(total > 0 for total in totals)
    assert 40 < statistics.median(totals) < 250
    for s in steps:
        if s.webhook and s.operation == "orders/create":
            order = s.webhook.order
            assert order.total == order.subtotal - order.discount + order.shipping + order.tax


def test_web_order_flow_and_delays_within_bounds() -> None:
    sim, steps = history(days=3, orders=600)
    refs = by_ref(steps)
    placed = placed_times(sim, steps)
    posted = posted_times(steps)
    waits = []
    for ref, at in placed.items():
        ops = [s.operation for s in refs[ref]]
        assert ops[:2] == ["orders/create", "orders/paid"] or "orders/paid" in ops
        assert "process orders.validate" in ops
        if ref in posted:
            waits.append((posted[ref] - at).total_seconds())
    assert len(waits) == len(placed)  # normal: every web order is posted
    waits.sort()
    assert 3 < statistics.median(waits) < 30
    assert waits[int(0.95 * len(waits))] < 60  # the 60 s SLA holds at p95
    assert waits[-1] < 150
    # the warehouse and carrier flow of orders posted early enough to be shipped
    shipped = [s for s in steps if s.operation == "shipment.shipped"]
    assert shipped and all("tracking_number" in s.keys and s.stage == "shipped" for s in shipped)
    words = {s.platform_status for s in steps if s.system == "carrier"}
    assert words & {"in_transit", "InTransit"} and words & {"delivered", "Delivered"}
    assert any(s.operation == "fulfillments/create" for s in steps)
    assert any(s.platform_status == "Billed" for s in steps)
    assert sim.counts["split_orders"] > 0


def test_queue_breaks_the_trace_with_a_link() -> None:
    _, steps = history()
    bridge = next(s for s in steps if s.operation.startswith("POST /webhooks/shopify"))
    validate = next(s for s in steps if s.consume == bridge.publish)
    assert bridge.publish and validate.operation == "process orders.validate"
    assert validate.stage == "validated" and validate.ref == bridge.ref
    posting = next(s for s in steps if s.parent == validate.save_as)
    assert posting.platform_status == "Pending Fulfillment"
    assert posting.keys["erp_sales_order"].startswith("SO-")


def test_pos_batches_every_15_minutes_with_an_array_of_receipts() -> None:
    _, steps = history()
    sales = {s.keys["pos_receipt"]: s for s in steps if s.operation == "pos.sale.complete"}
    batches = [
        s for s in steps if s.operation == "netsuite.cashSale.batchCreate" and s.outcome == "ok"
    ]
    assert batches
    posted: dict[str, datetime] = {}
    for batch in batches:
        receipts = batch.keys["pos_receipt"]
        assert isinstance(receipts, list) and receipts
        assert batch.keys["batch_id"].startswith(f"POSB-{batch.store_id}-")
        assert batch.stage == "posted" and batch.channel == "pos"
        for receipt in receipts:
            posted[receipt] = batch.at
    for receipt, sale in sales.items():
        if receipt in posted:
            boundary = ceil_to(sale.at, 15)
            assert boundary <= posted[receipt] <= boundary + timedelta(minutes=7)
    assert len(posted) >= 0.9 * len(sales)


def test_returns_inventory_and_marketplace() -> None:
    _, steps = history(days=10, orders=900)
    stages = {s.stage for s in steps}
    assert {"return_received", "refund_settled", "inventory_adjusted"} <= stages
    assert {"inventory_published", "captured", "validated", "released", "picked"} <= stages
    assert any(s.operation == "returns/request" for s in steps)
    assert any(s.operation == "refunds/create" for s in steps)
    lags = []
    updates = by_ref([s for s in steps if "inventory_update_id" in s.keys])
    for update in updates.values():
        adjusted = next((s.at for s in update if s.stage == "inventory_adjusted"), None)
        for s in update:
            if adjusted and s.stage == "inventory_published":
                lags.append((s.at - adjusted).total_seconds())
                assert {"sku", "location"} <= set(s.keys)
    assert lags and max(lags) < 300  # normal: within the 5 min SLA
    market = [s for s in steps if s.channel == "marketplace" and s.stage == "captured"]
    assert market and all(s.keys["marketplace_order_id"].count("-") == 2 for s in market)


def test_normal_has_no_injected_faults() -> None:
    sim, steps = history()
    assert not sim.faults
    assert not [s for s in steps if s.fault]
    errors = [s for s in steps if s.outcome != "ok"]
    assert all("timed out" in (s.error or "") for s in errors)


# --- scenarios -----------------------------------------------------------------------------


def test_erp_outage_fails_retries_and_drains() -> None:
    sim, steps = history("erp-outage")
    assert sim.erp_outage is not None
    begin, end = sim.erp_outage
    assert end - begin == timedelta(minutes=30)
    failed = [s for s in steps if s.fault == "erp_503"]
    assert len(failed) >= 5
    assert all(begin <= s.at < end and s.outcome == "error" and s.system == "erp" for s in failed)
    assert all(s.attributes["http.response.status_code"] == 503 for s in failed)
    attempts = defaultdict(list)
    for s in steps:
        if s.system == "erp" and s.operation.startswith("netsuite."):
            attempts[s.ref].append(s)
    hit = {ref: chain for ref, chain in attempts.items() if any(s.fault for s in chain)}
    assert any(len(chain) >= 3 for chain in hit.values())
    for chain in hit.values():
        tries = [s for s in chain if not s.replay]
        assert [s.retry_attempt for s in tries] == list(range(len(tries)))
        assert tries[-1].outcome == "ok" and tries[-1].at >= end  # drained after the window
        assert all(b.consume == a.publish for a, b in itertools.pairwise(tries))
    assert any("pos_receipt" in chain[0].keys for chain in hit.values())  # POS batches too
    # orders captured in the window wait past the 60 s SLA
    placed, posted = placed_times(sim, steps), posted_times(steps)
    stuck = [
        r for r, at in placed.items() if r in posted and posted[r] - at > timedelta(seconds=60)
    ]
    assert len(stuck) >= 2
    assert sim.faults["posted_after_outage"] >= len(stuck)


def test_peak_sale_quadruples_traffic_and_grows_the_inventory_lag() -> None:
    peak = SCENARIOS["peak-sale"]
    assert history_volume(1, peak) == 4 * history_volume(1, SCENARIOS["normal"])
    sim, steps = history("peak-sale", orders=history_volume(1, peak), days=1)
    assert sim.orders == 4 * model.DAILY_ORDERS
    web = [s.webhook.order for s in steps if s.webhook and s.operation == "orders/create"]
    assert web and all(o.discount_code == "SALE20" for o in web)
    updates = by_ref([s for s in steps if "inventory_update_id" in s.keys])
    first_lags = []
    for update in updates.values():
        adjusted = next(s.at for s in update if s.stage == "inventory_adjusted")
        published = [s.at for s in update if s.stage == "inventory_published"]
        first_lags.append((min(published) - adjusted).total_seconds())
    assert sum(lag > 300 for lag in first_lags) >= 0.08 * len(first_lags)
    slow = [s for s in steps if s.fault == "inventory_lag_over_sla"]
    assert slow and all(s.stage == "inventory_published" for s in slow)
    assert sim.faults["inventory_lag_over_sla"] == len(slow)


def test_chaos_injects_every_fault() -> None:
    sim, steps = history("chaos")
    for fault in (
        "duplicate_delivery",
        "lost_event",
        "late_scan",
        "conflicting_id",
        "wms_silent_dropped",
    ):
        assert sim.faults[fault] > 0, fault
    # duplicates: the same Shopify event, a new delivery id
    events = defaultdict(list)
    for s in steps:
        if s.webhook:
            events[s.webhook.event_id].append(s.webhook.webhook_id)
    twice = [ids for ids in events.values() if len(ids) == 2]
    assert twice and all(a != b for a, b in twice)
    # lost: the bridge got the webhook, nothing validated or posted it
    refs = by_ref(steps)
    lost = [s.ref for s in steps if s.fault == "lost_event"]
    for ref in lost:
        ops = {s.operation for s in refs[ref]}
        assert "process orders.validate" not in ops
        assert "netsuite.salesOrder.create" not in ops
    # a conflicting id: the posting names a sales order another order already holds
    conflicts = [s for s in steps if s.fault == "conflicting_id"]
    assert conflicts
    for conflict in conflicts:
        so = conflict.keys["erp_sales_order"]
        owners = {s.ref for s in steps if s.keys.get("erp_sales_order") == so and s.system == "erp"}
        assert len(owners) == 2
    # late scans: sent hours after they happened
    late = [s for s in steps if s.fault == "late_scan"]
    assert late and all(s.send_at - s.at >= timedelta(hours=3) for s in late)
    # the silent warehouse sent nothing in its window
    assert sim.wms_silence is not None
    begin, end = sim.wms_silence
    assert not [s for s in steps if s.system == "wms" and begin <= s.at < end]
    assert [s for s in steps if s.system == "erp" and begin <= s.at < end]


def test_live_arrivals_stop_at_the_order_limit() -> None:
    sim = Simulation(
        Plan(seed=3, start=START, scenario=SCENARIOS["normal"], live_rate=2.0, live_orders=50)
    )
    assert sim.live and sim.expected_orders() == 50
    steps = list(sim.steps_until(START + timedelta(minutes=5)))
    assert sim.orders == 50 and sim.arrivals_done
    assert all(s.at >= START for s in steps)
    assert sim.last_arrival is not None and sim.last_arrival < START + timedelta(minutes=2)
    assert sim.erp_outage is None


def test_live_faults_start_a_minute_in() -> None:
    sim = Simulation(
        Plan(seed=3, start=START, scenario=SCENARIOS["erp-outage"], live_rate=1.0, live_orders=None)
    )
    assert sim.erp_outage is not None and sim.erp_outage[0] == START + timedelta(seconds=60)
    assert sim.expected_orders() is None


# --- timing and payload helpers ------------------------------------------------------------


def test_time_map_compresses_only_the_future() -> None:
    tm = TimeMap(START, speed=10)
    past = START - timedelta(hours=3)
    assert tm.stamp(past) == past
    assert tm.stamp(START + timedelta(seconds=100)) == START + timedelta(seconds=10)
    assert tm.to_sim(START + timedelta(seconds=10)) == START + timedelta(seconds=100)


def test_next_open_moves_to_the_next_shift() -> None:
    late = datetime(2026, 3, 11, 4, 0, tzinfo=UTC)  # 23:00 in New York (UTC-5)
    assert next_open(late, -5, 6, 22) == datetime(2026, 3, 11, 11, 0, tzinfo=UTC)
    day = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
    assert next_open(day, -5, 6, 22) == day


@pytest.mark.parametrize(
    "topic", ["orders/create", "fulfillments/create", "refunds/create", "returns/request"]
)
def test_webhook_bodies_decode_to_the_keys_of_the_step(topic: str) -> None:
    _, steps = history(days=12, orders=400)
    step = next(s for s in steps if s.operation == topic)
    sender = WebhookSender("http://127.0.0.1:9", "tok", "shh", Stats())
    body, headers = sender.request(step, TimeMap(START).stamp)
    assert shopify.verify_hmac(body, headers["X-Shopify-Hmac-Sha256"], ["shh"])
    record = shopify.decode(body, headers, START).records[0]
    keys = {(k.kind, k.value) for k in record.keys}
    expected = {(k, v) for k, v in step.keys.items() if isinstance(v, str)}
    assert expected <= keys
    assert record.start_time == step.at.replace(microsecond=record.start_time.microsecond)
    payload = orjson.loads(body)
    assert "jon@example.com" not in body.decode()  # the sample's customer was replaced
    if topic == "orders/create":
        order = step.webhook.order  # type: ignore[union-attr]
        assert payload["total_price"] == str(order.total)
        assert payload["name"] == order.name
        assert [li["sku"] for li in payload["line_items"]] == [li.product.sku for li in order.lines]


def test_live_goes_first_and_interleaving_keeps_the_ids() -> None:
    def plan() -> Plan:
        return Plan(
            seed=8,
            start=START,
            scenario=SCENARIOS["chaos"],
            history_days=1,
            history_orders=200,
            live_rate=0.5,
            live_orders=60,
        )

    until = START + timedelta(minutes=10)
    # all at once: live steps due by then come out before the history
    sim = Simulation(plan())
    first = sim.pop_due(until, limit=50)
    assert first and all(s.at >= START for s in first)
    together = first + list(sim.steps_until(until))
    # history first, then the live part in small slices
    sim = Simulation(plan())
    apart = list(sim.steps_until(START))
    moment = START
    while moment < until:
        moment += timedelta(seconds=7)
        apart += sim.pop_due(moment, limit=5)
        apart += sim.steps_until(moment)
    assert sorted(map(repr, map(fingerprint, together))) == sorted(
        map(repr, map(fingerprint, apart))
    )
    numbers = [
        s.keys["order_number"] for s in apart if s.operation == "orders/create" and not s.fault
    ]
    assert len(numbers) == len(set(numbers))
