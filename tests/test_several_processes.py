"""More than one machine (docs/scaling.md): two web processes and two Celery workers on one
PostgreSQL database, the read replica configured (the same server), under load.

OTLP requests go to both web processes from several clients at once, each order's five
hops dealt out over both (so a hop often arrives before the one that links it), some
requests sent again to the other process, some to both at the same moment. Then:

* every span a 200 acknowledged is stored once, and nothing else is;
* every hop is stitched exactly once (one membership, one stitch record, nothing
  waiting), each order one transaction holding exactly its five hops;
* order pages and the order API answer from both processes, and the pages read the
  replica.

2,000 orders: before the stitcher read its components again under the lock when the
transactions held hops it had not seen, runs of 2,000 and 3,000 orders left hops in no
transaction, while four runs of 400 passed.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.db import connection

from bench.orders import Poster, Request, build, sign_in, spread
from bench.scratch import scratch_url
from bench.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ORDERS = int(os.environ.get("SEVERAL_PROCESSES_ORDERS", "2000"))
BATCH = 40
REPLICA_APP = "observatory-replica"


def _redis_url() -> str | None:
    """A Redis database of its own for this run's broker (another run's worker must not
    take its tasks), emptied; None when Redis is not there."""
    import redis

    url = f"redis://127.0.0.1:6379/{random.randint(2, 15)}"
    try:
        redis.Redis.from_url(url, socket_timeout=2).flushdb()
    except redis.RedisError:
        return None
    return url


@pytest.fixture
def stack(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    if connection.vendor != "postgresql":
        pytest.skip("several processes share one database on PostgreSQL only")
    broker = _redis_url()
    if broker is None:
        pytest.skip("no Redis on 127.0.0.1:6379 for the broker")
    base = os.environ["DATABASE_URL"]
    url = scratch_url(base, connection.settings_dict["NAME"])
    monkeypatch.setenv("BENCH_BROKER_URL", broker)
    env = {
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DATABASE_REPLICA_URL": f"{url}?application_name={REPLICA_APP}",
        "PIPELINE_TICK_S": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    s = Stack(database_url=url, env=env, webs=2, workers=2)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return list(cur.fetchall())


def test_two_web_processes_and_two_workers(stack: Stack) -> None:
    run = secrets.token_hex(3).upper()
    orders = list(range(ORDERS))
    shares = spread(orders, len(stack.bases))
    requests_by_web = [
        [build(run, share[i : i + BATCH]) for i in range(0, len(share), BATCH)] for share in shares
    ]
    acked: list[tuple[str, str]] = []
    lock = threading.Lock()
    failures: list[str] = []

    def send(web: int, batch: list[Request], again: bool) -> None:
        poster = Poster(stack.bases[web], stack.token)
        other = Poster(stack.bases[1 - web], stack.token)
        for n, request in enumerate(batch):
            status, _ = poster.post(request)
            if status != 200:
                failures.append(f"web {web}: {status}")
                continue
            with lock:
                acked.extend(request.spans)
            if again and n % 5 == 0:  # a re-sent request, to the other process
                status, _ = other.post(request)
                if status != 200:
                    failures.append(f"again on web {1 - web}: {status}")
        poster.close()
        other.close()

    # the same requests to both processes at the same moment: the COPY's conflict path
    raced = [build(run + "R", [(o, h) for h in range(5)]) for o in range(10)]

    def race(request: Request) -> None:
        posters = [Poster(base, stack.token) for base in stack.bases]
        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(lambda p: p.post(request)[0], posters))
        assert statuses == [200, 200], statuses
        with lock:
            acked.extend(request.spans)

    reads: Counter[int] = Counter()
    done = threading.Event()

    def read_while_loading() -> None:
        """Order lookups on both processes while the load runs: never a server error."""
        api = {"Authorization": f"Bearer {stack.api_token}"}
        i = 0
        while not done.is_set():
            base = stack.bases[i % 2]
            answer = requests.get(f"{base}/api/v1/orders/SO-{run}-{i % ORDERS}", headers=api)
            reads[answer.status_code] += 1
            i += 1
            time.sleep(0.05)

    reader = threading.Thread(target=read_while_loading, daemon=True)
    reader.start()
    jobs = []
    with ThreadPoolExecutor(6) as pool:
        for web, batches in enumerate(requests_by_web):
            half = len(batches) // 2
            jobs.append(pool.submit(send, web, batches[:half], True))
            jobs.append(pool.submit(send, web, batches[half:], False))
        jobs += [pool.submit(race, r) for r in raced]
        for job in jobs:
            job.result()
    done.set()
    reader.join(30)
    assert failures == []
    assert not [s for s in reads if s >= 500], reads

    # every acknowledged span stored once, and nothing else
    assert len(acked) == len(set(acked)) == (ORDERS + len(raced)) * 5
    stored = Counter(_rows("SELECT trace_id, span_id FROM hops_hop"))
    assert set(stored) == set(acked)
    assert max(stored.values()) == 1

    # every hop stitched exactly once, each order one transaction of its five hops
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if _rows("SELECT COUNT(*) FROM hops_waiting")[0][0] == 0 and _orders_whole(run) == 0:
            break
        time.sleep(1)
    assert _rows("SELECT COUNT(*) FROM hops_waiting")[0][0] == 0
    assert _rows("SELECT COUNT(*) FROM hops_stitched")[0][0] == len(acked)
    memberships = _rows(
        "SELECT h.id, COUNT(l.id) FROM hops_hop h "
        "LEFT JOIN transactions_transactionhop l ON l.hop_id = h.id GROUP BY h.id"
    )
    assert len(memberships) == len(acked)
    assert {n for _, n in memberships} == {1}
    assert _orders_whole(run) == 0

    # order pages and lookups from both processes; pages read the replica
    tx_id = _rows(
        "SELECT transaction_id FROM transactions_transactionkey WHERE kind = %s AND value = %s",
        ["order_number", f"#{run}-7"],
    )[0][0]
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_user('olivia', password='several-processes')",
    )
    api = {"Authorization": f"Bearer {stack.api_token}"}
    for base in stack.bases:
        browser = requests.Session()
        sign_in(base, browser, "olivia", "several-processes")
        page = browser.get(f"{base}/orders/{tx_id}/", timeout=60)
        assert page.status_code == 200 and f"#{run}-7" in page.text, base
        found = requests.get(f"{base}/api/v1/orders/1Z{run}0000000007", headers=api, timeout=60)
        assert found.status_code == 200, found.text[:300]
        assert f"#{run}-7" in found.text
        assert len(found.json()["hops"]) == 5
    replica = _rows(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s",
        [REPLICA_APP],
    )[0][0]
    assert replica > 0, "the pages never opened a connection to the replica"


def _orders_whole(run: str) -> int:
    """How many of the run's orders are not (yet) one live transaction of five hops."""
    rows = _rows(
        "SELECT t.id, COUNT(l.id) FROM transactions_transaction t "
        "JOIN transactions_transactionhop l ON l.transaction_id = t.id "
        "WHERE t.merged_into_id IS NULL AND EXISTS (SELECT 1 FROM "
        "transactions_transactionkey k WHERE k.transaction_id = t.id AND k.kind = %s "
        "AND k.value LIKE %s) GROUP BY t.id",
        ["order_number", f"#{run}%"],
    )
    expected = ORDERS + 10
    return abs(expected - len(rows)) + sum(1 for _, n in rows if n != 5)
