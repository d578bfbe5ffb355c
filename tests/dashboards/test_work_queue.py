"""The exception queue page as a work queue, without a browser: search, sort, select many
to acknowledge, resolve or assign (CSRF-protected forms, for people who act only), notes
and history on an exception's page, the CSV, time to resolve, a conflict's two orders,
and the live fragment."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from observatory.triage.models import CONFLICT, FAILED_HOP, STUCK, Issue, IssueNote
from tests.dashboards.conftest import make_user
from tests.triage.helpers import T0, contract_policies, ev, send, stitch
from tests.triage.test_exceptions_api import S, failing_orders

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(ingest_client: Client) -> list[int]:
    """Six web orders, each stuck and with a failed ERP posting (12 exceptions); amounts
    on the first three; and a conflict: one Shopify id sent with two order numbers."""
    contract_policies()
    failing_orders(ingest_client, 3001, 6)
    send(
        ingest_client,
        *[
            ev(
                "shopify",
                {"order_number": f"#{n}"},
                T0 + S,
                amount=f"{n - 3000}00.00",
                currency="EUR",
            )
            for n in (3001, 3002, 3003)
        ],
        ev("shopify", {"order_number": "#4001", "shopify_order_id": "777"}, T0, stage="captured"),
        ev("shopify", {"order_number": "#4002", "shopify_order_id": "888"}, T0, stage="captured"),
        ev("middleware", {"order_number": "#4002", "shopify_order_id": "777"}, T0 + 5 * S),
    )
    stitch(T0 + 121 * S)
    return list(Issue.objects.order_by("id").values_list("id", flat=True))


def rows_of(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-issue="(\d+)"', html)]


def test_search_sort_value_and_the_conflicts_two_orders(
    ops_client: Client, queue: list[int]
) -> None:
    html = ops_client.get("/exceptions/", {"q": "3002"}).content.decode()
    found = rows_of(html)
    assert len(found) == 2
    assert set(Issue.objects.filter(id__in=found).values_list("kind", flat=True)) == {
        STUCK,
        FAILED_HOP,
    }
    # sorted by value: the 300.00 order's exceptions first
    by_value = rows_of(ops_client.get("/exceptions/", {"sort": "value"}).content.decode())
    top = Issue.objects.filter(id__in=by_value[:2])
    assert len({i.transaction_id for i in top}) == 1
    assert (
        "EUR 300.00"
        in ops_client.get("/exceptions/", {"sort": "value"})
        .content.decode()
        .split("<tbody>")[1]
        .split("</tr>")[0]
    )
    by_system = rows_of(ops_client.get("/exceptions/", {"sort": "system"}).content.decode())
    systems = [Issue.objects.get(id=i).system for i in by_system]
    assert systems == sorted(systems)

    conflict = Issue.objects.get(kind=CONFLICT)
    page = ops_client.get(f"/exceptions/{conflict.id}/").content.decode()
    clash = re.search(r'data-testid="clash">(.*?)</dd>', page, re.S)
    assert clash and "order_number" in clash.group(1)
    d = conflict.detail
    assert f'href="/orders/{d["transaction_id"]}/"' in clash.group(1)
    assert f'href="/orders/{d["other_transaction_id"]}/"' in clash.group(1)


def test_bulk_acknowledge_resolve_assign_and_time_to_resolve(
    ops_client: Client, queue: list[int]
) -> None:
    make_user("pat", "ops")
    picked = queue[:4]
    answer = ops_client.post(
        "/exceptions/bulk/",
        {
            "ids": [str(i) for i in picked],
            "action": "acknowledge",
            "next": "/exceptions/?state=all",
        },
    )
    assert answer.status_code == 302 and answer["Location"] == "/exceptions/?state=all"
    assert Issue.objects.filter(id__in=picked, state="acknowledged").count() == 4
    assert (
        IssueNote.objects.filter(issue_id__in=picked, kind="acknowledged", author="olivia").count()
        == 4
    )

    ops_client.post(
        "/exceptions/bulk/",
        {"ids": picked[:2], "action": "assign", "assignee": "pat", "team": "erp-team"},
    )
    mine = rows_of(ops_client.get("/exceptions/", {"assignee": "pat"}).content.decode())
    assert sorted(mine) == picked[:2]
    assert set(Issue.objects.filter(id__in=picked[:2]).values_list("owner", flat=True)) == {
        "erp-team"
    }

    ops_client.post(
        "/exceptions/bulk/", {"ids": picked[:3], "action": "resolve", "note": "re-posted"}
    )
    resolved = ops_client.get("/exceptions/", {"state": "resolved"}).content.decode()
    assert "Time to resolve" in resolved
    assert len(re.findall(r'data-testid="time-to-resolve">[^<—]+<', resolved)) == 3

    # no action or no selection: a message, nothing changes
    before = list(Issue.objects.order_by("id").values_list("state", flat=True))
    ops_client.post("/exceptions/bulk/", {"ids": picked, "action": "explode"})
    ops_client.post("/exceptions/bulk/", {"action": "resolve"})
    ops_client.post("/exceptions/bulk/", {"ids": picked, "action": "assign", "assignee": "ghost"})
    assert list(Issue.objects.order_by("id").values_list("state", flat=True)) == before


def test_notes_make_the_history(ops_client: Client, queue: list[int]) -> None:
    issue = queue[0]
    ops_client.post(
        f"/exceptions/{issue}/notes/", {"text": "Called the ERP team\nthey retry at 10"}
    )
    ops_client.post(f"/exceptions/{issue}/acknowledge/")
    page = ops_client.get(f"/exceptions/{issue}/").content.decode()
    kinds = re.findall(r'<li class="history-\w+" data-kind="(\w+)">', page)
    assert kinds == ["opened", "note", "acknowledged"]
    assert "Called the ERP team<br>they retry at 10" in page and "by olivia" in page
    assert 'name="csrfmiddlewaretoken"' in page and 'data-testid="note-form"' in page
    # an empty note is refused
    ops_client.post(f"/exceptions/{issue}/notes/", {"text": "  "})
    assert IssueNote.objects.filter(issue_id=issue, kind="note").count() == 1
    assert ops_client.get("/exceptions/999999/").status_code == 404


def test_read_only_people_see_no_controls_and_cannot_act(
    exec_client: Client, queue: list[int]
) -> None:
    html = exec_client.get("/exceptions/").content.decode()
    assert rows_of(html)
    assert 'id="bulk"' not in html and 'name="ids"' not in html and "data-select-all" not in html
    page = exec_client.get(f"/exceptions/{queue[0]}/").content.decode()
    assert "note-form" not in page and 'value="assign"' not in page
    assert (
        exec_client.post("/exceptions/bulk/", {"ids": queue[:1], "action": "resolve"}).status_code
        == 403
    )
    assert exec_client.post(f"/exceptions/{queue[0]}/notes/", {"text": "x"}).status_code == 403
    assert not IssueNote.objects.exists()


def test_forms_need_csrf(queue: list[int]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("olivia", "ops"))
    assert (
        client.post("/exceptions/bulk/", {"ids": queue[:1], "action": "resolve"}).status_code == 403
    )
    assert client.post(f"/exceptions/{queue[0]}/notes/", {"text": "x"}).status_code == 403


def test_csv_and_the_live_fragment(ops_client: Client, queue: list[int]) -> None:
    answer = ops_client.get("/exceptions/", {"format": "csv", "state": "all", "sort": "value"})
    assert answer["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert rows[0][:4] == ["id", "kind", "state", "opened_at"]
    assert len(rows) - 1 == len(queue)
    assert rows[1][rows[0].index("value")] == "300.00"
    float(rows[1][rows[0].index("age_s")])  # a number, not words

    fragment = ops_client.get(
        "/exceptions/", {"fragment": "rows", "kind": "stuck"}
    ).content.decode()
    assert "<!doctype" not in fragment.lower()
    assert len(rows_of(fragment)) == Issue.objects.filter(kind=STUCK).count()
    # its buttons come back to the page, not to the fragment
    assert 'name="next" value="/exceptions/?kind=stuck"' in fragment
