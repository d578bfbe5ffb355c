"""Notification transports: one module per kind behind one small contract.

A transport is built from a plain ``ChannelConfig`` and has one method,
``notify(message) -> ref``: it delivers the message (a snapshot of the alert, plus the
links to put in it) and answers what it needs to find the message again (Slack's channel
and ``ts``, so the bot mode can update it in place), or raises ``TransportError``.

``TransportError(permanent=True)`` means retrying cannot help; ``channel_broken`` (by
default the same as ``permanent``) means the channel itself is unusable (a 404 webhook,
``invalid_token``, ``channel_not_found``) and is marked failing until someone fixes it or
a test message goes through. ``retry_after`` is the wait the far end asked for.

Transports never touch the database; the delivery pass in ``actions`` does the
bookkeeping (attempts, backoff, the failing flag).

The HTTP transports (Slack, Teams, PagerDuty, the generic webhook) share ``post`` (the
private-address guard of ``observatory.lib.http``, no redirects, bounded time) and
``http_error`` (an answer's status as the contract above: 429 and 5xx retry, with the
``Retry-After`` asked for; 401, 403, 404 and 410 break the channel; any other refusal
fails the message only). A transport also says which events it takes (``takes``): only a
channel that follows the alert (a Slack bot's message edited in place, a PagerDuty
incident) is told of an acknowledgement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from observatory.lib import http


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        channel_broken: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.channel_broken = permanent if channel_broken is None else channel_broken


@dataclass(frozen=True)
class ChannelConfig:
    id: int
    name: str
    kind: str
    webhook_url: str = ""
    bot_token: str = ""
    slack_channel: str = ""
    to: tuple[str, ...] = ()
    routing_key: str = ""
    secret: str = ""


@dataclass(frozen=True)
class Message:
    """What to say: ``event`` (firing, repeat, update, resolved, acknowledged, test), the
    alert ``snapshot`` taken when it happened, and the links to offer."""

    event: str
    snapshot: Mapping[str, Any]
    base_url: str
    alert_url: str = ""
    ack_url: str = ""
    dashboard_url: str = ""
    #: the ref of the message to update in place (Slack bot mode), if there is one
    previous: Mapping[str, Any] = field(default_factory=dict)

    def order_url(self, transaction_id: Any) -> str:
        return f"{self.base_url.rstrip('/')}/orders/{transaction_id}/"

    @property
    def resolved(self) -> bool:
        return self.event == "resolved" or self.snapshot.get("state") == "resolved"

    def group_key(self) -> str:
        """The alert group's identity outside (PagerDuty's ``dedup_key``, the webhook's
        ``groupKey``): one per alert, so that its firing, acknowledgement and resolution
        land on the same incident; a test message has its own per channel."""
        if self.event == "test":
            return f"observatory/test/{self.snapshot.get('channel', '')}"
        return f"observatory/alert/{self.snapshot.get('alert_id', '')}"

    def one_line(self) -> str:
        """``[FIRING critical] rule: summary`` (resolutions and reminders say so)."""
        snap = self.snapshot
        if self.event == "test":
            return "Test message from Observatory: this channel receives alerts."
        severity, rule = snap.get("severity", ""), snap.get("rule", "")
        summary = " ".join(str(snap.get("summary", "")).split())
        if self.resolved:
            return f"[RESOLVED {severity}] {rule}: back to normal (last seen: {summary})"
        tag = {"repeat": "STILL FIRING", "update": "UPDATE", "acknowledged": "ACKNOWLEDGED"}
        return f"[{tag.get(self.event, 'FIRING')} {severity}] {rule}: {summary}"


@dataclass
class Sent:
    """What a transport answers on success."""

    ref: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    detail: str = ""


class Transport:
    """Deliver one message to one channel (see the module docstring)."""

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel

    def notify(self, message: Message) -> Sent:  # pragma: no cover - the contract
        raise NotImplementedError

    def updates_in_place(self) -> bool:
        """Can this channel edit a message it sent (acknowledged, resolved)?"""
        return False

    def takes(self, event: str) -> bool:
        """Is ``event`` sent to this channel? An acknowledgement only where the channel
        follows the alert (a message edited in place, an incident)."""
        return event != "acknowledged" or self.updates_in_place()


def post(
    url: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> http.Response:
    """One POST through ``observatory.lib.http`` (no retries here: the outbox retries); a
    refused address is a permanent ``TransportError``, no answer a transient one."""
    try:
        return http.post(url, json=json, data=data, headers=headers, retries=0)
    except http.UnsafeURL as exc:
        raise TransportError(str(exc), permanent=True) from None
    except http.RequestFailed as exc:
        raise TransportError(str(exc)) from None


def http_error(
    response: http.Response, service: str, reason: str = "", *, broken: bool = False
) -> TransportError:
    """What a non-2xx answer means (see the module docstring); ``broken`` forces "this
    channel cannot work" (a refusal whose reason says so)."""
    status = response.status
    said = f"{service} answered {status} {reason}".strip()
    if status == 429:
        return TransportError(
            f"rate limited by {service} ({reason or '429'})",
            retry_after=response.retry_after(),
            status=status,
        )
    if status >= 500 or status == 408:
        return TransportError(said, retry_after=response.retry_after(), status=status)
    if broken or status in (401, 403, 404, 410):
        return TransportError(said, permanent=True, status=status)
    return TransportError(
        f"{service} refused the message: {status} {reason}".strip(),
        permanent=True,
        channel_broken=False,
        status=status,
    )


def reason_of(response: http.Response, limit: int = 200) -> str:
    """The first words of an answer's body, on one line."""
    return " ".join(response.text.split())[:limit]


def transport_for(channel: ChannelConfig) -> Transport:
    """The transport of a channel's kind and mode."""
    if channel.kind == "slack":
        from observatory.alerts.transports.slack import SlackBot, SlackWebhook

        return SlackBot(channel) if channel.bot_token else SlackWebhook(channel)
    if channel.kind == "email":
        from observatory.alerts.transports.email import Email

        return Email(channel)
    if channel.kind == "teams":
        from observatory.alerts.transports.teams import Teams

        return Teams(channel)
    if channel.kind == "pagerduty":
        from observatory.alerts.transports.pagerduty import PagerDuty

        return PagerDuty(channel)
    if channel.kind == "webhook":
        from observatory.alerts.transports.webhook import Webhook

        return Webhook(channel)
    raise TransportError(f"no transport for channel kind {channel.kind!r}", permanent=True)


__all__ = [
    "ChannelConfig",
    "Message",
    "Sent",
    "Transport",
    "TransportError",
    "http_error",
    "post",
    "reason_of",
    "transport_for",
]
