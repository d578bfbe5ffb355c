"""``GET /api/v1/kpis`` (docs/api.md, docs/kpis.md): the exact shape, the filters, the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.kpis import actions, registry
from observatory.lib.clock import now
from tests.dashboards import seed
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(ingest_client: Client) -> datetime:
    t0 = seed.seed(ingest_client)
    actions.do_fill_rollups()
    return t0


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_answers_every_kpi_and_field_of_the_contract(api_client: Client, seeded: datetime) -> None:
    since, until = now() - timedelta(hours=6), now()
    answer = api_client.get("/api/v1/kpis", {"since": iso(since), "until": iso(until)})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert set(body) == {"since", "until", "kpis"}
    echoed = datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
    assert abs(echoed - since) < timedelta(milliseconds=1)
    assert set(body["kpis"]) == set(registry.KPIS)
    for kpi_id, kpi in registry.KPIS.items():
        assert set(body["kpis"][kpi_id]) == set(kpi.field_names), kpi_id
    for row in body["kpis"]["hop_health"]["rows"]:
        assert tuple(row) == registry.HOP_HEALTH_ROW

    k = body["kpis"]
    # seed.py: #1001 posted 3 minutes after capture (late on the 60 s web SLA), #1002 never
    assert k["acceptance_to_posting"]["count"] == 1
    assert k["acceptance_to_posting"]["p95_s"] == pytest.approx(180, rel=0.005)
    assert k["acceptance_to_posting"]["within_sla"] == 0.0
    assert k["exception_rate"] == {"orders": 2, "with_exception": 2, "rate": 1.0}
    assert k["retries"] == {"retries": 1, "replays": 0}
    assert k["reconciliation_backlog"]["by_stage"]["posted"] == 1
    erp = [r for r in k["hop_health"]["rows"] if r["system"] == "erp"]
    assert erp and erp[0]["count"] == 2 and erp[0]["error_rate"] == 0.5


def test_filters(api_client: Client, seeded: datetime) -> None:
    window = {"since": iso(now() - timedelta(hours=6)), "until": iso(now())}
    web = api_client.get("/api/v1/kpis", {**window, "channel": "web"}).json()["kpis"]
    pos = api_client.get("/api/v1/kpis", {**window, "channel": "pos"}).json()["kpis"]
    assert web["exception_rate"]["orders"] == 2
    assert pos["exception_rate"]["orders"] == 0
    erp = api_client.get("/api/v1/kpis", {**window, "system": "erp"}).json()["kpis"]
    assert {r["system"] for r in erp["hop_health"]["rows"]} == {"erp"}
    # per-order figures ignore the system filter
    assert erp["exception_rate"]["orders"] == 2
    assert erp["reconciliation_backlog"]["by_stage"] == {"posted": 1}
    nowhere = api_client.get("/api/v1/kpis", {**window, "store": "ST-404"}).json()["kpis"]
    assert nowhere["exception_rate"] == {"orders": 0, "with_exception": 0, "rate": None}
    assert nowhere["acceptance_to_posting"]["p95_s"] is None


def test_defaults_to_the_last_24_hours(api_client: Client, db: None) -> None:
    body = api_client.get("/api/v1/kpis").json()
    since = datetime.fromisoformat(body["since"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(body["until"].replace("Z", "+00:00"))
    assert until - since == timedelta(hours=24)
    assert abs((until - now()).total_seconds()) < 60


def test_refuses_a_window_that_ends_before_it_starts(api_client: Client, db: None) -> None:
    params = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    answer = api_client.get("/api/v1/kpis", params)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "since"]
    yesterday = api_client.get("/api/v1/kpis", {"since": "yesterday"})
    assert yesterday.status_code == 422
    assert yesterday.json()["detail"][0]["loc"] == ["query", "since"]


def test_a_window_longer_than_the_rollups_is_cut_to_them(api_client: Client, db: None) -> None:
    params = {"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    answer = api_client.get("/api/v1/kpis", params)
    assert answer.status_code == 200, answer.content
    assert answer.json()["since"] == "2024-11-27T00:00:00Z"  # 400 days before until


def test_needs_a_reader(ingest_client: Client, db: None) -> None:
    assert Client().get("/api/v1/kpis").status_code == 401
    assert ingest_client.get("/api/v1/kpis").status_code == 403


def test_is_documented(api_client: Client, db: None) -> None:
    doc = api_client.get("/api/v1/openapi.json").json()
    assert "/api/v1/kpis" in doc["paths"]


#: Statements per answer, whatever the window, the filters or the number of orders: an API
#: token lookup, the rollups of both families, the backlog (one statement over the
#: stages that were late), the exceptions, the value at risk, the cancellations, the
#: posting completeness (the stores' time zones, then one aggregate), the refunds (and
#: their SLA policies), the reroutes, the inventory drift and the alerts; a
#: window ending in an hour with
#: minute rollups reads its last seconds straight from the source (the transactions, the
#: hops; those hops' memberships and repeats when there are any; the SLA policies were
#: read once for the whole answer, ``lib.memo``).
#: Edges in older hours read their hour once per process, then keep it (cold: at most
#: as many statements more).
PINNED_API = {"recent end": 16, "ended long ago": 13}


def test_answers_run_a_fixed_number_of_statements(
    api_client: Client, ingest_client: Client, seeded: datetime
) -> None:
    at = now()
    windows = {
        "recent end": [
            (at - timedelta(days=30), at),
            (at - timedelta(days=90, seconds=17), at),
            (at - timedelta(hours=7), at - timedelta(minutes=41)),
        ],
        "ended long ago": [
            (at - timedelta(days=60, hours=3), at - timedelta(days=30)),
            (at - timedelta(days=44, seconds=9), at - timedelta(days=20, minutes=13)),
        ],
    }
    filters = [{}, {"channel": "web"}, {"channel": "pos", "store": "ST-1"}, {"system": "erp"}]

    def counts() -> dict[str, set[int]]:
        seen: dict[str, set[int]] = {}
        for kind, spans in windows.items():
            for since, until in spans:
                for f in filters:
                    params = {"since": iso(since), "until": iso(until), **f}
                    with CaptureQueriesContext(connection) as cold:
                        assert api_client.get("/api/v1/kpis", params).status_code == 200
                    with CaptureQueriesContext(connection) as warm:
                        assert api_client.get("/api/v1/kpis", params).status_code == 200
                    # (cold: the edges' raw facts, and the stores' zones they are judged in)
                    assert len(cold) <= len(warm) + 6
                    seen.setdefault(kind, set()).add(len(warm))
        return seen

    expected = {kind: {n} for kind, n in PINNED_API.items()}
    assert counts() == expected
    # more orders, in other hours and days (at the windows' edges too), from another
    # channel, late and failed: the same
    events = []
    times = [at - timedelta(days=5 * i, hours=3, minutes=7 * i) for i in range(12)]
    for since, until in windows["ended long ago"]:
        times += [since + timedelta(seconds=30), until - timedelta(seconds=30)]
    for i, t in enumerate(times):
        keys = {"pos_receipt": f"ST-1-{i}"}
        events += [
            event(f"n-{i}", t, "pos", keys, stage="captured", channel="pos", store_id="ST-1"),
            event(f"n-{i}-p", t + timedelta(hours=2), "erp", keys, stage="posted",
                  outcome="error" if i % 3 else "ok"),
        ]  # fmt: skip
    answer = ingest_client.post(
        "/api/v1/events", orjson.dumps(events), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200 and not answer.json().get("rejected"), answer.content
    tick()
    actions.do_fill_rollups()
    assert counts() == expected
