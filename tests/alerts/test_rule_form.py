"""The rule form: choices in words, only the fields of the rule's kind kept, one error per
problem (the form and the API), the "would this fire now, and for what?" preview of an
unsaved rule, and read-only pages for those who may not edit."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.models import Channel, Rule
from tests.alerts.helpers import T0, stitch, stuck_orders
from tests.alerts.test_pages import user_client

pytestmark = pytest.mark.django_db

STUCK = {
    "name": "Web orders late to post",
    "kind": "stuck",
    "severity": "critical",
    "stage": "posted",
    "channel": "web",
    "for_s": "0",
    "repeat_s": "14400",
    "keep_firing_s": "0",
    "min_count": "1",
    "min_failed": "1",
    "active": "on",
}


def errors_of(html: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, text in re.findall(r'data-error-for="(\w+)">([^<]*)<', html):
        out.setdefault(name, []).append(text)
    return out


def test_the_form_offers_choices_in_words(admin_client: Client) -> None:
    page = admin_client.get("/alerts/rules/new/").content.decode()
    kinds = json.loads(re.search(r'data-kind-fields="([^"]*)"', page)[1].replace("&quot;", '"'))  # type: ignore[index]
    assert kinds["silence"] == ["system", "window_s", "while_system"]
    assert '<option value="acceptance_to_posting">Acceptance to posting</option>' in page
    assert '<optgroup label="Inventory sync lag">' in page
    assert '<option value="p95_s">95th percentile time (seconds)</option>' in page
    assert '<option value="posted">Posted</option>' in page  # stages
    assert '<option value="erp">erp</option>' in page and '<option value="wms">wms</option>' in page
    assert '<option value="&gt;">is above</option>' in page
    assert "Over the last (seconds)" in page and "error rate" in page
    assert re.search(r"/static/js/alerts\.[0-9a-f]{12}\.js", page) and "<script>" not in page
    assert 'data-testid="rule-preview"' in page


def test_preview_says_what_an_unsaved_rule_would_fire_for(
    admin_client: Client, ingest_client: Client
) -> None:
    stuck_orders(ingest_client, 3, T0)
    stitch(T0 + timedelta(seconds=120))
    before = Rule.objects.count()
    r = admin_client.post("/alerts/rules/new/", {**STUCK, "preview": "1"})
    assert r.status_code == 200
    page = r.content.decode()
    assert 'data-preview="fires"' in page and "Would fire" in page
    assert "3 web orders stuck before posted (USD 60.00)" in page and "waiting on erp" in page
    assert "system=erp, stage=posted, channel=web" in page
    assert ">#5002</a>" in page  # the orders behind it link to their pages
    assert Rule.objects.count() == before  # nothing saved

    # the script's fragment: a rule that would not fire says what it saw
    quiet = {**STUCK, "stage": "shipped"}
    fragment = admin_client.post("/alerts/rules/preview/", quiet).content.decode()
    assert 'data-preview="quiet"' in fragment and "<html" not in fragment
    assert "Now: 0 web orders stuck before shipped" in fragment
    silence = {**STUCK, "kind": "silence", "system": "erp", "window_s": "60"}
    fragment = admin_client.post("/alerts/rules/preview/", silence).content.decode()
    assert "the last hop from erp started" in fragment
    incomplete = {**STUCK, "kind": "kpi", "kpi": "retries"}
    fragment = admin_client.post("/alerts/rules/preview/", incomplete).content.decode()
    assert 'data-preview="incomplete"' in fragment and "Figure of the KPI" in fragment


def test_one_error_per_problem(admin_client: Client) -> None:
    bad = {**STUCK, "kind": "error_rate", "threshold": "lots", "labels": "team"}
    page = admin_client.post("/alerts/rules/new/", bad).content.decode()
    errors = errors_of(page)
    assert errors == {
        "system": ["required"],
        "threshold": ["Enter a number."],
        "window_s": ["required, in seconds"],
        "labels": ["&#x27;team&#x27;: write label=value"],
    }, errors
    assert not Rule.objects.filter(name=STUCK["name"]).exists()


def test_fields_of_another_kind_are_not_kept(admin_client: Client) -> None:
    """Switching kinds leaves values behind in the page; only the kind's own are saved,
    and a bad value in a field of another kind is no error."""
    data = {
        **STUCK,
        "kind": "silence",
        "system": "erp",
        "window_s": "900",
        "kpi": "retries",
        "threshold": "not a number",
        "labels": "team=erp, area=web",
    }
    r = admin_client.post("/alerts/rules/new/", data)
    assert r.status_code == 302, r.content.decode()[:3000]
    rule = Rule.objects.get(name=STUCK["name"])
    assert (rule.kind, rule.system, rule.window_s) == ("silence", "erp", 900)
    assert (rule.stage, rule.channel, rule.kpi, rule.threshold) == ("", "", "", None)
    assert rule.labels == {"team": "erp", "area": "web"}
    page = admin_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert 'value="area=web, team=erp"' in page  # sorted, whatever the database keeps


def test_the_api_gives_one_error_per_problem(write_client: Client) -> None:
    r = write_client.post(
        "/api/v1/alert-rules", {"name": "k", "kind": "kpi"}, content_type="application/json"
    )
    assert r.status_code == 422
    locs = [tuple(e["loc"]) for e in r.json()["detail"]]
    assert sorted(locs) == sorted(
        {("body", "kpi"), ("body", "op"), ("body", "threshold"), ("body", "window_s")}
    )


def test_read_only_users_see_pages_without_edit_forms(client: Client, settings: Any) -> None:
    rule = Rule.objects.get(name="ERP silent while Shopify sends")
    channel = Channel.objects.create(name="pd", kind="pagerduty", routing_key="k" * 32)
    c = user_client(client, "viewer")
    for path in (f"/alerts/rules/{rule.id}/", f"/alerts/channels/{channel.id}/"):
        page = c.get(path).content.decode()
        assert '<form method="post" action=""' not in page, path
        assert "Only the admin group can change" in page
    page = c.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert 'data-testid="rule-readonly"' in page and "no erp hop for 600 s" in page
    assert (
        'data-testid="channel-readonly"'
        in c.get(f"/alerts/channels/{channel.id}/").content.decode()
    )
    assert "k" * 32 not in c.get(f"/alerts/channels/{channel.id}/").content.decode()
    page = c.get("/alerts/silences/new/").content.decode()
    assert 'data-testid="silence-readonly"' in page and "Create silence" not in page
    board = c.get("/alerts/").content.decode()
    assert "New rule" not in board and "New channel" not in board and "New silence" not in board
    assert c.post("/alerts/rules/preview/", STUCK).status_code == 403


def test_a_per_currency_figure_is_offered_once_named(admin_client: Client) -> None:
    data = {
        **STUCK,
        "kind": "kpi",
        "kpi": "value_at_risk",
        "field": "by_currency.EUR",
        "op": ">",
        "threshold": "10000",
        "window_s": "3600",
    }
    r = admin_client.post("/alerts/rules/new/", data)
    assert r.status_code == 302, r.content.decode()[:3000]
    rule = Rule.objects.get(name=STUCK["name"])
    assert (rule.kpi, rule.field) == ("value_at_risk", "by_currency.EUR")
    page = admin_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert '<option value="by_currency.EUR" selected>' in page
    r = admin_client.post("/alerts/rules/preview/", {**data, "field": "by_currency.eur"})
    assert 'data-preview="incomplete"' in r.content.decode()
