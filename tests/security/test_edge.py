"""The review's server errors, one by one, through the real HTTP interfaces: none may be
a 500 (docs/architecture.md, "The JSON API's edge")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from observatory.access.actions import do_create_api_token


@pytest.fixture
def write_client(db: None) -> Client:
    _, plain = do_create_api_token("edge-writer", "write")
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


@pytest.fixture
def staff(db: None) -> Client:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-12345")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("system", ["pos", "marketplace", "tax", "nobody"])
def test_kpis_for_a_system_that_reaches_no_stage(api_client: Client, system: str) -> None:
    answer = api_client.get("/api/v1/kpis", {"system": system})
    assert answer.status_code == 200, answer.content
    assert answer.json()["kpis"]["reconciliation_backlog"]["total"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/orders", {"system": "erp\x00"}, "system"),
        ("/api/v1/orders", {"channel": "\x00"}, "channel"),
        ("/api/v1/exceptions", {"owner": "a\x00b"}, "owner"),
        ("/api/v1/kpis", {"store": "\x00"}, "store"),
    ],
)
def test_nul_in_an_api_parameter_is_a_422_naming_it(
    api_client: Client, url: str, params: dict[str, str], field: str
) -> None:
    answer = api_client.get(url, params)
    assert answer.status_code == 422, answer.content
    assert answer.json()["detail"][0]["loc"] == ["query", field]


@pytest.mark.django_db
def test_nul_in_a_path_or_a_page_parameter(api_client: Client, staff: Client) -> None:
    assert api_client.get("/api/v1/orders/%2300%001").status_code in (404, 422)
    assert api_client.get("/api/v1/systems/erp%00").status_code in (404, 422)
    for url in ("/orders/?q=%2310%00", "/systems/erp%00/", "/executive/?channel=web%00"):
        assert staff.get(url).status_code == 400, url


@pytest.mark.django_db
def test_nul_in_a_json_config_body_is_a_422(write_client: Client) -> None:
    for url, body in (
        ("/api/v1/alert-channels", {"name": "a\x00", "kind": "email", "to": ["a@example.com"]}),
        ("/api/v1/alert-rules", {"name": "r\x00", "kind": "stuck", "stage": "posted"}),
        (
            "/api/v1/silences",
            {"matchers": {"system": "erp\x00"}, "ends_at": "2199-01-01T00:00:00Z", "comment": "x"},
        ),
    ):
        answer = write_client.post(url, body, content_type="application/json")
        assert answer.status_code == 422, (url, answer.content)


@pytest.mark.django_db
@pytest.mark.parametrize("offset", ["+23:59", "-23:30", "+16:00"])
def test_time_zone_offsets_past_fifteen_hours(
    api_client: Client, write_client: Client, offset: str
) -> None:
    since, until = f"2026-01-01T00:00:00{offset}", f"2026-01-02T00:00:00{offset}"
    for url in ("/api/v1/kpis", "/api/v1/orders"):
        answer = api_client.get(url, {"since": since, "until": until})
        assert answer.status_code == 200, (url, answer.content)
    body = {
        "matchers": {"system": "erp"},
        "ends_at": f"2199-01-01T00:00:00{offset}",
        "comment": "x",
    }
    answer = write_client.post("/api/v1/silences", body, content_type="application/json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["ends_at"].endswith("Z")  # stored in UTC


@pytest.mark.django_db
def test_integers_past_64_bits(api_client: Client, staff: Client) -> None:
    huge = str(2**64)
    for url, params in (
        ("/api/v1/exceptions", {"transaction": huge}),
        ("/api/v1/alerts", {"rule": huge}),
        ("/api/v1/alerts", {"cursor": huge}),
    ):
        answer = api_client.get(url, params)
        assert answer.status_code == 422, (url, answer.content)
    assert api_client.get(f"/api/v1/alerts/{huge}").status_code == 422
    assert staff.get(f"/orders/{huge}/").status_code == 404
    assert staff.get(f"/alerts/{huge}/").status_code == 404
    assert staff.get("/exceptions/", {"page": huge}).status_code == 200


@pytest.mark.django_db
def test_a_line_break_in_the_csv_channel_and_its_filename(staff: Client) -> None:
    answer = staff.get("/executive/summary.csv", {"channel": 'web\r\nX-Evil: 1"/../'})
    assert answer.status_code == 200
    disposition = answer["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "/" not in disposition
    assert disposition.startswith('attachment; filename="observatory-summary-30d-web_X-Evil_1')


@pytest.mark.django_db
def test_an_unknown_api_path_answers_json(api_client: Client) -> None:
    answer = api_client.get("/api/v1/orders/%0Aabc")
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("application/json")


# --- the database down ----------------------------------------------------------------------


@pytest.fixture
def database_down(transactional_db: None) -> Any:
    """The default connection pointed where no database answers (a closed port on
    PostgreSQL, a file in a missing folder on SQLite); restored after."""
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.close_pool()
        settings_dict["PORT"] = "1"
        settings_dict["HOST"] = "127.0.0.1"
    else:
        settings_dict["NAME"] = "/nonexistent/observatory/db.sqlite3"
    yield
    connection.close()
    if connection.vendor == "postgresql":
        connection.close_pool()
    settings_dict.clear()
    settings_dict.update(saved)


def test_the_read_api_answers_503_fast_while_the_database_is_down(database_down: None) -> None:
    client = Client(HTTP_AUTHORIZATION="Bearer obs_api_whatever-it-is-the-db-is-down")
    for url in ("/api/v1/orders", "/api/v1/kpis", "/api/v1/exceptions", "/api/v1/systems"):
        started = time.monotonic()
        answer = client.get(url)
        took = time.monotonic() - started
        assert answer.status_code == 503, (url, answer.content)
        assert answer["Retry-After"] == "5"
        assert answer.json() == {"detail": "the database is unavailable, retry later"}
        assert took < 3.0, (url, took)  # DB_POOL_TIMEOUT is 1 s
    started = time.monotonic()
    ready = Client().get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
    assert time.monotonic() - started < 4.0
    # ingest, as before, and pages
    assert (
        Client(HTTP_AUTHORIZATION="Bearer x")
        .post("/api/v1/events", b"{}", content_type="application/json")
        .status_code
        == 503
    )


@pytest.mark.django_db(transaction=True)
def test_a_database_dying_in_the_middle_of_a_copy_is_a_503(
    ingest_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the COPY is PostgreSQL's")
    import psycopg

    from observatory.hops import store

    real = store._key_rows

    def die(pairs: Any) -> Any:
        # the server ends this backend mid-COPY, as a crash or failover would
        with psycopg.connect(
            host=connection.settings_dict["HOST"] or "127.0.0.1",
            port=connection.settings_dict["PORT"] or 5432,
            user=connection.settings_dict["USER"],
            dbname=connection.settings_dict["NAME"],
            autocommit=True,
        ) as other:
            pid = connection.connection.info.backend_pid
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        return real(pairs)  # the keys' COPY meets the ended backend

    monkeypatch.setattr(store, "_key_rows", die)
    event = {
        "specversion": "1.0",
        "id": "dies-1",
        "source": "urn:erp",
        "type": "posted",
        "data": {"system": "erp", "keys": {"order_number": "#1"}},
    }
    answer = ingest_client.post(
        "/api/v1/events", event, content_type="application/cloudevents+json"
    )
    assert answer.status_code == 503, answer.content
    assert answer["Retry-After"] == "5"
