"""Driving the pipeline through its real interfaces: CloudEvents in, ``stitch`` command,
then the API. Shared by the triage and the transactions API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import orjson
from django.core.management import call_command
from django.test import Client

from observatory.transactions.models import SlaPolicy
from observatory.triage import sla

#: business time the stories start at
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

_seq = iter(range(1, 10**9))


def ev(
    system: str,
    keys: dict[str, Any],
    at: datetime,
    *,
    stage: str = "",
    operation: str = "",
    outcome: str = "ok",
    event_id: str = "",
    **data: Any,
) -> dict[str, Any]:
    """One structured CloudEvent for a hop."""
    body: dict[str, Any] = {"system": system, "keys": keys, "outcome": outcome, **data}
    if stage:
        body["stage"] = stage
    if operation:
        body["operation"] = operation
    return {
        "specversion": "1.0",
        "id": event_id or f"ev-{next(_seq)}",
        "source": f"urn:test:{system}",
        "type": f"com.acme.{system}.{operation or stage or 'hop'}",
        "time": at.isoformat().replace("+00:00", "Z"),
        "data": body,
    }


def send(client: Client, *events: dict[str, Any]) -> dict[str, Any]:
    """POST a CloudEvents batch; every event must be accepted or a duplicate."""
    response = client.post(
        "/api/v1/events",
        orjson.dumps(list(events)),
        content_type="application/cloudevents-batch+json",
    )
    assert response.status_code == 200, response.content
    answer = orjson.loads(response.content)
    assert answer["rejected"] == [], answer["rejected"]
    return answer


def stitch(at: datetime | None = None) -> str:
    """``python manage.py stitch [--now AT]``; its last line."""
    out = StringIO()
    if at is None:
        call_command("stitch", stdout=out)
    else:
        call_command("stitch", now=at.isoformat(), stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def order_events(number: str, at: datetime, *, channel: str = "web") -> list[dict[str, Any]]:
    """A web order captured by Shopify and posted to the ERP 20 s later."""
    sid = f"9{number.lstrip('#')}"
    return [
        ev(
            "shopify",
            {"order_number": number, "shopify_order_id": sid},
            at,
            stage="captured",
            operation="orders/create",
            channel=channel,
            platform_status="pending",
        ),
        ev(
            "erp",
            {"order_number": number, "erp_sales_order": f"SO-{number.lstrip('#')}"},
            at + timedelta(seconds=20),
            stage="posted",
            operation="post_sales_order",
            platform_status="Pending Fulfillment",
            duration_ms=420,
        ),
    ]


def contract_policies() -> None:
    """The default SLAs of docs/stages.md (replacing whatever a seed migration put there), plus a
    days-long carrier one."""
    SlaPolicy.objects.all().delete()
    rows = [
        ("web order captured -> posted", "order", "", "captured", "posted", 60, 0),
        ("POS sale captured -> posted", "order", "pos", "captured", "posted", 3600, 0),
        ("fulfillment seen by Shopify", "order", "", "shipped", "fulfillment_synced", 900, 0),
        ("carrier delivers", "order", "", "shipped", "delivered", 3 * 86400, 0),
        (
            "inventory published",
            "inventory_update",
            "",
            "inventory_adjusted",
            "inventory_published",
            300,
            0,
        ),
        ("refund settled", "return", "", "refunded", "refund_settled", 86400, 0),
    ]
    for name, kind, channel, src, dst, deadline, allowance in rows:
        SlaPolicy.objects.create(
            name=name,
            transaction_kind=kind,
            channel=channel,
            from_stage=src,
            to_stage=dst,
            deadline_s=deadline,
            batch_allowance_s=allowance,
            skippable=sla.default_skippable(dst),
        )


_beat = iter(range(1, 10**9))


def reporting(at: datetime, *systems: str) -> list[dict[str, Any]]:
    """One ordinary hop of each of ``systems`` at ``at`` (an order of its own): those
    systems have then reported up to ``at``, so deadlines before it are knowable."""
    out = []
    for system in systems:
        n = next(_beat)
        out.append(ev(system, {"correlation_id": f"beat-{system}-{n}"}, at, operation="beat"))
    return out
