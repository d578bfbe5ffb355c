"""A channel added while alerts fire hears of them at the next evaluation, not after the
rule's repeat interval (4 hours by default); the channels that already heard get nothing
more, and alerts that are silenced, held back or pending are not caught up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.actions import do_evaluate
from observatory.alerts.models import Alert, Channel, Notification, Silence
from tests.alerts.conftest import Receiver
from tests.alerts.helpers import T0, later, posting, run, send, stuck_orders, stuck_rule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _base(settings: Any) -> None:
    settings.OBSERVATORY_BASE_URL = "https://observatory.example.com"


def test_a_channel_added_while_an_alert_fires_gets_it_at_the_next_evaluation(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    rule = stuck_rule()  # repeat_s: the default 4 hours
    assert rule.repeat_s == 14400
    Channel.objects.create(name="first", kind="slack", webhook_url=receiver.url + "/first")
    stuck_orders(ingest_client, 2, T0)
    run(later(T0, 120))
    assert len(receiver.posts("/first")) == 1
    alert = Alert.objects.get(rule=rule)

    # added while it fires (and switched-on channels count as added)
    Channel.objects.create(name="late", kind="webhook", webhook_url=receiver.url + "/late")
    off = Channel.objects.create(
        name="off", kind="slack", webhook_url=receiver.url + "/off", active=False
    )
    evaluated, delivered = run(later(T0, 135))
    assert evaluated.notifications == 1 and delivered.sent == 1
    [late] = receiver.posts("/late")
    doc = late.json()
    assert doc["status"] == "firing" and doc["alerts"][0]["fingerprint"] == alert.fingerprint
    assert len(receiver.posts("/first")) == 1  # the channel that heard gets nothing more

    evaluated, _ = run(later(T0, 150))
    assert evaluated.notifications == 0  # caught up once

    Channel.objects.filter(pk=off.pk).update(active=True)
    run(later(T0, 165))
    assert len(receiver.posts("/off")) == 1

    # its resolution reaches every channel that heard of it
    send(ingest_client, *[posting(5000 + i, later(T0, 170)) for i in range(2)])
    run(later(T0, 180))
    assert receiver.posts("/late")[-1].json()["status"] == "resolved"
    assert len(receiver.posts("/first")) == 2 and len(receiver.posts("/off")) == 2
    kinds = Notification.objects.filter(channel__name="late").values_list("event__kind", flat=True)
    assert sorted(kinds) == ["firing", "resolved"]


def test_only_alerts_that_went_out_are_caught_up(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    """A rule naming its channels reaches only those; a silenced alert reaches nobody."""
    rule = stuck_rule()
    own = Channel.objects.create(name="own", kind="slack", webhook_url=receiver.url + "/own")
    rule.channels.set([own])
    stuck_orders(ingest_client, 1, T0)
    run(later(T0, 120))
    Channel.objects.create(name="other", kind="slack", webhook_url=receiver.url + "/other")
    assert do_evaluate(clock=lambda: later(T0, 135)).notifications == 0  # not the rule's

    rule.channels.clear()
    Silence.objects.create(
        matchers={"rule": rule.name},
        starts_at=later(T0, 140),
        ends_at=later(T0, 3600),
        comment="maintenance",
        created_by="t",
    )
    assert do_evaluate(clock=lambda: later(T0, 150)).notifications == 0  # silenced now
    Silence.objects.update(ends_at=later(T0, 155))
    evaluated, _ = run(later(T0, 160))
    assert evaluated.notifications == 1  # the silence ended: "other" hears of it
    assert len(receiver.posts("/other")) == 1 and len(receiver.posts("/own")) == 1
    assert Alert.objects.get().last_notified_at == later(T0, 120)  # no reminder was made
    assert Alert.objects.get().fired_at == later(T0, 120)
    assert timedelta(0) < later(T0, 160) - later(T0, 120) < timedelta(seconds=rule.repeat_s)


def test_a_pagerduty_channel_added_to_an_acknowledged_alert_gets_its_incident_acknowledged(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any
) -> None:
    from observatory.alerts.actions import do_acknowledge

    settings.ALERTS_PAGERDUTY_URL = receiver.url + "/v2/enqueue"
    receiver.default = (202, {}, b'{"status":"success"}')
    rule = stuck_rule()
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    stuck_orders(ingest_client, 1, T0)
    run(later(T0, 120))
    alert = Alert.objects.get(rule=rule)
    do_acknowledge(alert.id, "maria", clock=lambda: later(T0, 125))
    Channel.objects.create(name="pd", kind="pagerduty", routing_key="K" * 32)
    run(later(T0, 135))
    events = [r.json() for r in receiver.posts("/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"] == f"observatory/alert/{alert.id}"
