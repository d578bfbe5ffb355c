"""Slack: incoming webhooks, and bot token mode (``chat.postMessage``, then ``chat.update``
of the same message when the alert is acknowledged, updated or resolved).

Messages are Block Kit within Slack's limits (api.slack.com/reference/block-kit): at most
50 blocks, a header of at most 150 characters of plain text, section texts of at most 3000,
at most 10 fields of 2000, button texts of 75, and a fallback ``text`` always set (it is
what notifications and old clients show).

Errors: 429 carries ``Retry-After``; a 404 or 410 webhook, ``invalid_token``,
``channel_not_found`` and the other "this will never work" answers mark the channel
failing; a payload Slack refuses fails this message only; 5xx and network errors retry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from django.conf import settings

from observatory.alerts import text
from observatory.alerts.transports import (
    Message,
    Sent,
    Transport,
    TransportError,
    http_error,
    post,
)
from observatory.lib import http

MAX_BLOCKS: Final = 50
MAX_HEADER: Final = 150
MAX_SECTION: Final = 3000
MAX_FIELD: Final = 2000
MAX_FIELDS: Final = 10
MAX_BUTTON_TEXT: Final = 75
MAX_URL: Final = 3000
MAX_FALLBACK: Final = 3000
#: Slack refuses some payloads well under the documented limits (``msg_blocks_too_long``
#: is reported around 13k characters of blocks): optional blocks are dropped past this.
BLOCKS_BUDGET: Final = 11000

SEVERITY_ICON: Final = {"critical": "🔴", "warning": "🟠", "info": "🔵"}

#: answers that mean the channel cannot work until someone fixes it
BROKEN: Final = frozenset(
    {
        "invalid_token",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_service",
        "no_team",
        "team_disabled",
        "channel_not_found",
        "channel_is_archived",
        "is_archived",
        "not_in_channel",
        "missing_scope",
        "no_permission",
        "access_denied",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
#: answers worth another try later
TRANSIENT: Final = frozenset(
    {"ratelimited", "rate_limited", "fatal", "internal_error", "service_unavailable",
     "request_timeout"}
)  # fmt: skip
#: chat.update cannot edit that message any more: post a new one instead
UNEDITABLE: Final = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "msg_not_found"}
)


# --- Block Kit --------------------------------------------------------------------------------


def cut(value: str, limit: int) -> str:
    """``value`` within ``limit`` characters (an ellipsis marks the cut)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def esc(value: Any) -> str:
    """Escape text for Slack mrkdwn (``&``, ``<``, ``>`` are control characters)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    return f"<{url}|{esc(label).replace('|', '¦')}>"


def when(iso: str | None) -> str:
    """A Slack date token that each reader sees in their own time zone."""
    if not iso:
        return "—"
    at = datetime.fromisoformat(iso)
    return (
        f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{text.clock_time(at)}>"
    )


def _section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(markdown, MAX_SECTION)}}


def _fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": cut(f"*{esc(k)}*\n{v}", MAX_FIELD)}
            for k, v in pairs[:MAX_FIELDS]
        ],
    }


def _button(label: str, url: str, action_id: str, style: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": cut(label, MAX_BUTTON_TEXT), "emoji": True},
        "url": url[:MAX_URL],
        "action_id": action_id,
    }
    if style:
        button["style"] = style
    return button


def headline(message: Message) -> str:
    """The header line: severity (or the outcome) and the rule."""
    snap = message.snapshot
    if message.event == "test":
        return "🧪 Test message from Observatory"
    rule = str(snap.get("rule", "alert"))
    severity = str(snap.get("severity", "warning"))
    if message.event == "resolved" or snap.get("state") == "resolved":
        return cut(f"✅ RESOLVED · {rule}", MAX_HEADER)
    icon = SEVERITY_ICON.get(severity, "⚪")
    tag = {"repeat": " · still firing", "update": " · update"}.get(message.event, "")
    return cut(f"{icon} {severity.upper()}{tag} · {rule}", MAX_HEADER)


def fallback(message: Message) -> str:
    """The plain ``text`` every Slack message must carry (notifications, old clients)."""
    snap = message.snapshot
    if message.event == "test":
        return "Test message from Observatory: this channel receives alerts."
    severity, rule = snap.get("severity", ""), snap.get("rule", "")
    summary = str(snap.get("summary", ""))
    if snap.get("state") == "resolved":
        line = f"[RESOLVED {severity}] {rule}: back to normal (last seen: {summary})"
    else:
        tag = {"repeat": "STILL FIRING", "update": "UPDATE"}.get(message.event, "FIRING")
        line = f"[{tag} {severity}] {rule}: {summary}"
        held = [h for h in snap.get("held") or [] if h.get("state") == "held"]
        if held:
            line += "; held back: " + "; ".join(str(h.get("summary", "")) for h in held)
    return cut(line, MAX_FALLBACK)


def _orders_lines(message: Message, orders: Mapping[str, Any], title: str) -> str:
    lines = [f"*{esc(title)}*"]
    for row in orders.get("top", [])[:10]:
        amount = text.money(row["amount"], row.get("currency", "")) if row.get("amount") else "—"
        late = row.get("late_since")
        tail = f" · late since {when(late)}" if late else ""
        lines.append(
            f"• {link(message.order_url(row['id']), row.get('label', row['id']))} · {amount}{tail}"
        )
    count = int(orders.get("count", 0))
    shown = len(orders.get("top", [])[:10])
    if count > shown:
        lines.append(f"…and {count - shown:,} more")
    return "\n".join(lines)


def blocks(message: Message) -> list[dict[str, Any]]:
    """The Block Kit blocks of a message (see the module docstring for the limits)."""
    snap = message.snapshot
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(message), "emoji": True}}
    ]
    if message.event == "test":
        out.append(
            _section(
                "This channel is connected to Observatory: alerts about stuck orders, silent "
                f"systems and error rates will arrive here. Sent from {esc(message.base_url)}."
            )
        )
        return out
    resolved = snap.get("state") == "resolved"
    what = esc(cut(str(snap.get("summary", "")), 1500))
    if resolved:
        what = f"*Back to normal.* Last seen while firing: {what}"
        since = (
            f"*Resolved* {when(snap.get('resolved_at'))} · was firing since "
            f"{when(snap.get('fired_at') or snap.get('started_at'))}"
        )
    elif snap.get("state") == "pending":
        since = f"*Pending since* {when(snap.get('started_at'))}"
    else:
        since = f"*Firing since* {when(snap.get('fired_at') or snap.get('started_at'))}"
    out.append(_section(f"{what}\n{since}"))

    orders = snap.get("orders") or {}
    pairs: list[tuple[str, str]] = []
    if orders:
        pairs.append(("Affected orders", f"{int(orders.get('count', 0)):,}"))
        pairs.append(("Value", text.totals(orders.get("totals", [])) or "—"))
    labels = snap.get("labels") or {}
    for key in ("system", "stage", "channel"):
        if labels.get(key):
            pairs.append((key.capitalize(), esc(labels[key])))
    pairs.append(("Severity", esc(snap.get("severity", ""))))
    out.append(_fields(pairs))

    held = snap.get("held") or []
    if held:
        lines = ["*Held back while this fires* (summarised here instead of one message each)"]
        for h in held[:10]:
            state = h.get("state", "")
            note = {
                "resolved": " — _resolved_",
                "released": " — _still true: now reported on its own_",
            }.get(state, "")
            rule = esc(cut(str(h.get("rule", "")), 100))
            lines.append(f"• *{rule}*: {esc(cut(str(h.get('summary', '')), 300))}{note}")
        out.append(_section("\n".join(lines)))
    if orders.get("top") and not resolved:
        title = "Top orders by value" if not held else "Top held-back orders by value"
        out.append(_section(_orders_lines(message, orders, title)))
    last_error = (snap.get("detail") or {}).get("last_error")
    if last_error and not resolved:
        out.append(
            _section(
                f"*Last error* ({esc(last_error.get('operation', ''))}): "
                f"`{esc(cut(last_error.get('message', '') or 'no message', 500))}`"
            )
        )

    context = [f"Alert #{snap.get('alert_id', '?')}"]
    if snap.get("acknowledged_by"):
        context.append(
            f"acknowledged by {esc(snap['acknowledged_by'])} {when(snap.get('acknowledged_at'))}"
        )
    shown = " ".join(f"`{esc(k)}={esc(cut(str(v), 60))}`" for k, v in sorted(labels.items()))
    context.append(cut(shown, 1000))
    out.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": cut(" · ".join(context), MAX_SECTION)}],
        }
    )
    buttons = []
    if not resolved and not snap.get("acknowledged_by") and message.ack_url:
        buttons.append(_button("Acknowledge", message.ack_url, "acknowledge", "primary"))
    if message.alert_url:
        buttons.append(_button("Open in Observatory", message.alert_url, "open_alert"))
    if message.dashboard_url:
        buttons.append(_button("Dashboard", message.dashboard_url, "open_dashboard"))
    if buttons:
        out.append({"type": "actions", "elements": buttons})
    return _within_budget(out[:MAX_BLOCKS])


def _within_budget(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the optional sections (last error, held back, top orders) until the blocks
    fit Slack's practical size limit; the header, summary and buttons always stay."""
    while len(json.dumps(out)) > BLOCKS_BUDGET and len(out) > 4:
        optional = [i for i, b in enumerate(out) if b["type"] == "section" and i > 2]
        if not optional:
            break
        del out[optional[-1]]
    return out


def payload(message: Message) -> dict[str, Any]:
    return {"text": fallback(message), "blocks": blocks(message)}


# --- transports ---------------------------------------------------------------------------------


def _call(
    url: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> http.Response:
    return post(url, json=body, headers=headers)


def _raise_for_status(response: http.Response, reason: str) -> None:
    raise http_error(response, "Slack", reason, broken=reason in BROKEN)


class SlackWebhook(Transport):
    """An incoming webhook: one new message per notification (it cannot edit)."""

    def notify(self, message: Message) -> Sent:
        response = _call(self.channel.webhook_url, payload(message))
        if response.status == 200:
            return Sent(status=200)
        _raise_for_status(response, response.text.strip()[:100])
        raise AssertionError("unreachable")  # pragma: no cover


def api_url(method: str) -> str:
    base = str(settings.ALERTS_SLACK_API_URL)
    return base.rstrip("/") + "/" + method


class SlackBot(Transport):
    """A bot token and a channel: ``chat.postMessage``, then ``chat.update`` of the same
    message when the alert is acknowledged, updated or resolved."""

    def updates_in_place(self) -> bool:
        return True

    def _api(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = _call(
            api_url(method), body, headers={"Authorization": f"Bearer {self.channel.bot_token}"}
        )
        answer: dict[str, Any] = {}
        if response.status == 200:
            try:
                answer = response.json()
            except ValueError:
                raise TransportError("Slack answered 200 without JSON", status=200) from None
            if answer.get("ok"):
                return answer
            error = str(answer.get("error", "unknown_error"))
            if error in UNEDITABLE:
                raise _Uneditable(error)
            if error in TRANSIENT:
                raise TransportError(f"Slack {method}: {error}", retry_after=response.retry_after())
            if error in BROKEN:
                raise TransportError(f"Slack {method}: {error}", permanent=True, status=200)
            raise TransportError(
                f"Slack {method} refused the message: {error}", permanent=True,
                channel_broken=False, status=200,
            )  # fmt: skip
        _raise_for_status(response, "")
        raise AssertionError("unreachable")  # pragma: no cover

    def notify(self, message: Message) -> Sent:
        body = payload(message)
        previous = message.previous or {}
        if previous.get("ts") and message.event in ("acknowledged", "update", "resolved"):
            try:
                answer = self._api(
                    "chat.update",
                    {"channel": previous.get("channel") or self.channel.slack_channel,
                     "ts": previous["ts"], **body},
                )  # fmt: skip
                return Sent(
                    ref={"channel": answer.get("channel", previous.get("channel")),
                         "ts": answer.get("ts", previous["ts"]), "updated": True},
                    status=200,
                )  # fmt: skip
            except _Uneditable:
                if message.event == "acknowledged":
                    return Sent(detail="the message can no longer be edited")
        elif message.event == "acknowledged":
            return Sent(detail="no message to update")
        answer = self._api(
            "chat.postMessage",
            {"channel": self.channel.slack_channel, "unfurl_links": False, **body},
        )
        return Sent(ref={"channel": answer.get("channel"), "ts": answer.get("ts")}, status=200)


class _Uneditable(Exception):
    pass
