"""Template filters of the reconciliation pages: money and shares as people read them."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def money(value: Decimal | int | float | None) -> str:
    """``12340.5`` -> ``12,340.50``; nothing -> an em dash."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value):,.2f}"


@register.filter
def share(value: float | None) -> str:
    """``0.9876`` -> ``98.8 %``; None -> an em dash (nothing judged yet)."""
    if value is None:
        return "—"
    return f"{value * 100:.1f} %"


@register.filter
def seconds_text(value: int) -> str:
    """``3600`` -> ``1 h``, ``86400`` -> ``24 h``, ``90`` -> ``90 s``."""
    if value and value % 3600 == 0:
        return f"{value // 3600} h"
    if value and value % 60 == 0 and value >= 120:
        return f"{value // 60} min"
    return f"{value} s"


@register.filter
def words(value: str) -> str:
    """``missing_in_target`` -> ``missing in target``."""
    return str(value).replace("_", " ")
