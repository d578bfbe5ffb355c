"""Email delivery: text and HTML parts, through Django's mail outbox and through a real
SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message as MailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.test import Client

from observatory.alerts.models import Alert, Channel, DeliveryAttempt, Notification
from tests.alerts.helpers import T0, later, posting, run, send, stuck_orders, stuck_rule
from tests.serving import free_port

pytestmark = pytest.mark.django_db
BASE = "https://observatory.example.com"


@pytest.fixture(autouse=True)
def _base(settings: Any) -> None:
    settings.OBSERVATORY_BASE_URL = BASE


def email_channel(*to: str) -> Channel:
    return Channel.objects.create(name="ops-mail", kind="email", to=list(to or ["ops@acme.test"]))


def test_firing_and_resolved_emails_through_the_outbox(ingest_client: Client) -> None:
    rule = stuck_rule()
    email_channel("ops@acme.test", "erp-team@acme.test")
    stuck_orders(ingest_client, 3, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.sent == 1
    [msg] = mail.outbox
    alert = Alert.objects.get(rule=rule)
    assert msg.to == ["ops@acme.test", "erp-team@acme.test"]
    assert msg.subject.startswith(f"[FIRING critical] {rule.name}: 3 web orders stuck")
    assert msg.extra_headers["Auto-Submitted"] == "auto-generated"
    assert "3 web orders stuck before posted (USD 60.00)" in msg.body
    assert "Affected orders: 3  (USD 60.00)" in msg.body
    tx = alert.detail["orders"]["top"][0]["id"]
    assert f"#5002  USD 30.00  {BASE}/orders/{tx}/" in msg.body
    assert f"Acknowledge (stops reminders): {BASE}/alerts/{alert.id}/ack/" in msg.body
    [(html, mimetype)] = msg.alternatives
    assert mimetype == "text/html"
    assert f'<a href="{BASE}/orders/{tx}/">#5002</a>' in html
    assert ">Acknowledge</a>" in html

    send(ingest_client, *[posting(5000 + i, later(T0, 130)) for i in range(3)])
    run(later(T0, 140))
    assert len(mail.outbox) == 2
    resolved = mail.outbox[1]
    assert resolved.subject.startswith(f"[RESOLVED] {rule.name}")
    assert "Acknowledge" not in resolved.body and "RESOLVED" in resolved.body


def test_html_is_escaped(ingest_client: Client) -> None:
    stuck_rule(name="<script>alert(1)</script>")
    email_channel()
    stuck_orders(ingest_client, 1, T0)
    run(later(T0, 120))
    [(html, _)] = mail.outbox[0].alternatives
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


class Collector:
    def __init__(self, refuse: bool = False) -> None:
        self.messages: list[MailMessage] = []
        self.envelopes: list[Any] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings: Any) -> Iterator[Collector]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "observatory@acme.test"
    try:
        yield collector
    finally:
        controller.stop()


def test_through_a_local_smtp_server(ingest_client: Client, smtp: Collector) -> None:
    rule = stuck_rule()
    email_channel("ops@acme.test")
    stuck_orders(ingest_client, 2, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.sent == 1
    [envelope] = smtp.envelopes
    assert envelope.mail_from == "observatory@acme.test"
    assert envelope.rcpt_tos == ["ops@acme.test"]
    [msg] = smtp.messages
    assert msg["Subject"].startswith(f"[FIRING critical] {rule.name}")
    assert msg.get_content_type() == "multipart/alternative"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert "2 web orders stuck before posted" in parts["text/plain"]
    assert "<h1" in parts["text/html"] and "/orders/" in parts["text/html"]
    assert DeliveryAttempt.objects.get().ok


def test_a_refused_recipient_marks_the_channel_failing(
    ingest_client: Client, smtp: Collector
) -> None:
    smtp.refuse = True
    stuck_rule()
    channel = email_channel("nobody@acme.test")
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1
    channel.refresh_from_db()
    assert channel.failing and "refused" in channel.failing_reason
    assert Notification.objects.get().status == "failed"


def test_an_unreachable_mail_server_retries(ingest_client: Client, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens
    settings.EMAIL_TIMEOUT = 2
    stuck_rule()
    channel = email_channel()
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.retrying == 1
    channel.refresh_from_db()
    assert not channel.failing
    assert "unreachable" in Notification.objects.get().last_error
