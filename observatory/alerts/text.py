"""How alerts say things: durations, money, percentages, order summaries (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def duration(seconds: float) -> str:
    """``45 s``, ``5 min``, ``1 h 20 min``, ``2 d 3 h``."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min" if r == 0 or m >= 10 else f"{m} min {r} s"
    if s < 86400:
        h, r = divmod(s, 3600)
        m = r // 60
        return f"{h} h {m} min" if m else f"{h} h"
    d, r = divmod(s, 86400)
    h = r // 3600
    return f"{d} d {h} h" if h else f"{d} d"


def percent(share: float) -> str:
    """0.234 -> ``23.4 %``; 0.05 -> ``5 %``."""
    p = share * 100
    return f"{p:.0f} %" if abs(p - round(p)) < 1e-9 else f"{p:.1f} %"


def money(value: Any, currency: str = "") -> str:
    """``USD 12,345.00`` (``12,345.00`` without a currency)."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    shown = f"{amount:,.2f}"
    return f"{currency} {shown}" if currency else shown


def totals(rows: Iterable[Mapping[str, Any]]) -> str:
    """``USD 12,345.00 + EUR 300.00`` from ``[{"currency", "value"}]`` ("" when none)."""
    return " + ".join(money(r["value"], r.get("currency", "")) for r in rows if r.get("value"))


def clock_time(at: datetime) -> str:
    """``10:02:13 UTC`` (the date too when it is not today's, for the reader)."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def orders_phrase(count: int, channel: str = "") -> str:
    noun = "order" if count == 1 else "orders"
    return f"{count:,} {channel + ' ' if channel else ''}{noun}"


def merge_orders(blocks: Iterable[Mapping[str, Any]], top: int = 10) -> dict[str, Any]:
    """Several ``orders`` summaries (count, totals, top) as one."""
    count = 0
    sums: dict[str, Decimal] = {}
    rows: list[Mapping[str, Any]] = []
    seen: set[Any] = set()
    for block in blocks:
        if not block:
            continue
        count += int(block.get("count", 0))
        for t in block.get("totals", []):
            sums[t.get("currency", "")] = sums.get(t.get("currency", ""), Decimal(0)) + Decimal(
                str(t["value"])
            )
        for row in block.get("top", []):
            if row.get("id") not in seen:
                seen.add(row.get("id"))
                rows.append(row)
    rows.sort(key=lambda r: Decimal(str(r.get("amount") or 0)), reverse=True)
    return {
        "count": count,
        "totals": [{"currency": c, "value": f"{v:.2f}"} for c, v in sorted(sums.items())],
        "top": rows[:top],
    }
