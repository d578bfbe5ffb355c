"""GET /api/v1/exceptions (the queue with ages) and POST .../ack and .../resolve."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.access.actions import do_create_api_token
from observatory.triage.models import FAILED_HOP, Issue
from tests.triage.helpers import T0, contract_policies, ev, send, stitch

S = timedelta(seconds=1)
pytestmark = pytest.mark.django_db


@pytest.fixture
def write_client(db: None) -> Client:
    get_user_model().objects.create_user("dana")
    _, plain = do_create_api_token("ops-bot", "write", username="dana")
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


def failing_orders(client: Client, first: int, count: int) -> None:
    """``count`` web orders captured at T0, each with a failed ERP posting."""
    events = []
    for n in range(first, first + count):
        keys = {"order_number": f"#{n}"}
        events.append(ev("shopify", keys, T0, stage="captured", channel="web"))
        events.append(ev("erp", keys, T0 + S, operation="post", outcome="error", error="503"))
    send(client, *events)


@pytest.fixture
def queue(ingest_client: Client) -> None:
    """Two orders: each stuck (not posted in 60 s) and with a failed ERP posting."""
    contract_policies()
    failing_orders(ingest_client, 1001, 2)
    # the ERP reported nothing past the deadline: judged once its maximum delay passed
    stitch(T0 + 121 * S)
    assert Issue.objects.count() == 4


def test_queue_with_ages_filters_and_buckets(queue: None, api_client: Client) -> None:
    Issue.objects.filter(kind=FAILED_HOP).update(opened_at=T0 - timedelta(hours=5))
    response = api_client.get("/api/v1/exceptions")
    assert response.status_code == 200, response.content
    page = response.json()
    items = page["items"]
    assert [i["kind"] for i in items] == ["failed_hop", "failed_hop", "stuck", "stuck"]
    first = items[0]
    assert first["state"] == "open"
    assert first["owner"] == "finance-systems" and first["system"] == "erp"
    assert first["transaction_label"] == "order_number=#1001"
    assert first["age_s"] > 5 * 3600
    assert first["age_bucket"] in ("h4_to_24", "over_24h")
    assert page["aging"]["open"] == 4
    assert page["aging"]["oldest_s"] >= first["age_s"] - 1
    assert page["next_cursor"] is None

    stuck = api_client.get("/api/v1/exceptions", {"kind": "stuck", "owner": "finance-systems"})
    assert [i["stage"] for i in stuck.json()["items"]] == ["posted", "posted"]
    assert api_client.get("/api/v1/exceptions", {"owner": "warehouse"}).json()["items"] == []
    assert api_client.get("/api/v1/exceptions", {"state": "resolved"}).json()["items"] == []


def test_queue_paging(queue: None, api_client: Client) -> None:
    seen = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api_client.get("/api/v1/exceptions", params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(Issue.objects.values_list("id", flat=True))
    assert len(seen) == len(set(seen)) == 4


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"state": "bogus"}, 422, "state"),
        ({"kind": "stuck,nope"}, 422, "kind"),
        ({"cursor": "garbage"}, 422, "cursor"),
        ({"transaction": str(2**64)}, 422, "transaction"),
        ({"limit": 0}, 422, "limit"),
        ({"limit": "many"}, 422, "limit"),
    ],
)
def test_bad_parameters_name_the_field(
    api_client: Client, params: dict, status: int, field: str
) -> None:
    response = api_client.get("/api/v1/exceptions", params)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_queue_query_count_is_constant(ingest_client: Client, api_client: Client) -> None:
    contract_policies()
    counts = []
    for first, count in ((100, 2), (200, 20)):
        failing_orders(ingest_client, first, count)
        stitch(T0 + 121 * S)
        with CaptureQueriesContext(connection) as queries:
            response = api_client.get("/api/v1/exceptions", {"limit": 500})
        assert response.status_code == 200
        counts.append(len(queries))
    # token, page, labels, aging: whatever the number of exceptions
    assert counts == [4, 4], counts


def test_acknowledge_and_resolve_need_write_and_record_who(
    queue: None, api_client: Client, write_client: Client
) -> None:
    issue = Issue.objects.filter(kind=FAILED_HOP).order_by("id").first()
    assert issue is not None
    url = f"/api/v1/exceptions/{issue.id}"

    assert Client().post(f"{url}/ack").status_code == 401
    denied = api_client.post(f"{url}/ack")
    assert denied.status_code == 403
    assert "write" in denied.json()["detail"]

    acked = write_client.post(f"{url}/ack")
    assert acked.status_code == 200, acked.content
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "dana"
    assert write_client.post(f"{url}/ack").json()["acknowledged_by"] == "dana"  # idempotent

    resolved = write_client.post(
        f"{url}/resolve", {"note": "re-posted by hand"}, content_type="application/json"
    )
    assert resolved.status_code == 200, resolved.content
    body = resolved.json()
    assert body["state"] == "resolved" and body["resolved_by"] == "dana"
    assert body["resolution"] == "re-posted by hand"
    again = write_client.post(f"{url}/resolve", content_type="application/json")  # no body
    assert again.status_code == 200 and again.json()["resolved_by"] == "dana"  # idempotent
    late_ack = write_client.post(f"{url}/ack")
    assert late_ack.status_code == 409
    assert write_client.post("/api/v1/exceptions/999999/ack").status_code == 404


def test_a_token_without_user_and_an_admin_session(queue: None) -> None:
    _, plain = do_create_api_token("script", "write")
    issue, other = Issue.objects.order_by("id")[:2]
    bot = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    done = bot.post(f"/api/v1/exceptions/{issue.id}/resolve", content_type="application/json")
    assert done.json()["resolved_by"] == "token:script"

    viewer = Client()
    viewer.force_login(get_user_model().objects.create_user("viewer"))
    assert viewer.get("/api/v1/exceptions").status_code == 200
    assert viewer.post(f"/api/v1/exceptions/{other.id}/ack").status_code == 403

    admin = Client()
    admin.force_login(get_user_model().objects.create_user("boss", is_staff=True))
    assert admin.post(f"/api/v1/exceptions/{other.id}/ack").json()["acknowledged_by"] == "boss"


def test_queue_helpers_for_the_pages(queue: None) -> None:
    from observatory.triage import queries

    assert queries.queue_choices() == {"owners": ["finance-systems"], "systems": ["erp"]}
    Issue.objects.filter(kind=FAILED_HOP).update(opened_at=T0 - timedelta(hours=30))
    now = T0 + 61 * S
    buckets = queries.age_buckets(queries.issues(), now)
    assert (buckets.open, buckets.under_1h, buckets.over_24h) == (4, 2, 2)
    assert buckets.oldest_s == pytest.approx(30 * 3600 + 61)
    page = queries.exception_queue(kinds=queries.parse_kinds("failed_hop"), system="erp")
    assert [i.transaction_label for i in page.items] == [
        "order_number=#1001",
        "order_number=#1002",
    ]
    assert queries.parse_states("open,acknowledged") == ("open", "acknowledged")
