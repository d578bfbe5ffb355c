"""PagerDuty Events API v2 (docs/alerts.md, "Channels"): ``POST`` to
``ALERTS_PAGERDUTY_URL`` (``https://events.pagerduty.com/v2/enqueue``) with the channel's
routing key.

The incident follows the alert: its firing is a ``trigger`` (a reminder or an update
triggers again, which PagerDuty folds into the same open incident), its acknowledgement an
``acknowledge``, its resolution a ``resolve``, all with one ``dedup_key`` per alert group
(``Message.group_key``). A trigger's ``payload`` carries the one-line summary, the
``source`` (the system, else this installation's host), the ``severity`` (critical,
warning or info, as the rule says), ``timestamp``, ``component`` (the system), ``group``
(the stage or KPI), ``class`` (the rule's kind) and the labels and figures as
``custom_details``, with links back to the alert. A test message triggers an ``info``
event and resolves it at once, so it leaves no open incident.

Answers: 202 is accepted; 429 and 5xx retry (honouring a ``Retry-After`` if one comes);
a 400 naming the routing key, and 401, 403 and 404, mark the channel failing; another
400 fails this message only.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from django.conf import settings

from observatory.alerts.transports import (
    Message,
    Sent,
    Transport,
    http_error,
    post,
    reason_of,
)

SEVERITY: Final = {"critical": "critical", "warning": "warning", "info": "info"}
MAX_SUMMARY: Final = 1024
ACTIONS: Final = {
    "firing": "trigger",
    "repeat": "trigger",
    "update": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}


def action(message: Message) -> str:
    """The ``event_action`` of a message: trigger, acknowledge or resolve."""
    if message.resolved:
        return "resolve"
    return ACTIONS.get(message.event, "trigger")


def event(message: Message, routing_key: str, event_action: str | None = None) -> dict[str, Any]:
    """The Events API v2 body of a message (``event_action`` forced, for the test)."""
    snap = message.snapshot
    event_action = event_action or action(message)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": event_action,
        "dedup_key": message.group_key(),
    }
    if event_action != "trigger":
        return body
    labels = {str(k): str(v) for k, v in (snap.get("labels") or {}).items()}
    host = urlsplit(message.base_url).hostname or "observatory"
    summary = message.one_line()
    payload: dict[str, Any] = {
        "summary": summary if len(summary) <= MAX_SUMMARY else summary[: MAX_SUMMARY - 1] + "…",
        "source": labels.get("system") or host,
        "severity": "info"
        if message.event == "test"
        else SEVERITY.get(str(snap.get("severity")), "warning"),
        "class": str(snap.get("kind", "test" if message.event == "test" else "")),
        "custom_details": _details(snap, labels),
    }
    at = snap.get("fired_at") or snap.get("started_at") or snap.get("at")
    if at:
        payload["timestamp"] = at
    if labels.get("system"):
        payload["component"] = labels["system"]
    group = labels.get("stage") or labels.get("kpi")
    if group:
        payload["group"] = group
    body["payload"] = {k: v for k, v in payload.items() if v != ""}
    body["client"] = "Observatory"
    body["client_url"] = message.alert_url or message.base_url
    links = [{"href": message.alert_url, "text": "Open in Observatory"}]
    if message.ack_url and not snap.get("acknowledged_by"):
        links.append({"href": message.ack_url, "text": "Acknowledge in Observatory"})
    body["links"] = [link for link in links if link["href"]]
    return body


def _details(snap: Any, labels: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": labels}
    if snap.get("rule"):
        out["rule"] = snap["rule"]
        out["alert_id"] = snap.get("alert_id")
        out["summary"] = snap.get("summary", "")
    orders = snap.get("orders") or {}
    if orders:
        out["affected_orders"] = int(orders.get("count", 0))
        out["value"] = orders.get("totals", [])
        out["top_orders"] = [
            {k: row.get(k) for k in ("label", "amount", "currency", "late_since")}
            for row in orders.get("top", [])[:10]
        ]
    held = [h for h in snap.get("held") or [] if h.get("state") == "held"]
    if held:
        out["held_back"] = [f"{h.get('rule', '')}: {h.get('summary', '')}" for h in held[:10]]
    last_error = (snap.get("detail") or {}).get("last_error")
    if last_error:
        out["last_error"] = last_error
    return out


class PagerDuty(Transport):
    """One Events API v2 event per notification; acknowledgements included."""

    def updates_in_place(self) -> bool:
        return False

    def takes(self, event: str) -> bool:
        return True  # the incident follows the alert: acknowledged too

    def _send(self, body: dict[str, Any]) -> Sent:
        url = str(settings.ALERTS_PAGERDUTY_URL)
        response = post(url, json=body)
        if 200 <= response.status < 300:
            return Sent(ref={"dedup_key": body["dedup_key"]}, status=response.status)
        reason = reason_of(response)
        broken = response.status == 400 and "routing" in reason.lower()
        raise http_error(response, "PagerDuty", reason, broken=broken)

    def notify(self, message: Message) -> Sent:
        key = self.channel.routing_key
        if message.event == "test":
            self._send(event(message, key, "trigger"))
            return self._send(event(message, key, "resolve"))
        return self._send(event(message, key))
