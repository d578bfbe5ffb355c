"""A generic webhook speaking Alertmanager's webhook JSON, version 4 (docs/alerts.md,
"Channels"), so receivers written for Prometheus Alertmanager work unchanged.

One notification is one group holding one alert::

    {"version": "4", "groupKey": "observatory/alert/42", "truncatedAlerts": 0,
     "status": "firing", "receiver": "<channel name>",
     "groupLabels": {"alertname": "<rule>"}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "<OBSERVATORY_BASE_URL>",
     "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt",
                 "generatorURL", "fingerprint"}]}

Labels are the alert's (``rule``, ``kind``, ``severity``, ``system``...) plus
``alertname`` (the rule's name); annotations hold ``summary``, ``description`` and links.
Firing, reminders and updates say ``firing`` (``endsAt`` is Alertmanager's zero time);
the resolution says ``resolved`` with ``endsAt``. Acknowledgements are not sent: the
format has no word for them.

When the channel has a ``secret``, the header ``X-Observatory-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>`` signs it; a
receiver recomputes it over the raw body and compares in constant time.

Answers: any 2xx is delivered; 429, 408 and 5xx retry (honouring ``Retry-After``); 401,
403, 404 and 410 mark the channel failing; another refusal fails this message only.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from observatory.alerts.transports import (
    Message,
    Sent,
    Transport,
    http_error,
    post,
    reason_of,
)

VERSION: Final = "4"
SIGNATURE_HEADER: Final = "X-Observatory-Signature"
#: Alertmanager's "not ended yet"
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def rfc3339(iso: str | None) -> str:
    """An ISO timestamp as Alertmanager writes them (UTC, ``Z``); the zero time if none."""
    if not iso:
        return ZERO_TIME
    at = datetime.fromisoformat(iso).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Observatory-Signature`` value of ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def document(message: Message, receiver: str) -> dict[str, Any]:
    """The Alertmanager v4 document of a message."""
    snap = message.snapshot
    status = "resolved" if message.resolved else "firing"
    if message.event == "test":
        rule = "Observatory test message"
        labels = {"alertname": rule, "severity": "info", "test": "true"}
        annotations = {"summary": message.one_line()}
        started = snap.get("at") or datetime.now(UTC).isoformat()
        fingerprint = hashlib.sha256(message.group_key().encode()).hexdigest()[:16]
    else:
        rule = str(snap.get("rule", "alert"))
        labels = {
            "alertname": rule,
            **{str(k): str(v) for k, v in (snap.get("labels") or {}).items()},
        }
        annotations = _annotations(message)
        started = snap.get("fired_at") or snap.get("started_at")
        fingerprint = str(snap.get("fingerprint", ""))
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(snap.get("resolved_at")) if status == "resolved" else ZERO_TIME,
        "generatorURL": message.alert_url or message.base_url,
        "fingerprint": fingerprint,
    }
    return {
        "version": VERSION,
        "groupKey": message.group_key(),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": rule},
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": message.base_url,
        "alerts": [alert],
    }


def _annotations(message: Message) -> dict[str, str]:
    snap = message.snapshot
    out = {"summary": message.one_line(), "description": str(snap.get("summary", ""))}
    orders = snap.get("orders") or {}
    if orders:
        out["affected_orders"] = str(int(orders.get("count", 0)))
        totals = " + ".join(
            f"{t.get('currency', '')} {t['value']}" for t in orders.get("totals", [])
        )
        if totals:
            out["value"] = totals.strip()
    held = [h for h in snap.get("held") or [] if h.get("state") == "held"]
    if held:
        out["held_back"] = "; ".join(f"{h.get('rule', '')}: {h.get('summary', '')}" for h in held)
    if snap.get("acknowledged_by"):
        out["acknowledged_by"] = str(snap["acknowledged_by"])
    if message.ack_url and not message.resolved and not snap.get("acknowledged_by"):
        out["acknowledge_url"] = message.ack_url
    if message.dashboard_url:
        out["dashboard_url"] = message.dashboard_url
    return out


class Webhook(Transport):
    """One Alertmanager v4 document per notification, signed when the channel has a
    secret."""

    def notify(self, message: Message) -> Sent:
        body = orjson.dumps(document(message, self.channel.name))
        headers = {"Content-Type": "application/json"}
        if self.channel.secret:
            headers[SIGNATURE_HEADER] = signature(self.channel.secret, body)
        response = post(self.channel.webhook_url, data=body, headers=headers)
        if 200 <= response.status < 300:
            return Sent(status=response.status)
        raise http_error(response, "the webhook", reason_of(response))
