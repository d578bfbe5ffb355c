"""PostgreSQL stopped (as by a crash) and started again under ingest load: ingest answers
503 with Retry-After while the database is gone, senders retry, and afterwards every span
the server acknowledged is stored, once (docs/architecture.md, "Fault tests")."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from observatory.lib.clock import now
from tests.dashboards import seed
from tests.faults.load import SpanLoad
from tests.faults.servers import postgres, product, stored_uids

pytestmark = pytest.mark.slow


def test_ingest_through_a_postgresql_restart() -> None:
    started = time.monotonic()
    with postgres() as pg:
        url = pg.create_database("observatory")
        with product(database_url=url) as obs:
            obs.start_web()
            load = SpanLoad(obs.base, obs.token, prefix="PG")
            load.start(senders=3)
            time.sleep(3)
            before = len(load.acked)
            assert before > 0, load.report()

            pg.stop("immediate")
            down_at = time.monotonic()
            # the database is gone: a span to store gets 503, and when to come back (an
            # empty request has nothing to store, and the token may still be trusted)
            body = seed.otlp(
                "erp",
                [
                    seed.span(
                        "post",
                        now(),
                        10,
                        trace_id=secrets.token_hex(16),
                        attributes={"retail.key.order_number": "#PG-DOWN"},
                    )
                ],
            )
            answer = requests.post(
                obs.base + "/v1/traces",
                data=body,
                headers={
                    "Authorization": f"Bearer {obs.token}",
                    "Content-Type": "application/json",
                },
                timeout=10,
            )
            assert answer.status_code == 503, (answer.status_code, answer.content[:300])
            assert answer.headers.get("Retry-After"), answer.headers
            time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
            during = len(load.acked)
            pg.start()
            up_at = time.monotonic()

            # ingest comes back on its own (the pool replaces the broken connections)
            while len(load.acked) == during and time.monotonic() - up_at < 20:
                time.sleep(0.1)
            recovered_s = time.monotonic() - up_at
            time.sleep(3)
            load.stop()
            stored, twice = stored_uids(obs)

    lost = load.acked - stored
    print(
        f"\nPostgreSQL restart: {load.report()}; acknowledged from the stop to the restart "
        f"{during - before}; ingest back {recovered_s:.1f} s after the restart; "
        f"acknowledged spans lost {len(lost)}; stored twice {twice}; "
        f"{time.monotonic() - started:.0f} s"
    )
    assert not lost, sorted(lost)[:10]
    assert twice == 0
    assert load.acked == load.sent, "every span sent was acknowledged in the end"
    assert load.statuses[503] > 0, load.report()  # the senders did meet the outage
    assert len(load.acked) > during, "ingest came back after the restart"
