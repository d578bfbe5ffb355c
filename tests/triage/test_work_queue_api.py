"""The exception queue's work verbs through the API: bulk acknowledge, resolve and assign,
notes, one exception with its history, search; and the old answers unchanged."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.triage.models import FAILED_HOP, STUCK, Issue, IssueNote
from tests.triage.helpers import T0, contract_policies, stitch
from tests.triage.test_exceptions_api import S, failing_orders, write_client  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(ingest_client: Client) -> list[int]:
    """Twelve orders, each stuck and with a failed ERP posting: 24 exceptions."""
    contract_policies()
    failing_orders(ingest_client, 2001, 12)
    stitch(T0 + 121 * S)
    ids = list(Issue.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 24
    return ids


def test_bulk_acknowledge_resolve_and_assign(many: list[int], write_client: Client) -> None:  # noqa: F811
    get_user_model().objects.create_user("olivia")
    first, rest = many[:10], many[10:]
    with CaptureQueriesContext(connection) as ctx:
        answer = write_client.post(
            "/api/v1/exceptions/bulk",
            {"ids": [*first, 999_999], "action": "acknowledge", "note": "looking"},
            content_type="application/json",
        )
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"changed": first, "unchanged": [], "missing": [999_999]}
    # set-based: the same few statements for ten as for one
    assert len(ctx.captured_queries) <= 12, [q["sql"] for q in ctx.captured_queries]
    assert Issue.objects.filter(id__in=first, state="acknowledged").count() == 10
    assert IssueNote.objects.filter(kind="acknowledged", author="dana").count() == 10

    # a second acknowledge changes nothing; resolving takes the acknowledged ones too
    again = write_client.post(
        "/api/v1/exceptions/bulk",
        {"ids": first[:2], "action": "acknowledge"},
        content_type="application/json",
    )
    assert again.json()["unchanged"] == first[:2]
    done = write_client.post(
        "/api/v1/exceptions/bulk",
        {"ids": first[:3], "action": "resolve", "note": "re-posted"},
        content_type="application/json",
    ).json()
    assert done["changed"] == first[:3]
    assert set(Issue.objects.filter(id__in=first[:3]).values_list("resolution", flat=True)) == {
        "re-posted"
    }

    assigned = write_client.post(
        "/api/v1/exceptions/bulk",
        {"ids": rest, "action": "assign", "assignee": "olivia", "team": "erp-team"},
        content_type="application/json",
    )
    assert assigned.status_code == 200 and assigned.json()["changed"] == rest
    listed = write_client.get("/api/v1/exceptions", {"assignee": "olivia", "limit": 500}).json()
    assert sorted(i["id"] for i in listed["items"]) == rest
    assert {(i["assignee"], i["owner"]) for i in listed["items"]} == {("olivia", "erp-team")}

    # an unknown person is named, and nothing changes
    bad = write_client.post(
        "/api/v1/exceptions/bulk",
        {"ids": rest, "action": "assign", "assignee": "nobody-here"},
        content_type="application/json",
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "assignee"]
    assert (
        write_client.post(
            "/api/v1/exceptions/bulk",
            {"ids": rest, "action": "explode"},
            content_type="application/json",
        ).status_code
        == 422
    )


def test_notes_and_history(many: list[int], write_client: Client, api_client: Client) -> None:  # noqa: F811
    issue = many[0]
    note = write_client.post(
        f"/api/v1/exceptions/{issue}/notes",
        {"text": "ERP said the order is in the retry queue"},
        content_type="application/json",
    )
    assert note.status_code == 201, note.content
    assert note.json()["author"] == "dana" and note.json()["kind"] == "note"
    write_client.post(f"/api/v1/exceptions/{issue}/ack")
    get_user_model().objects.create_user("olivia")
    write_client.post(
        f"/api/v1/exceptions/{issue}/assign",
        {"assignee": "olivia"},
        content_type="application/json",
    )
    write_client.post(
        f"/api/v1/exceptions/{issue}/resolve", {"note": "fixed"}, content_type="application/json"
    )
    one = api_client.get(f"/api/v1/exceptions/{issue}")
    assert one.status_code == 200
    body = one.json()
    assert [h["kind"] for h in body["history"]] == ["note", "acknowledged", "assigned", "resolved"]
    assert body["history"][2]["text"] == "to olivia"
    assert body["assignee"] == "olivia" and body["state"] == "resolved"
    # read-only tokens read, never write
    assert (
        api_client.post(
            f"/api/v1/exceptions/{issue}/notes", {"text": "x"}, content_type="application/json"
        ).status_code
        == 403
    )
    assert (
        write_client.post(
            f"/api/v1/exceptions/{issue}/notes", {"text": ""}, content_type="application/json"
        ).status_code
        == 422
    )
    assert (
        write_client.post(
            "/api/v1/exceptions/999999/notes", {"text": "x"}, content_type="application/json"
        ).status_code
        == 404
    )
    assert api_client.get("/api/v1/exceptions/999999").status_code == 404


def test_search_by_order_number_owner_and_words(many: list[int], api_client: Client) -> None:
    by_number = api_client.get("/api/v1/exceptions", {"q": "2003"}).json()["items"]
    assert {i["transaction_label"] for i in by_number} == {"order_number=#2003"}
    assert {i["kind"] for i in by_number} == {STUCK, FAILED_HOP}
    exact = api_client.get("/api/v1/exceptions", {"q": "order_number=#2003"}).json()["items"]
    assert len(exact) == 2
    by_owner = api_client.get("/api/v1/exceptions", {"q": "finance", "limit": 500}).json()
    assert len(by_owner["items"]) == 24
    # the answer keeps its old fields (new ones are added beside them)
    first = by_owner["items"][0]
    assert {"id", "kind", "state", "owner", "age_s", "age_bucket", "value", "currency"} <= set(
        first
    )
    assert first["assignee"] == ""
