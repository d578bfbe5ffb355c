"""``GET /metrics``: traffic sent through the real ingest endpoints, one pass of the
pipeline (``manage.py pipeline``), then a scrape over HTTP parsed with prometheus_client's
own parser, its figures checked against what was sent."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from observatory.access.actions import do_create_api_token
from observatory.lib.clock import now
from tests.triage.helpers import contract_policies, ev, order_events, reporting, send

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
ELSEWHERE = "203.0.113.9"  # not in METRICS_ALLOWED_IPS (documentation range)

#: Labels each Observatory metric may carry: bounded sets, never an order id or a key.
LABELS = {
    "observatory_hops_received": {"system", "outcome"},
    "observatory_duplicate_deliveries": {"system"},
    "observatory_log_records_dropped": {"system"},
    "observatory_acceptance_to_posting_seconds": {"channel"},
    "observatory_inventory_sync_lag_seconds": {"channel"},
    "observatory_exceptions_open": {"kind", "system", "owner"},
    "observatory_exceptions_oldest_age_seconds": {"kind", "system", "owner"},
    "observatory_reconciliation_backlog": {"stage"},
    "observatory_reconciliation_backlog_transactions": set(),
    "observatory_watermark_lag_seconds": {"system"},
    "observatory_alerts_firing": {"rule", "severity"},
    "observatory_stitcher_queue_hops": set(),
    "observatory_stitcher_queue_oldest_age_seconds": set(),
}


def scrape(client: Client, **extra: Any) -> dict[str, Any]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(families: dict[str, Any], name: str, suffix: str = "") -> dict[tuple, float]:
    """(label values sorted by name) -> value of ``name``'s samples named name+suffix."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in families[name].samples
        if s.name == name + suffix
    }


def _traffic(ingest_client: Client) -> None:
    """Three web orders posted 20 s after capture, one whose posting failed and never came
    (a failed hop, and stuck), its capture delivered twice, and an inventory update
    published 40 s later; then one pass of the pipeline, judged a few minutes on (the ERP
    has had its maximum delay to report the posting of an order it has just heard of)."""
    contract_policies()
    t = now() - timedelta(hours=2)
    for i in range(3):
        send(ingest_client, *order_events(f"#M{i}", t + timedelta(minutes=i)))
    stuck = ev("shopify", {"order_number": "#M9"}, t, stage="captured", channel="web")
    failed = ev(
        "erp",
        {"order_number": "#M9"},
        t + timedelta(seconds=5),
        operation="post_sales_order",
        outcome="error",
    )
    send(ingest_client, stuck, failed)
    send(ingest_client, stuck)  # the same event again: a duplicate delivery of shopify's
    send(
        ingest_client,
        ev("erp", {"inventory_update_id": "INV-1"}, t, stage="inventory_adjusted", channel="web"),
        ev(
            "shopify",
            {"inventory_update_id": "INV-1"},
            t + timedelta(seconds=40),
            stage="inventory_published",
            channel="web",
        ),
        *reporting(now() - timedelta(seconds=30), "erp", "shopify"),
    )
    call_command("pipeline", now=(now() + timedelta(minutes=3)).isoformat(), stdout=StringIO())


def test_scrape_reports_what_was_sent(ingest_client: Client, api_client: Client) -> None:
    _traffic(ingest_client)
    families = scrape(api_client, REMOTE_ADDR=ELSEWHERE)

    # every Observatory family is there, with only its bounded labels
    for name, labels in LABELS.items():
        assert name in families, name
        for s in families[name].samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    # nothing anywhere names an order or a key
    text = api_client.get("/metrics", REMOTE_ADDR=ELSEWHERE).content.decode()
    assert not re.search(r"#M\d|SO-M|INV-1|9M\d", text)

    hops = samples(families, "observatory_hops_received", "_total")
    # shopify: 3 captures + the stuck capture + the publication + a beat; erp: 3 postings,
    # the failed one, the adjustment, a beat
    assert hops[(("outcome", "ok"), ("system", "shopify"))] == 6
    assert hops[(("outcome", "error"), ("system", "shopify"))] == 0
    assert hops[(("outcome", "ok"), ("system", "erp"))] == 5
    assert hops[(("outcome", "error"), ("system", "erp"))] == 1
    assert families["observatory_hops_received"].type == "counter"

    dups = samples(families, "observatory_duplicate_deliveries", "_total")
    assert dups == {(("system", "erp"),): 0, (("system", "shopify"),): 1}

    a2p = families["observatory_acceptance_to_posting_seconds"]
    assert a2p.type == "histogram"
    web = (("channel", "web"),)
    assert samples(families, a2p.name, "_count") == {web: 3}
    assert samples(families, a2p.name, "_sum")[web] == pytest.approx(60, rel=0.02)
    buckets = {s.labels["le"]: s.value for s in a2p.samples if s.name.endswith("_bucket")}
    assert "60" in buckets  # the web SLA is a bucket bound of its own
    assert buckets["15"] == 0 and buckets["30"] == 3 and buckets["+Inf"] == 3
    inv = families["observatory_inventory_sync_lag_seconds"]
    inv_buckets = {s.labels["le"]: s.value for s in inv.samples if s.name.endswith("_bucket")}
    assert "300" in inv_buckets and inv_buckets["30"] == 0 and inv_buckets["60"] == 1

    open_ = samples(families, "observatory_exceptions_open")
    stuck_key = (("kind", "stuck"), ("owner", "finance-systems"), ("system", "erp"))
    assert open_.get(stuck_key) == 1, open_
    failed_keys = [k for k in open_ if ("kind", "failed_hop") in k]
    assert [open_[k] for k in failed_keys] == [1]
    ages = samples(families, "observatory_exceptions_oldest_age_seconds")
    # the stuck order's age counts from its missed deadline: 2 h ago less the 60 s SLA
    assert ages[stuck_key] == pytest.approx(2 * 3600 - 60, abs=120)

    backlog = samples(families, "observatory_reconciliation_backlog")
    assert backlog == {(("stage", "posted"),): 1}
    assert samples(families, "observatory_reconciliation_backlog_transactions") == {(): 1}

    lag = samples(families, "observatory_watermark_lag_seconds")
    assert set(lag) == {(("system", "erp"),), (("system", "shopify"),)}
    systems = {s["system"]: s for s in api_client.get("/api/v1/systems").json()["systems"]}
    assert {k[0][1]: v for k, v in lag.items()} == {
        name: pytest.approx(s["behind_s"], abs=5) for name, s in systems.items()
    }

    firing = samples(families, "observatory_alerts_firing")
    assert firing and all(v >= 0 for v in firing.values())
    assert samples(families, "observatory_stitcher_queue_hops") == {(): 0}
    assert samples(families, "observatory_stitcher_queue_oldest_age_seconds") == {(): 0}


def test_histograms_of_settled_days_follow_their_changes(
    ingest_client: Client, api_client: Client
) -> None:
    """Days before yesterday are merged once per process and kept under their rows' ids
    and digests: an order of three days ago arriving late still counts."""
    contract_policies()
    t = now() - timedelta(days=3)
    name = "observatory_acceptance_to_posting_seconds"

    def count() -> float:
        return samples(scrape(api_client), name, "_count")[(("channel", "web"),)]

    send(ingest_client, *order_events("#S1", t))
    call_command("pipeline", stdout=StringIO())
    assert count() == 1
    assert count() == 1  # again, from memory
    send(ingest_client, *order_events("#S2", t + timedelta(minutes=5)))
    call_command("pipeline", stdout=StringIO())
    assert count() == 2
    send(ingest_client, *order_events("#S3", now() - timedelta(minutes=30)))
    call_command("pipeline", stdout=StringIO())
    assert count() == 3
    buckets = {
        s.labels["le"]: s.value for s in scrape(api_client)[name].samples if "le" in s.labels
    }
    assert buckets["15"] == 0 and buckets["30"] == 3


def test_counters_survive_the_days_retention_removes(
    ingest_client: Client, api_client: Client
) -> None:
    from observatory.kpis.models import HopRollup, OrderRollup
    from observatory.pipeline import wiring

    _traffic(ingest_client)
    kept = ("observatory_hops_received", "observatory_duplicate_deliveries")
    hist = ("observatory_acceptance_to_posting_seconds", "observatory_inventory_sync_lag_seconds")

    def figures() -> dict[str, Any]:
        families = scrape(api_client)
        out = {name: samples(families, name, "_total") for name in kept}
        for name in hist:
            out[name] = {s.labels.get("le"): s.value for s in families[name].samples}
        return out

    before = figures()
    assert before["observatory_hops_received"] and before[hist[0]][None] > 0
    # a year and more later, every day rollup of today is past retention
    list(wiring.prune(at=now() + timedelta(days=401)))
    assert not HopRollup.objects.exists() and not OrderRollup.objects.exists()
    assert figures() == before
    list(wiring.prune(at=now() + timedelta(days=402)))  # a second prune adds nothing
    assert figures() == before


def test_stitcher_queue_before_the_stitcher_runs(ingest_client: Client) -> None:
    send(ingest_client, *reporting(now() - timedelta(seconds=30), "erp"))
    call_command("stitch", stdout=StringIO())
    t = now() - timedelta(hours=2)
    send(ingest_client, *order_events("#Q1", t))
    families = scrape(Client())  # from loopback: no token needed by default
    assert samples(families, "observatory_stitcher_queue_hops") == {(): 2}
    (age,) = samples(families, "observatory_stitcher_queue_oldest_age_seconds").values()
    assert 0 <= age < 60  # counted from arrival, not from the hops' business time
    # the ERP's posting of two hours ago, not stitched yet, holds its watermark back
    (lag,) = samples(families, "observatory_watermark_lag_seconds").values()
    assert lag == pytest.approx(2 * 3600 - 20, abs=60)
    call_command("stitch", stdout=StringIO())
    families = scrape(Client())
    assert samples(families, "observatory_stitcher_queue_hops") == {(): 0}
    # (stitched, the late posting keeps the ERP catching up for a while: docs/watermarks.md)
    assert set(samples(families, "observatory_watermark_lag_seconds")) == {
        (("system", "erp"),),
        (("system", "shopify"),),
    }


def test_process_metrics_are_the_process_collectors(api_client: Client) -> None:
    families = scrape(api_client)
    if Path("/proc/self/stat").exists():
        assert "process_resident_memory_bytes" in families


def test_who_may_read(settings: Any, ingest_token: str) -> None:
    # no credential, from an address outside the allowed ones: 401 naming both ways in
    refused = Client().get("/metrics", REMOTE_ADDR=ELSEWHERE)
    assert refused.status_code == 401
    assert (
        "Bearer" in refused.content.decode() and "METRICS_ALLOWED_IPS" in refused.content.decode()
    )
    assert refused["WWW-Authenticate"].startswith("Bearer")
    # an unknown token: 401; an ingest token or a revoked API token: 403
    assert (
        Client(HTTP_AUTHORIZATION="Bearer obs_api_nope").get("/metrics", REMOTE_ADDR=ELSEWHERE)
    ).status_code == 401
    ingest = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert ingest.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403
    row, plain = do_create_api_token("revoked-reader", "read")
    row.revoked_at = now()
    row.save()
    revoked = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert revoked.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403
    # a token is judged even from an allowed address
    assert ingest.get("/metrics").status_code == 403
    # a read token from anywhere; loopback by default; a configured range
    _, reader = do_create_api_token("prometheus", "read")
    assert (
        Client(HTTP_AUTHORIZATION=f"Bearer {reader}")
        .get("/metrics", REMOTE_ADDR=ELSEWHERE)
        .status_code
        == 200
    )
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "203.0.113.9"]
    assert Client().get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    assert Client().post("/metrics").status_code == 405


def test_grafana_dashboard_reads_only_metrics_the_scrape_has(api_client: Client) -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exposed = {
        f.name + suffix
        for f in scrape(api_client).values()
        for suffix in suffixes.get(f.type, ("",))
    }
    dashboards = sorted((ROOT / "docs" / "grafana").glob("*.json"))
    assert dashboards
    for path in dashboards:
        board = json.loads(path.read_text())
        exprs = [
            t["expr"] for panel in board["panels"] for t in panel.get("targets", []) if "expr" in t
        ]
        assert exprs, path
        for expr in exprs:
            names = set(re.findall(r"\b((?:observatory|process)_[a-z_]+)\b", expr))
            assert names, expr
            assert names <= exposed, (path.name, expr, names - exposed)


def test_log_records_without_keys_are_counted_per_system(
    ingest_client: Client, api_client: Client
) -> None:
    def logs(service: str, *bodies: str) -> bytes:
        records = [
            {"timeUnixNano": str(time.time_ns()), "body": {"stringValue": b}} for b in bodies
        ]
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        return orjson.dumps(
            {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}
        )

    for body in (logs("middleware", "heartbeat", "poll done"), logs("erp", "batch ok")):
        answer = ingest_client.post("/v1/logs", body, content_type="application/json")
        assert answer.status_code == 200, answer.content
    families = scrape(api_client, REMOTE_ADDR=ELSEWHERE)
    dropped = samples(families, "observatory_log_records_dropped", "_total")
    assert dropped == {(("system", "erp"),): 1, (("system", "middleware"),): 2}
    assert families["observatory_log_records_dropped"].type == "counter"
