"""Simulator traffic through the real ingest endpoints, in phases, for the KPI tests.

The simulator's model (``observatory.simulator.model``) plans realistic orders; its real
senders post them as the OpenTelemetry SDK's OTLP spans, signed Shopify webhooks and
CloudEvents to a live server. Steps go out in phases (by the time they reach Observatory),
with the pipeline run after each phase, so later phases bring late hops that move
anchors, merge transactions stitched apart before, and repeat deliveries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

from observatory.simulator.model import Plan, Simulation
from observatory.simulator.scenarios import SCENARIOS
from observatory.simulator.timing import TimeMap
from observatory.simulator.transport import Senders


@dataclass
class Traffic:
    sim: Simulation
    senders: Senders
    start: datetime
    sent: int = 0

    def send_until(self, until: datetime) -> int:
        """Send every step due (at Observatory) up to ``until``; wait until delivered."""
        stamp = TimeMap(origin=self.start).stamp
        n = 0
        while True:
            batch = self.sim.pop_due(until, 500)
            if not batch:
                break
            for step in batch:
                self.senders.send(step, stamp)
            n += len(batch)
        self.flush()
        self.sent += n
        return n

    def flush(self, timeout: float = 60.0) -> None:
        events = self.senders.events
        for source, emitter in list(events._emitters.items()):
            if emitter.pending:
                events._flush(source)
        for provider in self.senders.spans._providers:
            provider.force_flush(int(timeout * 1000))
        deadline = time.monotonic() + timeout
        while self.senders.backlog() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.senders.backlog() == 0, "the simulator could not deliver everything"

    def close(self) -> None:
        self.senders.close(30.0)
        assert self.senders.stats.hops_failed == 0, self.senders.stats.reasons


def start_traffic(
    url: str,
    token: str,
    *,
    scenario: str = "chaos",
    orders: int = 200,
    days: float = 2.0,
    seed: int = 11,
    start: datetime | None = None,
) -> Traffic:
    start = start or datetime.now(UTC).replace(microsecond=0)
    plan = Plan(
        seed=seed,
        start=start,
        scenario=SCENARIOS[scenario],
        history_days=days,
        history_orders=orders,
    )
    secret = next(iter(settings.SHOPIFY_WEBHOOK_SECRET))
    senders = Senders.for_server(url, token, secret, seed=seed, workers=4)
    return Traffic(Simulation(plan), senders, start)


def phases(start: datetime, days: float, n: int) -> list[datetime]:
    """``n`` phase ends over the history, the last one at the start."""
    first = start - timedelta(days=days)
    step = (start - first) / n
    return [first + step * (i + 1) for i in range(n)]


Pipeline = Callable[[], object]


# --- hand-made late hops, merges and repeats, through the events endpoint ----------------------


def event(
    event_id: str, at: datetime, system: str, keys: dict[str, str], **data: object
) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:kpi-tests:late",
        "type": f"com.acme.{system}.{data.get('stage') or 'status'}",
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"system": system, "keys": keys, **data},
    }


def late_first(start: datetime) -> list[dict[str, object]]:
    """Before the twist: two halves of one order stitched apart, an order seen first by
    the ERP, an order with no channel yet, and one captured in one hour."""
    t = start - timedelta(hours=30)
    return [
        # one order, two halves: Shopify's id alone, then the order number alone
        event(
            "m-1", t, "shopify", {"shopify_order_id": "990001"}, stage="captured", duration_ms=80
        ),
        event(
            "m-2",
            t + timedelta(minutes=7),
            "erp",
            {"order_number": "#M-1"},
            stage="posted",
            duration_ms=900,
            channel="web",
        ),
        # the ERP reports an order whose capture comes later (the anchor appears late)
        event(
            "l-1",
            t + timedelta(hours=2),
            "erp",
            {"order_number": "#L-1"},
            stage="posted",
            duration_ms=640,
        ),
        # no channel yet: its hops count under no channel until one arrives
        event(
            "c-1",
            t + timedelta(hours=3),
            "shopify",
            {"order_number": "#C-1"},
            stage="captured",
            duration_ms=70,
        ),
        event(
            "c-2",
            t + timedelta(hours=3, minutes=2),
            "erp",
            {"order_number": "#C-1"},
            stage="posted",
            duration_ms=710,
            outcome="error",
            error="ERP 503",
        ),
        # the connector's retry (the simulated history has retries only some days)
        event(
            "c-3",
            t + timedelta(hours=3, minutes=4),
            "erp",
            {"order_number": "#C-1"},
            stage="posted",
            duration_ms=690,
            retry_attempt=1,
        ),
        # captured at t+5h; an earlier capture of it will arrive late
        event(
            "e-1",
            t + timedelta(hours=5),
            "shopify",
            {"order_number": "#E-1"},
            stage="captured",
            channel="marketplace",
            duration_ms=60,
        ),
        event(
            "e-2",
            t + timedelta(hours=5, minutes=1),
            "erp",
            {"order_number": "#E-1"},
            stage="posted",
            duration_ms=500,
        ),
    ]


def late_second(start: datetime) -> list[dict[str, object]]:
    """The twist: a hop with both keys merges the halves, the late capture arrives, the
    channel arrives, an earlier capture moves an anchor hours back, and repeats."""
    t = start - timedelta(hours=30)
    return [
        event(
            "m-3",
            t + timedelta(minutes=1),
            "middleware",
            {"shopify_order_id": "990001", "order_number": "#M-1"},
            stage="validated",
            duration_ms=150,
            channel="web",
        ),
        event(
            "l-2",
            t - timedelta(minutes=3),
            "pos",
            {"order_number": "#L-1"},
            stage="captured",
            channel="pos",
            store_id="ST-99",
            duration_ms=30,
        ),
        event(
            "c-3",
            t + timedelta(hours=3, minutes=1),
            "middleware",
            {"order_number": "#C-1"},
            stage="validated",
            channel="web",
            duration_ms=120,
        ),
        event(
            "e-0",
            t + timedelta(hours=1, minutes=30),
            "shopify",
            {"order_number": "#E-1"},
            stage="captured",
            channel="marketplace",
            duration_ms=65,
        ),
        # the same deliveries again: stored once, counted as repeats
        event(
            "m-1", t, "shopify", {"shopify_order_id": "990001"}, stage="captured", duration_ms=80
        ),
        event(
            "c-2",
            t + timedelta(hours=3, minutes=2),
            "erp",
            {"order_number": "#C-1"},
            stage="posted",
            duration_ms=710,
            outcome="error",
            error="ERP 503",
        ),
    ]
