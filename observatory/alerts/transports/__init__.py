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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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


def transport_for(channel: ChannelConfig) -> Transport:
    """The transport of a channel's kind and mode."""
    if channel.kind == "slack":
        from observatory.alerts.transports.slack import SlackBot, SlackWebhook

        return SlackBot(channel) if channel.bot_token else SlackWebhook(channel)
    if channel.kind == "email":
        from observatory.alerts.transports.email import Email

        return Email(channel)
    raise TransportError(f"no transport for channel kind {channel.kind!r}", permanent=True)


__all__ = [
    "ChannelConfig",
    "Message",
    "Sent",
    "Transport",
    "TransportError",
    "transport_for",
]
