"""GET /api/v1/orders/{key} and GET /api/v1/orders, through ingest -> stitch -> API."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from ninja.responses import NinjaJSONEncoder

from observatory.lib.clock import now
from observatory.transactions.models import Transaction, TransactionKey
from observatory.transactions.queries import lookup
from observatory.triage.api import order_out
from observatory.triage.queries import order_view
from observatory.triage.schema import OrderOut
from tests.triage.helpers import T0, contract_policies, ev, order_events, reporting, send, stitch

S = timedelta(seconds=1)
pytestmark = pytest.mark.django_db

TRACKING = "1Z999AA10123456784"


def get(client: Client, key: str) -> Any:
    return client.get(f"/api/v1/orders/{quote(key, safe='')}")


def story_1001(ingest_client: Client) -> None:
    """#1001: captured, validation fails then passes, stuck, posted late, shipped; the ERP
    callback is delivered twice."""
    contract_policies()
    captured = ev(
        "shopify",
        {"order_number": "#1001", "shopify_order_id": "450789469"},
        T0,
        stage="captured",
        operation="orders/create",
        channel="web",
        platform_status="pending",
        amount="598.94",
        currency="USD",
    )
    failed = ev(
        "middleware",
        {"order_number": "#1001"},
        T0 + 2 * S,
        operation="validate",
        outcome="error",
        error="tax service timeout",
        duration_ms=5000,
    )
    passed = ev(
        "middleware",
        {"order_number": "#1001"},
        T0 + 9 * S,
        stage="validated",
        operation="validate",
        retry_attempt=1,
        duration_ms=300,
    )
    send(ingest_client, captured, failed, passed)
    stitch(T0 + 61 * S)  # stuck: not posted within 60 s

    posted = ev(
        "erp",
        {"order_number": "#1001", "erp_sales_order": "SO-48213"},
        T0 + 90 * S,
        stage="posted",
        operation="post_sales_order",
        platform_status="Pending Fulfillment",
        duration_ms=842,
        event_id="erp-callback-1",
    )
    shipped = ev(
        "wms",
        {"erp_sales_order": "SO-48213", "tracking_number": TRACKING},
        T0 + 3600 * S,
        stage="shipped",
        operation="ship",
        platform_status="Shipped",
    )
    send(ingest_client, posted, shipped)
    send(ingest_client, posted)  # re-delivered: a duplicate delivery
    stitch(T0 + 3601 * S)


def test_one_order_by_any_key(ingest_client: Client, api_client: Client) -> None:
    story_1001(ingest_client)
    response = get(api_client, "#1001")
    assert response.status_code == 200, response.content
    order = response.json()
    tx = TransactionKey.objects.get(value="#1001").transaction
    assert order["id"] == tx.id
    for key in ("1001", "order_number=#1001", "SO-48213", TRACKING, "450789469"):
        assert get(api_client, key).json()["id"] == tx.id, key

    assert {(k["kind"], k["value"]) for k in order["keys"]} == {
        ("order_number", "#1001"),
        ("shopify_order_id", "450789469"),
        ("erp_sales_order", "SO-48213"),
        ("tracking_number", TRACKING),
    }
    assert order["channel"] == "web"
    assert order["current_stage"] == "shipped"

    stages = {s["stage"]: s for s in order["stages"]}
    assert list(stages) == ["captured", "validated", "posted", "shipped"]
    assert stages["captured"]["system"] == "shopify"
    assert stages["captured"]["platform_status"] == "pending"
    assert stages["posted"]["system"] == "erp"
    assert stages["posted"]["platform_status"] == "Pending Fulfillment"
    posted_sla = stages["posted"]["sla"]
    assert posted_sla["status"] == "late" and posted_sla["late_by_s"] == 30
    assert posted_sla["policy"] == "web order captured -> posted"
    assert stages["captured"]["sla"] is None
    sla = {(s["from_stage"], s["to_stage"]): s["status"] for s in order["sla"]}
    assert sla[("captured", "posted")] == "late"
    # judged against the wall clock, days after T0: Shopify never heard of the shipment
    assert sla[("shipped", "fulfillment_synced")] == "overdue"

    hops = order["hops"]
    assert [h["system"] for h in hops] == ["shopify", "middleware", "middleware", "erp", "wms"]
    failed = hops[1]
    assert failed["outcome"] == "error" and failed["status_message"] == "tax service timeout"
    assert failed["duration_ms"] == 5000
    assert hops[2]["retry_attempt"] == 1
    assert hops[3]["platform_status"] == "Pending Fulfillment"
    assert {"trace_id", "span_id", "operation", "start_time"} <= set(hops[0])

    exceptions = {e["kind"]: e for e in order["exceptions"]}
    assert exceptions["stuck"]["state"] == "resolved"
    assert exceptions["stuck"]["resolution"] == "posted reached"
    assert exceptions["failed_hop"]["state"] == "resolved"
    assert exceptions["failed_hop"]["transaction_label"] == "order_number=#1001"

    (dup,) = order["duplicate_deliveries"]
    assert dup["hop_id"] == hops[3]["hop_id"]


def test_not_found_and_ambiguous(ingest_client: Client, api_client: Client) -> None:
    send(
        ingest_client,
        ev("pos", {"pos_receipt": "777"}, T0, stage="captured", channel="pos"),
        ev("shopify", {"shopify_order_id": "777"}, T0, stage="captured"),
    )
    stitch(T0)
    missing = get(api_client, "nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    assert get(api_client, "order_number=777").status_code == 404

    ambiguous = get(api_client, "777")
    assert ambiguous.status_code == 409
    body = ambiguous.json()
    assert "kind=value" in body["detail"]
    assert sorted(k["kind"] for c in body["candidates"] for k in c["keys"]) == [
        "pos_receipt",
        "shopify_order_id",
    ]
    exact = get(api_client, "pos_receipt=777")
    assert exact.status_code == 200
    assert exact.json()["channel"] == "pos"


def test_order_lookup_query_count_is_constant(ingest_client: Client, api_client: Client) -> None:
    story_1001(ingest_client)
    send(
        ingest_client,
        *[
            ev("middleware", {"order_number": "#2002"}, T0 + i * S, operation=f"step {i}")
            for i in range(15)
        ],
        ev("erp", {"order_number": "#2002", "erp_sales_order": "SO-2"}, T0, stage="posted"),
    )
    stitch(T0 + 3601 * S)
    counts = []
    for key in ("#1001", "#2002"):
        with CaptureQueriesContext(connection) as queries:
            assert get(api_client, key).status_code == 200
        counts.append(len(queries))
    # token, lookup, keys, stages, hops (+ their keys), SLA policies, exceptions,
    # duplicate deliveries
    assert counts == [9, 9], counts


def test_the_answer_is_what_validating_it_would_make(ingest_client: Client) -> None:
    """``order_out`` builds its models unvalidated (the values come typed from the
    database): validating them must change nothing, not even a type."""
    story_1001(ingest_client)
    found = lookup("#1001")
    assert found.transaction is not None
    built = order_out(order_view(found.transaction, now()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # some values of another type than declared warn
        as_built = built.model_dump()
    validated = OrderOut.model_validate(as_built).model_dump()
    # rendered as the API renders them: an int where a float is declared shows
    assert json.dumps(as_built, cls=NinjaJSONEncoder) == json.dumps(validated, cls=NinjaJSONEncoder)


def test_an_order_shows_the_exceptions_of_transactions_merged_into_it(
    ingest_client: Client, api_client: Client
) -> None:
    contract_policies()
    send(
        ingest_client,
        ev("shopify", {"shopify_order_id": "77"}, T0, stage="captured", channel="web"),
        ev("shopify", {"order_number": "#2001"}, T0, stage="captured", channel="web"),
        ev("shopify", {"order_number": "#3001"}, T0, stage="captured", channel="web"),
        *reporting(T0 + 70 * S, "erp"),
    )
    stitch(T0 + 61 * S)  # all three stuck (the ERP reported past their deadline)
    link = {"shopify_order_id": "77", "order_number": "#2001"}
    send(ingest_client, ev("middleware", link, T0 + 70 * S))
    stitch(T0 + 71 * S)
    loser = Transaction.objects.get(merged_into__isnull=False)
    order = get(api_client, "77").json()
    assert order["id"] == loser.merged_into_id
    seen = [(e["transaction_id"], e["kind"], e["state"]) for e in order["exceptions"]]
    assert sorted(seen) == sorted([(order["id"], "stuck", "open"), (loser.id, "stuck", "resolved")])


# --- the list -------------------------------------------------------------------------------


def seven_orders(ingest_client: Client) -> list[int]:
    contract_policies()
    events = []
    for i in range(7):
        number = f"#{4000 + i}"
        at = T0 + i * 10 * S
        if i % 2 == 0:
            events += order_events(number, at)  # posted in time
        else:
            events.append(ev("pos", {"order_number": number}, at, stage="captured", channel="pos"))
    send(ingest_client, *events)
    stitch(T0 + 2 * 3600 * S)  # the POS ones are stuck by now
    return list(Transaction.objects.order_by("-created_at", "-id").values_list("id", flat=True))


def test_list_newest_first_with_cursor_paging(ingest_client: Client, api_client: Client) -> None:
    newest_first = seven_orders(ingest_client)
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api_client.get("/api/v1/orders", params).json()
        pages += 1
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == newest_first


def test_list_filters(ingest_client: Client, api_client: Client) -> None:
    seven_orders(ingest_client)

    def ids(**params: Any) -> list[str]:
        response = api_client.get("/api/v1/orders", params)
        assert response.status_code == 200, response.content
        return sorted(
            k["value"]
            for o in response.json()["items"]
            for k in o["keys"]
            if k["kind"] == "order_number"
        )

    pos = ["#4001", "#4003", "#4005"]
    web = ["#4000", "#4002", "#4004", "#4006"]
    assert ids(stuck="true") == pos
    assert ids(stuck="false") == web
    assert ids(channel="pos") == pos
    assert ids(stage="posted") == web
    assert ids(system="erp") == web
    assert ids(stage="captured", channel="pos") == pos
    assert ids(since="2000-01-01T00:00:00Z") == sorted(pos + web)
    assert ids(until="2000-01-01T00:00:00") == []
    one = api_client.get("/api/v1/orders", {"stuck": "true", "limit": 1}).json()["items"][0]
    assert one["stuck"] is True and one["open_exceptions"] == 1
    assert one["current_stage"] == "captured"


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"stage": "teleported"}, 422, "stage"),
        ({"kind": "parcel"}, 422, "kind"),
        ({"cursor": "not-a-cursor"}, 422, "cursor"),
        ({"since": "yesterday"}, 422, "since"),
        ({"since": "0.5"}, 422, "since"),
        ({"system": "erp\x00"}, 422, "system"),
        ({"limit": 501}, 422, "limit"),
        ({"stuck": "perhaps"}, 422, "stuck"),
    ],
)
def test_bad_list_parameters_name_the_field(
    api_client: Client, params: dict[str, Any], status: int, field: str
) -> None:
    response = api_client.get("/api/v1/orders", params)
    assert response.status_code == status, response.content
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_an_empty_window_lists_nothing(api_client: Client) -> None:
    params = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    response = api_client.get("/api/v1/orders", params)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_list_query_count_is_constant(ingest_client: Client, api_client: Client) -> None:
    contract_policies()
    counts = []
    for first, n in ((100, 2), (200, 12)):
        events = []
        for i in range(first, first + n):
            events += order_events(f"#{i}", T0)
        send(ingest_client, *events)
        stitch(T0 + 3600 * S)
        with CaptureQueriesContext(connection) as queries:
            response = api_client.get("/api/v1/orders", {"limit": 100, "system": "erp"})
        assert len(response.json()["items"]) == (2 if first == 100 else 14)
        counts.append(len(queries))
    # token, page (with exception counts), keys
    assert counts == [3, 3], counts
