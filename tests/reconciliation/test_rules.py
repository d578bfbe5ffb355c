"""Each default rule on the cases that make a reconciliation: matched, amounts within and
outside the tolerance, missing in the target, missing in the source, posted twice; gaps
waited for through the grace period; late data reopening only the day it touches, and
the exceptions that follow. Hops go in through the CloudEvents endpoint; figures come
out of the JSON API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client

from observatory.reconciliation.models import Result, Rule
from observatory.triage.models import MISMATCH, RESOLVED, UNRESOLVED, WITHDRAWN, Issue
from tests.reconciliation.helpers import (
    DAY0,
    KITS,
    T0,
    D,
    Kit,
    M,
    day_items,
    one_day,
    results,
    run,
    send,
)

pytestmark = pytest.mark.django_db

RULES = sorted(KITS)
#: transaction numbers of the cases
MATCHED, WITHIN, OUTSIDE, NO_TARGET, NO_SOURCE, TWICE = 1, 2, 3, 4, 5, 6


def send_cases(client: Client, kit: Kit, base: int = 0, at=T0) -> None:  # type: ignore[no-untyped-def]
    """The six cases, transactions ``base + 1`` .. ``base + 6``, at ``at``."""
    n = base
    later = at + 5 * M
    events = [
        *kit.source(n + MATCHED, at, "100.00", "USD"),
        *kit.target(n + MATCHED, later, "100.00", "USD", ""),
        *kit.source(n + WITHIN, at, "100.00", "USD"),
        *kit.target(n + WITHIN, later, "100.01", "USD", ""),
        *kit.source(n + OUTSIDE, at, "100.00", "USD"),
        *kit.target(n + OUTSIDE, later, "100.02", "USD", ""),
        *kit.source(n + NO_TARGET, at, "100.00", "USD"),
        *kit.target(n + NO_SOURCE, later, "100.00", "USD", ""),
        *kit.source(n + TWICE, at, "100.00", "USD"),
        *kit.target(n + TWICE, later, "100.00", "USD", ""),
        *kit.target(n + TWICE, later + M, "100.00", "USD", "B"),
    ]
    send(client, *events)


def mismatches(rule: str, states: tuple[str, ...] = UNRESOLVED) -> dict[str, str]:
    """subkind -> the summary of each mismatch exception of ``rule`` in ``states``."""
    issues = Issue.objects.filter(kind=MISMATCH, state__in=states, detail__rule=rule)
    return {i.summary: i.detail["subkind"] for i in issues}


@pytest.mark.parametrize("rule", RULES)
def test_each_case_of_each_rule(rule: str, ingest_client: Client, api_client: Client) -> None:
    kit = KITS[rule]
    send_cases(ingest_client, kit)
    # before the grace period the missing sides are waited for, not counted
    run(T0 + 10 * M)
    early = one_day(api_client, rule)
    assert (early["missing_in_target"], early["missing_in_source"], early["pending"]) == (0, 0, 2)
    run(T0 + kit.grace + 10 * M)
    row = one_day(api_client, rule)
    batch = rule == "pos-cash-sales"  # the amounts are the batches' (one receipt each here)
    assert {k: row[k] for k in COUNTS} == {
        "source_count": 5,
        "target_count": 5,
        # a batch posting's total is compared with its receipts, not receipt by receipt
        "matched": 3 if batch else 2,
        "missing_in_target": 1,
        "missing_in_source": 1,
        # the batch naming a receipt the POS never reported does not add up either
        "amount_mismatch": 2 if batch else 1,
        "posted_twice": 1,
        "pending": 0,
    }, row
    assert Decimal(row["source_total"]) == Decimal("500.00")
    assert Decimal(row["target_total"]) == Decimal("600.03")
    assert Decimal(row["mismatched_amount"]) == Decimal("100.02" if batch else "0.02")
    # 0.02 apart, 100 never posted, 100 never captured, 100 posted once more
    assert Decimal(row["value_at_risk"]) == Decimal("300.02")
    gaps = 5 if batch else 4
    assert row["rate"] == pytest.approx(row["matched"] / (row["matched"] + gaps))

    unmatched = day_items(api_client, rule)
    status = {k["value"]: i["status"] for i in unmatched["items"] for k in i["keys"]}
    expected = {
        kit.ref(NO_TARGET): "missing_in_target",
        kit.ref(NO_SOURCE): "missing_in_source",
        kit.ref(TWICE): "posted_twice",
    }
    if not batch:
        expected[kit.ref(OUTSIDE)] = "amount_mismatch"
    assert {k: v for k, v in status.items() if k in expected} == expected, unmatched
    assert all(i["counted"] and i["exception_id"] for i in unmatched["items"])
    assert len(day_items(api_client, rule, matched="true")["items"]) == 6

    # one exception per gap, in the queue, owned, with the transaction's value
    queue = api_client.get("/api/v1/exceptions", {"kind": "mismatch"}).json()["items"]
    assert len(queue) == gaps
    assert {q["detail"]["subkind"] for q in queue} == {
        "missing_in_target",
        "missing_in_source",
        "amount_mismatch",
        "posted_twice",
    }
    assert all(q["owner"] and q["detail"]["rule"] == rule for q in queue)
    missing = next(q for q in queue if q["detail"]["subkind"] == "missing_in_target")
    assert (missing["value"], missing["currency"]) == ("100.00", "USD")
    assert missing["opened_at"] == (T0 + kit.grace).isoformat().replace("+00:00", "Z")


COUNTS = (
    "source_count",
    "target_count",
    "matched",
    "missing_in_target",
    "missing_in_source",
    "amount_mismatch",
    "posted_twice",
    "pending",
)


@pytest.mark.parametrize("rule", RULES)
def test_late_data_reopens_only_the_day_it_touches(
    rule: str, ingest_client: Client, api_client: Client
) -> None:
    kit = KITS[rule]
    yesterday = T0 - D
    send_cases(ingest_client, kit, base=10, at=yesterday)
    send_cases(ingest_client, kit)
    first_wall = T0 + 2 * D
    run(T0 + 2 * D, wall=first_wall)
    before = {r.day: r.computed_at for r in Result.objects.filter(rule__name=rule)}
    assert set(before) == {DAY0 - timedelta(days=1), DAY0}
    assert one_day(api_client, rule)["missing_in_target"] == 1
    batch = rule == "pos-cash-sales"
    # (a batch naming a receipt the POS never reported does not add up: one more)
    gaps = 5 if batch else 4
    assert len(mismatches(rule)) == 2 * gaps

    # the missing target of today's case arrives, late; so does the missing source
    send(
        ingest_client,
        *kit.target(NO_TARGET, T0 + 5 * M, "100.00", "USD", ""),
        *kit.source(NO_SOURCE, T0, "100.00", "USD"),
    )
    result = run(T0 + 2 * D + H, wall=first_wall + H)
    [ran] = [r for r in result.rules if r.rule == rule]
    assert not ran.full and ran.days == 1
    after = {r.day: r.computed_at for r in Result.objects.filter(rule__name=rule)}
    # yesterday was not touched: not computed again
    assert after[DAY0 - timedelta(days=1)] == before[DAY0 - timedelta(days=1)]
    assert after[DAY0] > before[DAY0]
    row = one_day(api_client, rule)
    assert (row["missing_in_target"], row["missing_in_source"]) == (0, 0)
    assert row["matched"] == (5 if batch else 4)
    # their exceptions closed by themselves (withdrawn: the sides' business times were
    # inside the grace period, only their telemetry was late); the others stay
    assert len(mismatches(rule)) == 2 * gaps - (3 if batch else 2)
    closed = Issue.objects.filter(kind=MISMATCH, state=RESOLVED)
    assert list(closed.values_list("resolution", flat=True)) == (
        ["the batch posting adds up now (or names other transactions)"] if batch else []
    )
    assert Issue.objects.filter(kind=MISMATCH, state=WITHDRAWN).count() == 2


@pytest.mark.parametrize("rule", RULES)
def test_a_side_whose_telemetry_came_late_withdraws_its_exception(
    rule: str, ingest_client: Client, api_client: Client
) -> None:
    """A missing side that arrives after its gap was counted, with a business time inside
    the grace period, was never missing: only its telemetry was late. Its exception is
    withdrawn (the exception rate does not count it), as a stuck one is."""
    kit = KITS[rule]
    send_cases(ingest_client, kit)
    run(T0 + kit.grace + 10 * M)
    subkinds = set(mismatches(rule).values())
    assert {"missing_in_target", "missing_in_source"} <= subkinds
    # both sides happened minutes after the other one: their telemetry comes hours late
    send(
        ingest_client,
        *kit.target(NO_TARGET, T0 + 5 * M, "100.00", "USD", ""),
        *kit.source(NO_SOURCE, T0, "100.00", "USD"),
    )
    run(T0 + kit.grace + 2 * H)
    row = one_day(api_client, rule)
    assert (row["missing_in_target"], row["missing_in_source"]) == (0, 0)
    withdrawn = Issue.objects.filter(kind=MISMATCH, state=WITHDRAWN)
    assert sorted(withdrawn.values_list("detail__subkind", "resolution")) == [
        ("missing_in_source", f"{_label(kit, 'source')} in time (its telemetry came late)"),
        ("missing_in_target", f"{_label(kit, 'target')} in time (its telemetry came late)"),
    ]
    # the queue no longer shows them; the other gaps stay
    assert set(mismatches(rule).values()) == subkinds - {"missing_in_target", "missing_in_source"}
    assert not Issue.objects.filter(kind=MISMATCH, state=RESOLVED).exclude(
        resolution__startswith="the batch posting"
    )


def test_a_side_that_came_after_the_grace_period_resolves_its_exception(
    ingest_client: Client,
) -> None:
    """The same sides, with business times past the grace period: the gaps were real."""
    kit = KITS["shopify-orders"]
    send(
        ingest_client,
        *kit.source(1, T0, "100.00", "USD"),
        *kit.target(2, T0, "100.00", "USD", ""),
    )
    run(T0 + kit.grace + 10 * M)
    assert sorted(mismatches("shopify-orders").values()) == [
        "missing_in_source",
        "missing_in_target",
    ]
    send(
        ingest_client,
        *kit.target(1, T0 + kit.grace + 5 * M, "100.00", "USD", ""),
        *kit.source(2, T0 + kit.grace + 5 * M, "100.00", "USD"),
    )
    run(T0 + kit.grace + 2 * H)
    closed = Issue.objects.filter(kind=MISMATCH).values_list("state", "resolution")
    assert sorted(closed) == [
        (RESOLVED, "the source caught up"),
        (RESOLVED, "the target caught up"),
    ]


H = timedelta(hours=1)


def _label(kit: Kit, side: str) -> str:
    rule = Rule.objects.get(name=kit.rule)
    return rule.source_label() if side == "source" else rule.target_label()


def test_an_order_posted_late_with_another_amount_turns_into_an_amount_mismatch(
    ingest_client: Client, api_client: Client
) -> None:
    kit = KITS["shopify-orders"]
    send(ingest_client, *kit.source(1, T0, "80.00", "USD"))
    run(T0 + 2 * H)
    [issue] = Issue.objects.filter(kind=MISMATCH, state__in=UNRESOLVED)
    assert issue.detail["subkind"] == "missing_in_target"
    send(ingest_client, *kit.target(1, T0 + 3 * H, "81.50", "USD", ""))
    run(T0 + 4 * H)
    issue.refresh_from_db()
    assert (issue.state, issue.resolution) == (RESOLVED, "now amount mismatch")
    [now_] = Issue.objects.filter(kind=MISMATCH, state__in=UNRESOLVED)
    assert now_.detail["subkind"] == "amount_mismatch"
    assert "USD 80.00 captured by shopify, USD 81.50 posted by erp (USD 1.50 apart)" in now_.summary
    assert results(api_client, "shopify-orders")[0]["amount_mismatch"] == 1


def test_a_relative_tolerance_lets_a_rounding_difference_pass(
    ingest_client: Client, api_client: Client, admin_client: Client
) -> None:
    changed = admin_client.patch(
        "/api/v1/reconciliation-rules/shopify-orders",
        {"tolerance_abs": "0.00", "tolerance_rel": "0.001"},
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    kit = KITS["shopify-orders"]
    send(
        ingest_client,
        *kit.source(1, T0, "1000.00", "USD"),
        *kit.target(1, T0 + M, "1000.99", "USD", ""),  # within 0.1 %
        *kit.source(2, T0, "1000.00", "USD"),
        *kit.target(2, T0 + M, "1001.01", "USD", ""),  # past it
    )
    run(T0 + 2 * H)
    row = one_day(api_client, "shopify-orders")
    assert (row["matched"], row["amount_mismatch"]) == (1, 1)


def test_a_pos_batch_is_compared_as_a_whole_and_counted_once(
    ingest_client: Client, api_client: Client
) -> None:
    """Four receipts, two batches: one adds up, one is 5.00 short; a fifth receipt is in
    no batch."""
    from tests.reconciliation.helpers import pos_batch

    kit = KITS["pos-cash-sales"]
    send(
        ingest_client,
        *[e for n in (1, 2, 3, 4, 5) for e in kit.source(n, T0, "10.00", "USD")],
        pos_batch([1, 2], T0 + 15 * M, "20.00", "USD", "B-1"),
        pos_batch([3, 4], T0 + 15 * M, "15.00", "USD", "B-2"),
    )
    run(T0 + 3 * H)
    row = one_day(api_client, "pos-cash-sales")
    assert row["store_id"] == "ST1"
    assert (row["source_count"], row["target_count"], row["matched"]) == (5, 4, 4)
    assert (row["missing_in_target"], row["amount_mismatch"]) == (1, 1)
    assert Decimal(row["target_total"]) == Decimal("35.00")
    assert Decimal(row["value_at_risk"]) == Decimal("15.00")  # 10 unposted, 5 short
    summaries = mismatches("pos-cash-sales")
    assert summaries == {
        "pos_receipt=ST1-5: captured by pos (USD 10.00), not posted by erp": "missing_in_target",
        "batch B-2: USD 15.00 posted by erp for 2 captured by pos of USD 20.00 (USD 5.00 apart)": (
            "amount_mismatch"
        ),
    }
    # the receipt turns up in a third batch: it matches, and its exception resolves
    send(ingest_client, pos_batch([5], T0 + 30 * M, "10.00", "USD", "B-3"))
    run(T0 + 4 * H)
    row = one_day(api_client, "pos-cash-sales")
    assert (row["matched"], row["missing_in_target"], row["amount_mismatch"]) == (5, 0, 1)
    assert Decimal(row["target_total"]) == Decimal("45.00")
    assert list(mismatches("pos-cash-sales").values()) == ["amount_mismatch"]


def test_a_cancelled_order_never_posted_is_no_gap(
    ingest_client: Client, api_client: Client
) -> None:
    kit = KITS["shopify-orders"]
    from tests.reconciliation.helpers import ev

    send(
        ingest_client,
        *kit.source(1, T0, "50.00", "USD"),
        ev("shopify", {"order_number": "#1"}, T0 + 5 * M, stage="cancelled"),
    )
    run(T0 + 3 * H)
    assert results(api_client, "shopify-orders") == []


def test_a_fragment_merging_into_its_order_reconciles_it(
    ingest_client: Client, api_client: Client
) -> None:
    """The ERP's posting names only its own sales order: until a hop links the two, the
    order looks unposted and the posting looks like nobody's."""
    from tests.reconciliation.helpers import ev

    kit = KITS["shopify-orders"]
    send(
        ingest_client,
        *kit.source(1, T0, "50.00", "USD"),
        ev("erp", {"erp_sales_order": "SO-1"}, T0 + M, stage="posted", channel="web",
           amount="50.00", currency="USD"),
    )  # fmt: skip
    run(T0 + 2 * H)
    row = one_day(api_client, "shopify-orders")
    assert (row["missing_in_target"], row["missing_in_source"]) == (1, 1)
    assert sorted(mismatches("shopify-orders").values()) == [
        "missing_in_source",
        "missing_in_target",
    ]
    send(
        ingest_client,
        ev("middleware", {"order_number": "#1", "erp_sales_order": "SO-1"}, T0 + 2 * M),
    )
    run(T0 + 3 * H)
    row = one_day(api_client, "shopify-orders")
    assert (row["matched"], row["missing_in_target"], row["missing_in_source"]) == (1, 0, 0)
    assert mismatches("shopify-orders") == {}
    # posted a minute after its capture: neither gap was real, only the hop linking the
    # two came late; both exceptions are withdrawn (the fragment's through its order)
    closed = Issue.objects.filter(kind=MISMATCH).values_list("state", "resolution")
    assert sorted(closed) == [
        (WITHDRAWN, "captured by shopify in time (its telemetry came late)"),
        (WITHDRAWN, "posted by erp in time (its telemetry came late)"),
    ]
