"""Building alerting situations through the real interfaces: CloudEvents in through
/api/v1/events, the ``stitch`` command (stitch + SLA sweep), then an evaluation."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.test import Client

from observatory.alerts.actions import DeliverResult, EvaluateResult, do_deliver, do_evaluate
from observatory.alerts.models import Channel, Rule
from tests.triage.helpers import T0, ev, reporting, send, stitch

__all__ = ["T0", "ev", "send", "stitch"]


def capture(number: int, at: datetime, amount: Decimal | str = "100.00") -> dict[str, Any]:
    """Shopify accepted web order #<number> at ``at``."""
    return ev(
        "shopify",
        {"order_number": f"#{number}", "shopify_order_id": f"9{number}"},
        at,
        stage="captured",
        operation="orders/create",
        channel="web",
        platform_status="pending",
        amount=str(amount),
        currency="USD",
    )


def posting(number: int, at: datetime, *, ok: bool = True, attempt: int = 0) -> dict[str, Any]:
    """The middleware posting order #<number> to the ERP (a 503 when not ``ok``)."""
    data: dict[str, Any] = {"attributes": {"retail.retry.attempt": attempt}}
    if ok:
        return ev(
            "erp",
            {"order_number": f"#{number}", "erp_sales_order": f"SO-{number}"},
            at,
            stage="posted",
            operation="post_sales_order",
            platform_status="Pending Fulfillment",
            **data,
        )
    return ev(
        "erp",
        {"order_number": f"#{number}"},
        at,
        operation="post_sales_order",
        outcome="error",
        error="503 Service Unavailable",
        **data,
    )


def stuck_orders(client: Client, count: int, at: datetime, first: int = 5000) -> None:
    """``count`` web orders captured at ``at`` (amounts 10, 20, ...) that never post, while
    the ERP goes on reporting (past their deadline: so it is known they were not posted)."""
    send(
        client,
        *[capture(first + i, at, Decimal(10 * (i + 1))) for i in range(count)],
        *reporting(at + timedelta(seconds=70), "erp"),
    )


def run(at: datetime, *, deliver: bool = True) -> tuple[EvaluateResult, DeliverResult]:
    """Stitch and sweep as of ``at``, evaluate, then one delivery pass."""
    stitch(at)
    evaluated = do_evaluate(clock=lambda: at)
    delivered = do_deliver(clock=lambda: at) if deliver else DeliverResult()
    return evaluated, delivered


def only_rules(*rules: Rule) -> None:
    """Switch the shipped default rules off, so a test hears only its own."""
    Rule.objects.exclude(id__in=[r.id for r in rules]).update(active=False)


def stuck_rule(**fields: Any) -> Rule:
    base = {
        "name": "web orders stuck before posted (test)",
        "kind": "stuck",
        "severity": "critical",
        "stage": "posted",
        "channel": "web",
        "threshold": 1,
    }
    rule = Rule.objects.create(**{**base, **fields})
    only_rules(rule)
    return rule


def webhook_channel(url: str, name: str = "ops-slack") -> Channel:
    return Channel.objects.create(name=name, kind="slack", webhook_url=url)


def command(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def later(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)
