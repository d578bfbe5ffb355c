"""The business impact of an alert: the orders behind it and their summed amount per
currency (never summed across currencies), read set-based while the rule is evaluated and
stored in the alert's ``detail["orders"]`` so that deliveries never query again
(docs/alerts.md, "Business impact").

``orders`` is ``{"count", "totals": [{"currency", "value"}], "top": [...]}``, the shape
the stuck rule has always stored and every transport reads."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, QuerySet, Sum

from observatory.alerts import text
from observatory.transactions.models import Transaction
from observatory.triage.queries import transaction_labels

TOP_ORDERS = 10


def orders_of(transactions: QuerySet[Transaction]) -> dict[str, Any]:
    """Count, totals per currency and the top orders by amount of ``transactions``: three
    queries, however many orders there are. Transactions merged into another count once
    (under the survivor's own row, which carries the amount)."""
    qs = transactions.filter(merged_into__isnull=True)
    count = int(qs.aggregate(n=Count("id"))["n"] or 0)
    if not count:
        return {"count": 0, "totals": [], "top": []}
    totals = [
        {"currency": row["currency"], "value": f"{row['total']:.2f}"}
        for row in qs.filter(amount__isnull=False)
        .exclude(currency="")
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    ]
    rows = list(
        qs.order_by(F("amount").desc(nulls_last=True), "id").values(
            "id", "amount", "currency", "channel"
        )[:TOP_ORDERS]
    )
    labels = transaction_labels(r["id"] for r in rows)
    top = [
        {
            "id": r["id"],
            "label": _short(labels.get(r["id"], "")) or f"transaction {r['id']}",
            "amount": None if r["amount"] is None else f"{r['amount']:.2f}",
            "currency": r["currency"],
            "channel": r["channel"],
        }
        for r in rows
    ]
    return {"count": count, "totals": totals, "top": top}


def phrase(orders: dict[str, Any], what: str) -> str:
    """``37 orders, USD 12,340.00 + EUR 300.00 {what}``; without amounts the count alone
    (``37 orders {what}``): an alert never claims a value it does not know."""
    count = int(orders.get("count", 0))
    if not count:
        return ""
    value = text.totals(orders.get("totals", []))
    return f"{text.orders_phrase(count)}{', ' + value if value else ''} {what}"


def _short(label: str) -> str:
    return label.split("=", 1)[1] if label.startswith("order_number=") else label
