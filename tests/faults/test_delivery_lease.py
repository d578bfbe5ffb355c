"""A delivery pass sends its claimed notifications one after the other, each within the
send timeout, but a batch of slow sends outlives the lease its claim took: another pass
(the other worker process, on the deliver beat) may then take over what is not sent
yet. Each notification must still reach the channel once (docs/architecture.md,
"Alerts")."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from observatory.alerts import actions
from observatory.alerts.actions import LEASE_S, do_deliver
from observatory.alerts.models import EV_TEST, N_SENT, AlertEvent, Notification
from observatory.alerts.transports import Message, Sent
from observatory.alerts.transports.slack import SlackWebhook
from tests.alerts.helpers import webhook_channel

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
#: a slow channel: each send takes this long, within the transports' send timeout
SEND_S = 12


def test_a_slow_batch_outliving_its_lease_sends_each_notification_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = webhook_channel("https://hooks.slack.example/services/T/B/slow")
    count = LEASE_S // SEND_S + 3  # the claim's lease ends with three still unsent
    for i in range(count):
        event = AlertEvent.objects.create(kind=EV_TEST, at=T0, snapshot={"n": i})
        Notification.objects.create(event=event, channel=channel, next_attempt_at=T0, created_at=T0)
    clock = [T0]
    received: list[int] = []
    other: list[Any] = []

    def notify(self: SlackWebhook, message: Message) -> Sent:
        received.append(message.snapshot["n"])
        clock[0] += timedelta(seconds=SEND_S)
        if clock[0] > T0 + timedelta(seconds=LEASE_S) and not other:
            other.append(None)  # the other worker's pass runs once, while this send is slow
            other[0] = do_deliver(clock=lambda: clock[0])
        return Sent(status=200)

    monkeypatch.setattr(SlackWebhook, "notify", notify)
    first = do_deliver(clock=lambda: clock[0])

    twice = {n: c for n, c in Counter(received).items() if c > 1}
    print(f"notifications sent twice: {len(twice)}")
    assert not twice, f"sent more than once: {twice}"
    assert sorted(received) == list(range(count))
    assert first.sent + other[0].sent == count
    assert Notification.objects.filter(status=N_SENT).count() == count
    # the in-flight send kept its claim: the other pass took only what was not begun
    assert other[0].sent >= 1
    assert actions.Notification.objects.filter(claimed_until__isnull=False).count() == 0


def test_a_send_cut_off_by_a_killed_worker_is_logged_then_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = webhook_channel("https://hooks.slack.example/services/T/B/killed")
    event = AlertEvent.objects.create(kind=EV_TEST, at=T0, snapshot={"n": 0})
    # what a worker killed mid-send leaves: the try counted, no outcome, its claim
    n = Notification.objects.create(
        event=event,
        channel=channel,
        next_attempt_at=T0,
        created_at=T0,
        attempts=1,
        claimed_until=T0 + timedelta(seconds=actions.lease_s()),
    )
    sent: list[int] = []

    def notify(self: SlackWebhook, message: Message) -> Sent:
        sent.append(message.snapshot["n"])
        return Sent(status=200)

    monkeypatch.setattr(SlackWebhook, "notify", notify)
    assert do_deliver(clock=lambda: T0 + timedelta(seconds=5)).sent == 0  # still claimed
    later = T0 + timedelta(seconds=actions.lease_s() + 1)
    assert do_deliver(clock=lambda: later).sent == 1
    assert sent == [0]
    log = list(n.attempt_log.order_by("id").values_list("ok", "error"))
    assert log == [(False, actions.INTERRUPTED), (True, "")]
    n.refresh_from_db()
    assert n.status == N_SENT and n.attempts == 2
