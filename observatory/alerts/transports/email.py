"""Email: one message with a text and an HTML part, through Django's configured backend
(``EMAIL_URL`` or ``EMAIL_*``), with a timeout.

SMTP answers map onto the transport contract: a refused recipient or sender, or failed
authentication, marks the channel failing; a 5xx on the message fails this message; a 4xx,
a dropped connection or a timeout retries later.
"""

from __future__ import annotations

import smtplib
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from observatory.alerts import text
from observatory.alerts.transports import Message, Sent, Transport, TransportError


def subject(message: Message) -> str:
    snap = message.snapshot
    if message.event == "test":
        return "[Observatory] Test message: this address receives alerts"
    rule, summary = snap.get("rule", "alert"), snap.get("summary", "")
    if message.event == "resolved" or snap.get("state") == "resolved":
        line = f"[RESOLVED] {rule}: back to normal (last seen: {summary})"
    else:
        tag = {"repeat": "STILL FIRING", "update": "UPDATE"}.get(message.event, "FIRING")
        line = f"[{tag} {snap.get('severity', '')}] {rule}: {summary}"
    line = " ".join(line.split())
    return line if len(line) <= 200 else line[:199] + "…"


def context(message: Message) -> dict[str, Any]:
    snap = message.snapshot
    orders = snap.get("orders") or {}
    top = [
        {
            **row,
            "url": message.order_url(row["id"]),
            "amount_text": text.money(row["amount"], row.get("currency", ""))
            if row.get("amount")
            else "—",
        }
        for row in orders.get("top", [])[:10]
    ]
    count = int(orders.get("count", 0)) if orders else 0
    times = {
        name: text.clock_time(datetime.fromisoformat(snap[f"{name}_at"]))
        for name in ("started", "fired", "resolved", "acknowledged")
        if snap.get(f"{name}_at")
    }
    return {
        "t": times,
        "m": message,
        "s": snap,
        "event": message.event,
        "resolved": snap.get("state") == "resolved",
        "orders": orders,
        "orders_count": count,
        "orders_value": text.totals(orders.get("totals", [])) if orders else "",
        "top": top,
        "more": max(0, count - len(top)),
        "held": snap.get("held") or [],
        "labels": sorted((snap.get("labels") or {}).items()),
        "last_error": (snap.get("detail") or {}).get("last_error"),
    }


class Email(Transport):
    def notify(self, message: Message) -> Sent:
        ctx = context(message)
        body = render_to_string("alerts/email/message.txt", ctx)
        html = render_to_string("alerts/email/message.html", ctx)
        timeout = settings.EMAIL_TIMEOUT
        try:
            connection = get_connection(fail_silently=False, timeout=timeout)
            mail = EmailMultiAlternatives(
                subject=subject(message),
                body=body,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=list(self.channel.to),
                connection=connection,
                headers={"Auto-Submitted": "auto-generated", "X-Observatory-Event": message.event},
            )
            mail.attach_alternative(html, "text/html")
            sent = mail.send(fail_silently=False)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise TransportError(
                f"the mail server refused the addresses: {exc}", permanent=True
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(
                f"mail server authentication failed: {exc}", permanent=True
            ) from None
        except smtplib.SMTPResponseException as exc:
            code = int(getattr(exc, "smtp_code", 0) or 0)
            if 500 <= code < 600:
                raise TransportError(
                    f"the mail server refused the message: {code} {exc.smtp_error!r}",
                    permanent=True,
                    channel_broken=False,
                ) from None
            raise TransportError(f"mail server: {code} {exc.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"mail server unreachable: {type(exc).__name__}: {exc}") from None
        if not sent:
            raise TransportError("the mail backend sent nothing")
        return Sent(detail=f"sent to {len(self.channel.to)} address(es)")
