"""The Celery worker killed with SIGKILL (its main process, pool and beat at once) in the
middle of a stitch chunk and in the middle of an alert delivery, then started again:
every hop ends up stitched once, and every notification answered once
(docs/architecture.md, "Fault tests").

The worker runs on the embedded filesystem broker; the database is SQLite, or a throwaway
PostgreSQL cluster when the suite runs on PostgreSQL.
"""

from __future__ import annotations

import time

import pytest

from observatory.transactions.actions import LOCK_ID
from tests.faults.load import SYSTEMS, SpanLoad
from tests.faults.servers import (
    Product,
    SlowSlack,
    caught_up,
    database,
    product,
    query,
    stitching,
    stored_uids,
    wait_for,
)

pytestmark = pytest.mark.slow

#: the worker's schedule, quickened
FAST = {
    "PIPELINE_TICK_S": "1",
    "ALERTS_DELIVER_EVERY_S": "1",
    "ALERTS_EVALUATE_EVERY_S": "3600",
    # the shortest lease there is: a send's bound plus a margin (alerts.actions.lease_s)
    "ALERTS_DELIVERY_LEASE_S": "1",
}


def _in_a_chunk(obs: Product, total: int) -> bool:
    """Whether the worker is inside a stitch chunk: on PostgreSQL, holding the stitcher's
    write lock; on SQLite (where a chunk cannot be seen from outside before it commits),
    past its first chunk with hops still waiting, so inside the next one."""
    if obs.env.get("DATABASE_URL"):
        [(held,)] = query(
            obs,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND classid = {LOCK_ID >> 32} AND objid = {LOCK_ID & 0xFFFFFFFF}",
        )
        return bool(held)
    waiting = stitching(obs)["waiting"]
    return 0 < waiting < total


def test_a_worker_killed_in_the_middle_of_a_stitch_chunk() -> None:
    started = time.monotonic()
    with database() as url, product(database_url=url, env=FAST) as obs:
        obs.start_web()
        load = SpanLoad(obs.base, obs.token, batch_orders=50, prefix="K")
        load.start(senders=2)
        # a backlog of a few chunks (5,000 hops each), with no worker yet
        wait_for("a backlog", lambda: len(load.acked) >= 12_000, 40, 0.1)
        load.stop()
        backlog = stitching(obs)
        assert backlog["waiting"] == backlog["hops"] == len(load.acked) > 5000, backlog

        obs.start_worker()
        wait_for("a stitch chunk under way", lambda: _in_a_chunk(obs, backlog["hops"]), 30, 0.02)
        obs.kill_worker()
        at_kill = stitching(obs)
        obs.start_worker()

        state = caught_up(obs, 45)
        stored, twice = stored_uids(obs)

    lost = load.acked - stored
    print(
        f"\nWorker killed mid-chunk: {load.report()}; at the kill {at_kill}; after the "
        f"restart {state}; acknowledged spans lost {len(lost)}; stored twice {twice}; "
        f"{time.monotonic() - started:.0f} s"
    )
    assert at_kill["waiting"] > 0, "the kill came before the backlog was stitched"
    assert not lost and twice == 0
    assert state["stitched_twice"] == 0 and state["unstitched"] == 0
    assert state["transactions"] == len(load.acked) // len(SYSTEMS)


def _outbox(obs: Product, channels: int) -> dict[str, int]:
    from observatory.alerts.models import DeliveryAttempt, Notification

    rows = query(
        obs,
        f"SELECT status, count(*) FROM {Notification._meta.db_table} GROUP BY status",
    )
    [(ok,)] = query(
        obs,
        f"SELECT count(*) FROM {DeliveryAttempt._meta.db_table} WHERE ok",
    )
    [(interrupted,)] = query(
        obs,
        f"SELECT count(*) FROM {DeliveryAttempt._meta.db_table} "
        "WHERE NOT ok AND error LIKE 'interrupted:%'",
    )
    return {**{s: n for s, n in rows}, "successful attempts": ok, "interrupted": interrupted}


def _queue_test_messages(obs: Product, slack: SlowSlack, count: int) -> list[str]:
    """One test message due now to each of ``count`` Slack webhook channels, each its own
    path on the receiver; the paths."""
    paths = [f"/services/TFAULT/B{i}/hook" for i in range(count)]
    obs.shell(
        "from django.utils import timezone\n"
        "from observatory.alerts.models import AlertEvent, Channel, Notification\n"
        "now = timezone.now()\n"
        f"for i, url in enumerate({[slack.url(p) for p in paths]!r}):\n"
        "    ch = Channel.objects.create(name=f'slow-{i}', kind='slack', webhook_url=url)\n"
        "    ev = AlertEvent.objects.create(kind='test', at=now, snapshot={'event': 'test', "
        "'requested_by': 'faults', 'channel': ch.name})\n"
        "    Notification.objects.create(event=ev, channel=ch, next_attempt_at=now, "
        "created_at=now)\n"
        "print('ok')"
    )
    return paths


def test_slow_sends_outliving_the_claim_are_not_sent_again() -> None:
    """Three sends of 8 s each, one after the other, outlive the 20 s lease of the pass
    that claimed them: the other pool process's passes must leave them alone."""
    started = time.monotonic()
    slack = SlowSlack(hold_s=8)
    try:
        with database() as url, product(database_url=url, env=FAST, ingest=False) as obs:
            paths = _queue_test_messages(obs, slack, 3)
            obs.start_worker()
            wait_for("every message answered", lambda: len(slack.answered) == 3, 50, 0.2)
            time.sleep(2)  # a second copy would have arrived by now
            outbox = _outbox(obs, 3)
    finally:
        slack.close()
    print(
        f"\nSlow Slack: arrived {dict(slack.arrived)}, answered {dict(slack.answered)}; "
        f"outbox {outbox}; {time.monotonic() - started:.0f} s"
    )
    assert all(slack.arrived[p] == 1 for p in paths), dict(slack.arrived)
    assert all(slack.answered[p] == 1 for p in paths), dict(slack.answered)
    assert outbox == {"sent": 3, "successful attempts": 3, "interrupted": 0}


def test_a_worker_killed_in_the_middle_of_an_alert_delivery() -> None:
    """The receiver holds the first request open; the worker is killed meanwhile. That
    send is in doubt (it reached the receiver, its answer never came back): once its lease
    runs out the restarted worker sends it again, and the other two once."""
    started = time.monotonic()
    slack = SlowSlack(hold_first=True)
    try:
        with database() as url, product(database_url=url, env=FAST, ingest=False) as obs:
            paths = _queue_test_messages(obs, slack, 3)
            obs.start_worker()
            assert slack.first.wait(30), obs.log("worker.log")
            obs.kill_worker()
            killed_at = time.monotonic()
            slack.release.set()  # the held request now finds its sender gone
            obs.start_worker()
            wait_for("every message answered", lambda: len(slack.answered) == 3, 50, 0.2)
            resent_s = time.monotonic() - killed_at
            time.sleep(2)
            outbox = _outbox(obs, 3)
    finally:
        slack.close()
    print(
        f"\nWorker killed mid-delivery: arrived {dict(slack.arrived)}, answered "
        f"{dict(slack.answered)}; outbox {outbox}; in-doubt send retried after "
        f"{resent_s:.0f} s; {time.monotonic() - started:.0f} s"
    )
    assert all(slack.answered[p] == 1 for p in paths), dict(slack.answered)
    # only the send the kill cut off arrived twice
    assert sum(slack.arrived.values()) == 4 and max(slack.arrived.values()) == 2
    # and the delivery log says so
    assert outbox == {"sent": 3, "successful attempts": 3, "interrupted": 1}
