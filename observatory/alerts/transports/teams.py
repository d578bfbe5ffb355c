"""Microsoft Teams: a Workflows webhook ("Post to a channel when a webhook request is
received") sent a message with one Adaptive Card attachment (docs/alerts.md, "Channels").

The body is ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}``: a headline
coloured by severity, the summary, the facts (affected orders, value, system, stage,
since), the orders of most value as links, and buttons to acknowledge and to open the
alert. A Workflows webhook cannot edit what it posted, so every event is a new card.

Answers: any 2xx is delivered (Workflows answer 202); 429 and 5xx retry, honouring
``Retry-After``; 401, 403, 404 and 410 mean the flow or its URL is gone (the channel is
marked failing); another refusal fails this message only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from observatory.alerts import text
from observatory.alerts.transports import (
    Message,
    Sent,
    Transport,
    http_error,
    post,
    reason_of,
)

CARD_VERSION: Final = "1.4"
CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
#: Teams refuses messages over about 28 KB: optional blocks are dropped past this
CARD_BUDGET: Final = 24000
COLOUR: Final = {"critical": "Attention", "warning": "Warning", "info": "Accent"}


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _md(value: Any) -> str:
    """Text for an Adaptive Card TextBlock, whose markdown subset reads ``*``, ``_``,
    ``[`` and ``]``: those are escaped."""
    out = str(value)
    for ch in ("\\", "*", "_", "[", "]"):
        out = out.replace(ch, "\\" + ch)
    return out


def _when(iso: str | None) -> str:
    return text.clock_time(datetime.fromisoformat(iso)) if iso else "—"


def _block(value: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": value, "wrap": True, **style}


def headline(message: Message) -> str:
    snap = message.snapshot
    if message.event == "test":
        return "Test message from Observatory"
    rule = str(snap.get("rule", "alert"))
    if message.resolved:
        return _cut(f"RESOLVED · {rule}", 200)
    tag = {"repeat": " · still firing", "update": " · update"}.get(message.event, "")
    return _cut(f"{str(snap.get('severity', 'warning')).upper()}{tag} · {rule}", 200)


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card of a message."""
    snap = message.snapshot
    colour = "Good" if message.resolved else COLOUR.get(str(snap.get("severity")), "Default")
    body: list[dict[str, Any]] = [
        _block(headline(message), size="Large", weight="Bolder", color=colour)
    ]
    actions: list[dict[str, Any]] = []
    if message.event == "test":
        body.append(
            _block(
                "This channel is connected to Observatory: alerts about stuck orders, silent "
                f"systems and error rates will arrive here. Sent from {_md(message.base_url)}."
            )
        )
    else:
        summary = _md(_cut(str(snap.get("summary", "")), 1500))
        if message.resolved:
            summary = f"**Back to normal.** Last seen while firing: {summary}"
        body.append(_block(summary))
        body.append({"type": "FactSet", "facts": _facts(message)})
        held = [h for h in snap.get("held") or [] if h.get("state") == "held"]
        if held:
            lines = [
                f"- **{_md(_cut(str(h.get('rule', '')), 100))}**: "
                f"{_md(_cut(str(h.get('summary', '')), 300))}"
                for h in held[:10]
            ]
            body.append(_block("**Held back while this fires**"))
            body.append(_block("\n".join(lines), spacing="None"))
        orders = snap.get("orders") or {}
        if orders.get("top") and not message.resolved:
            body.append(_block("**Top orders by value**"))
            body.append(_block(_orders(message, orders), spacing="None"))
        last_error = (snap.get("detail") or {}).get("last_error")
        if last_error and not message.resolved:
            body.append(
                _block(
                    f"**Last error** ({_md(last_error.get('operation', ''))}): "
                    f"{_md(_cut(last_error.get('message', '') or 'no message', 500))}",
                    fontType="Monospace",
                )
            )
        labels = snap.get("labels") or {}
        shown = " · ".join(f"{k}={_cut(str(v), 60)}" for k, v in sorted(labels.items()))
        body.append(
            _block(
                _md(_cut(f"Alert #{snap.get('alert_id', '?')} · {shown}", 1000)),
                isSubtle=True,
                size="Small",
            )
        )
        if not message.resolved and not snap.get("acknowledged_by") and message.ack_url:
            actions.append(
                {"type": "Action.OpenUrl", "title": "Acknowledge", "url": message.ack_url,
                 "style": "positive"}
            )  # fmt: skip
    if message.alert_url:
        actions.append(
            {"type": "Action.OpenUrl", "title": "Open in Observatory", "url": message.alert_url}
        )
    if message.dashboard_url:
        actions.append(
            {"type": "Action.OpenUrl", "title": "Dashboard", "url": message.dashboard_url}
        )
    out: dict[str, Any] = {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if actions:
        out["actions"] = actions
    return _within_budget(out)


def _facts(message: Message) -> list[dict[str, str]]:
    snap = message.snapshot
    facts: list[tuple[str, str]] = []
    orders = snap.get("orders") or {}
    if orders:
        facts.append(("Affected orders", f"{int(orders.get('count', 0)):,}"))
        facts.append(("Value", text.totals(orders.get("totals", [])) or "—"))
    labels = snap.get("labels") or {}
    for key in ("system", "stage", "channel"):
        if labels.get(key):
            facts.append((key.capitalize(), str(labels[key])))
    facts.append(("Severity", str(snap.get("severity", ""))))
    if message.resolved:
        facts.append(("Resolved", _when(snap.get("resolved_at"))))
    facts.append(("Firing since", _when(snap.get("fired_at") or snap.get("started_at"))))
    if snap.get("acknowledged_by"):
        facts.append(
            ("Acknowledged", f"by {snap['acknowledged_by']} {_when(snap.get('acknowledged_at'))}")
        )
    return [{"title": k, "value": _md(_cut(v, 500))} for k, v in facts]


def _orders(message: Message, orders: dict[str, Any]) -> str:
    lines = []
    for row in orders.get("top", [])[:10]:
        amount = text.money(row["amount"], row.get("currency", "")) if row.get("amount") else "—"
        label = _md(_cut(str(row.get("label", row["id"])), 80))
        lines.append(f"- [{label}]({message.order_url(row['id'])}) · {amount}")
    count = int(orders.get("count", 0))
    if count > len(lines):
        lines.append(f"- …and {count - len(lines):,} more")
    return "\n".join(lines)


def _within_budget(out: dict[str, Any]) -> dict[str, Any]:
    """Drop the optional blocks (last error, orders, held back) from the end until the
    card fits; the headline, the summary and the facts always stay."""
    import orjson

    while len(orjson.dumps(out)) > CARD_BUDGET and len(out["body"]) > 3:
        del out["body"][-2]  # the last block is the labels line: keep it
    return out


def payload(message: Message) -> dict[str, Any]:
    """The Workflows webhook body: a message with the card as its one attachment."""
    return {
        "type": "message",
        "summary": _cut(message.one_line(), 250),
        "attachments": [
            {"contentType": CONTENT_TYPE, "contentUrl": None, "content": card(message)}
        ],
    }


class Teams(Transport):
    """A Workflows webhook: one new card per notification (it cannot edit)."""

    def notify(self, message: Message) -> Sent:
        response = post(self.channel.webhook_url, json=payload(message))
        if 200 <= response.status < 300:
            return Sent(status=response.status)
        raise http_error(response, "Teams", reason_of(response))
