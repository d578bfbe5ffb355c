"""The read replica (observatory/lib/routers.py, docs/scaling.md).

The replica here is the test database itself, reached through a second alias (the same
SQLite file, read-only; the same PostgreSQL database): the router's choices are what is
tested, and every statement each alias runs is recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.backends.signals import connection_created
from django.test import Client

from observatory.access.models import IngestToken
from observatory.hops.models import Hop
from observatory.kpis import actions as kpi_actions
from observatory.kpis.models import HopRollup
from observatory.lib import routers
from observatory.lib.clock import now
from observatory.lib.routers import REPLICA, REPLICA_PIN_COOKIE, ReplicaRouter, replica_reads
from observatory.transactions.models import Transaction
from observatory.triage.models import Issue
from tests.dashboards import seed
from tests.dashboards.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]
ROUTER = "observatory.lib.routers.ReplicaRouter"
MIDDLEWARE = "observatory.lib.routers.ReplicaReadsMiddleware"


class Statements:
    """Every statement run on each alias, in any thread, while recording."""

    def __init__(self) -> None:
        self.by_alias: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.wrapped: list[Any] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with self.lock:
            self.by_alias.setdefault(context["connection"].alias, []).append(sql)
        return execute(sql, params, many, context)

    def attach(self, connection: Any, **kwargs: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)
            self.wrapped.append(connection)

    def take(self, alias: str) -> list[str]:
        with self.lock:
            return self.by_alias.pop(alias, [])

    def clear(self) -> None:
        with self.lock:
            self.by_alias.clear()


@pytest.fixture
def replica(settings: Any, transactional_db: None) -> Iterator[Statements]:
    """The router and the middleware, installed as settings install them for
    ``DATABASE_REPLICA_URL``, over the test settings' ``replica`` alias (the test
    database under a second name); records every statement of either alias.

    Transactional: the replica's connection sees only what the primary committed."""
    settings.DATABASE_ROUTERS = [ROUTER]
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(middleware.index("observatory.lib.guard.NulGuardMiddleware") + 1, MIDDLEWARE)
    settings.MIDDLEWARE = middleware
    statements = Statements()
    connection_created.connect(statements.attach)
    for alias in (DEFAULT_DB_ALIAS, REPLICA):
        statements.attach(connections[alias])
    try:
        yield statements
    finally:
        connection_created.disconnect(statements.attach)
        for conn in statements.wrapped:
            if statements in conn.execute_wrappers:
                conn.execute_wrappers.remove(statements)
        conn = connections[REPLICA]
        conn.close()
        if hasattr(conn, "close_pool"):  # PostgreSQL: the test database is dropped later
            conn.close_pool()


BOTH = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])


# --- the router's choices ---------------------------------------------------------------------


@BOTH
def test_the_router_picks_aliases_as_documented(replica: Statements) -> None:
    r = ReplicaRouter()
    read_models = [Hop, Transaction, Issue, HopRollup]
    primary_models = [get_user_model(), Session, IngestToken]
    # outside replica_reads(): the primary (None: Django's own choice, the default alias)
    for model in read_models + primary_models:
        assert r.db_for_read(model) is None
        assert router.db_for_read(model) == DEFAULT_DB_ALIAS
    with replica_reads():
        for model in read_models:
            assert router.db_for_read(model) == REPLICA, model
            assert routers.reads(model).alias == REPLICA
        # sessions, users and tokens: read-your-writes, always the primary
        for model in primary_models:
            assert router.db_for_read(model) == DEFAULT_DB_ALIAS, model
        # inside a transaction on the primary, reads see its writes
        with transaction.atomic():
            for model in read_models:
                assert router.db_for_read(model) == DEFAULT_DB_ALIAS
        # writes: the primary, always
        for model in read_models + primary_models:
            assert router.db_for_write(model) == DEFAULT_DB_ALIAS
    # migrations never run on the replica
    for model in read_models + primary_models:
        assert router.allow_migrate_model(REPLICA, model) is False
        assert router.allow_migrate_model(DEFAULT_DB_ALIAS, model) is True


@pytest.mark.django_db
def test_without_a_replica_everything_reads_the_primary(settings: Any, monkeypatch: Any) -> None:
    settings.DATABASE_ROUTERS = [ROUTER]
    monkeypatch.delitem(connections.settings, REPLICA)
    assert not routers.configured()
    with replica_reads():
        assert router.db_for_read(Transaction) == DEFAULT_DB_ALIAS
        assert routers.reads(Hop).alias == DEFAULT_DB_ALIAS


@BOTH
def test_replica_reads_return_the_primarys_rows(replica: Statements) -> None:
    """Through the second alias (the same database): ORM reads and lib.rows.fetch."""
    from observatory.lib.rows import fetch

    seed.send(Client(HTTP_AUTHORIZATION=f"Bearer {_ingest_token()}"))
    seed.stitch()
    replica.clear()
    with replica_reads():
        on_replica = list(Transaction.objects.order_by("id").values_list("id", flat=True))
        fetched = fetch(Transaction, "1 = 1", [], "id")
    assert on_replica and on_replica == list(
        Transaction.objects.order_by("id").values_list("id", flat=True)
    )
    assert [t.id for t in fetched] == on_replica
    assert {t._state.db for t in fetched} == {REPLICA}
    assert len(replica.take(REPLICA)) == 2


def test_settings_wire_the_replica_from_the_environment(tmp_path: Path) -> None:
    """DATABASE_REPLICA_URL adds the alias (a test mirror of the primary), the router and
    the middleware; without it, none of them."""
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'aliases': sorted(s.DATABASES), "
        "'replica': s.DATABASES.get('replica', {}), 'routers': s.DATABASE_ROUTERS, "
        f"'middleware': {MIDDLEWARE!r} in s.MIDDLEWARE}}, default=str))"
    )
    primary = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "observatory.settings",
        "OBSERVATORY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": primary,
        "SECRET_KEY": "replica-settings-test",
    }
    env.pop("DATABASE_REPLICA_URL", None)

    def run(**extra: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    plain = run()
    assert plain == {"aliases": ["default"], "replica": {}, "routers": [], "middleware": False}
    wired = run(DATABASE_REPLICA_URL=primary)
    assert wired["aliases"] == ["default", "replica"]
    assert wired["routers"] == [ROUTER]
    assert wired["middleware"] is True
    assert wired["replica"]["TEST"]["MIRROR"] == "default"
    if primary.startswith("sqlite"):
        assert "query_only" in wired["replica"]["OPTIONS"]["init_command"]
        assert "transaction_mode" not in wired["replica"]["OPTIONS"]
    else:
        assert "pool" in wired["replica"]["OPTIONS"]


def _ingest_token() -> str:
    from observatory.access.actions import do_create_ingest_token

    return do_create_ingest_token("replica-test")[1]


# --- the pages over real HTTP ------------------------------------------------------------------


@pytest.fixture
def server(replica: Statements) -> Iterator[str]:
    """The ASGI application as the settings build it with the replica configured, served
    by uvicorn in a thread of this process (it reads the test database)."""
    from django.core.handlers.asgi import ASGIHandler

    from observatory.ingest.gate import IngestGate
    from observatory.routing import build_application
    from tests.serving import serve_in_thread

    with serve_in_thread(build_application(IngestGate(ASGIHandler()))) as url:
        yield url
    # the ingest gate looks tokens up in asgiref's thread-sensitive thread, outside any
    # request: give that thread's connections back before the test database is dropped
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(10)


def _writes(statements: list[str]) -> list[str]:
    reads = ("SELECT", "WITH", "SAVEPOINT", "RELEASE", "ROLLBACK")
    return [s for s in statements if not s.lstrip().upper().startswith(reads)]


@BOTH
def test_pages_over_http_read_the_replica(server: str, replica: Statements) -> None:
    ingest = _ingest_token()
    answer = requests.post(
        f"{server}/api/v1/events",
        data=json.dumps([seed.event("urn:replica", "com.acme.check", now(), system="erp",
                                    operation="post", keys={"order_number": "#R-1"})]),
        headers={"Authorization": f"Bearer {ingest}",
                 "Content-Type": "application/cloudevents-batch+json"},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    # ingest is a write: nothing of it touched the replica
    assert replica.take(REPLICA) == []
    seed.send(Client(HTTP_AUTHORIZATION=f"Bearer {ingest}"))
    seed.stitch()
    kpi_actions.do_fill_rollups()
    order = Transaction.objects.get(keys__value=seed.ORDER, merged_into=None)

    client = Client()
    client.force_login(make_user("olivia", "ops"))
    browser = requests.Session()
    browser.cookies.set(django_settings.SESSION_COOKIE_NAME, client.cookies["sessionid"].value)
    replica.clear()
    pages = {
        "/": "",
        "/ops/live/": "",
        f"/orders/?q={seed.ERP_SO}": seed.ORDER,
        f"/orders/{order.id}/": seed.ORDER,
        "/exceptions/": seed.STUCK_ORDER,
        "/executive/": "",
        "/systems/": "erp",
        "/systems/erp/": "erp",
    }
    for path, text in pages.items():
        page = browser.get(server + path, timeout=60)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        assert text in page.text, path
        used = replica.take(REPLICA)
        assert used, f"{path} read nothing from the replica"
        assert _writes(used) == [], path
    # the JSON API's KPIs and order lookup, with an API token
    from observatory.access.actions import do_create_api_token

    api = {"Authorization": f"Bearer {do_create_api_token('replica-reader', 'read')[1]}"}
    for path in ("/api/v1/kpis", f"/api/v1/orders/{seed.ERP_SO}", "/api/v1/systems"):
        answer = requests.get(server + path, headers=api, timeout=60)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert replica.take(REPLICA), f"{path} read nothing from the replica"
    assert (
        seed.ORDER
        in requests.get(f"{server}/api/v1/orders/{seed.ERP_SO}", headers=api, timeout=60).text
    )
    # the exception API stays on the primary (a script acknowledges, then reads back)
    replica.clear()
    assert requests.get(f"{server}/api/v1/exceptions", headers=api, timeout=60).ok
    assert replica.take(REPLICA) == []

    # a signed-in write pins this browser to the primary, so it sees what it did
    issue = Issue.objects.filter(state="open").order_by("id").first()
    assert issue is not None
    form = browser.get(f"{server}/exceptions/", timeout=60)
    token = browser.cookies.get("csrftoken") or ""
    assert form.ok and token
    done = browser.post(
        f"{server}/exceptions/{issue.id}/acknowledge/",
        data={"csrfmiddlewaretoken": token, "next": f"/orders/{issue.transaction_id}/"},
        headers={"Referer": server + "/exceptions/"},
        timeout=60,
    )
    assert done.status_code == 200, done.text[:500]
    assert REPLICA_PIN_COOKIE in browser.cookies
    Issue.objects.get(id=issue.id, state="acknowledged")
    replica.clear()
    again = browser.get(f"{server}/orders/{issue.transaction_id}/", timeout=60)
    assert again.status_code == 200
    assert replica.take(REPLICA) == []
    # once the pin expires, reads go back to the replica
    del browser.cookies[REPLICA_PIN_COOKIE]
    assert browser.get(f"{server}/orders/{issue.transaction_id}/", timeout=60).ok
    assert replica.take(REPLICA)
