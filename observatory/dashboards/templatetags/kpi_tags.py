"""Display helpers of the KPI pages: shares, durations in plain words, changes."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse

from observatory.dashboards.kpi_figures import human_s
from observatory.triage import sla

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.0423 -> ``4.2 %``; None -> ``—``."""
    if value is None:
        return "—"
    v = float(value) * 100
    if v and abs(v) < 0.1:
        return "< 0.1 %"
    return f"{v:.{int(digits)}f} %"


@register.filter
def plain_s(value: float | None) -> str:
    """Seconds in plain words: ``42 s``, ``3.5 min``, ``2.1 h``."""
    return human_s(value)


@register.filter
def split(value: str, sep: str = " ") -> list[str]:
    return str(value).split(sep)


@register.filter
def count(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


@register.filter
def get(mapping: Any, key: str) -> Any:
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


#: How people write the systems whose names are acronyms.
SYSTEM_NAMES = {"erp": "ERP", "wms": "WMS", "pos": "POS", "oms": "OMS", "3pl": "3PL", "crm": "CRM"}


@register.filter
def system_name(value: str) -> str:
    """``erp`` -> ``ERP``, ``shopify`` -> ``Shopify``."""
    text = str(value or "")
    return SYSTEM_NAMES.get(text.lower()) or text[:1].upper() + text[1:]


@register.filter
def system_url(value: str) -> str:
    """The page of system ``value``, whatever its name holds; the systems index for a name
    no URL can carry (hops stored before system names were checked at ingest, say)."""
    try:
        return reverse("system", args=[str(value or "")])
    except NoReverseMatch:
        return reverse("systems")


@register.filter
def short_age(seconds: float | None) -> str:
    """An age in one unit, for tight spaces: ``12 s``, ``7 min``, ``6 h``, ``3 d``."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min"
    if s < 86400:
        return f"{s // 3600:.0f} h"
    return f"{s // 86400:.0f} d"


@register.filter
def deadline(seconds: int | None) -> str:
    """A deadline in words: ``1 min``, ``1 h``; None -> ``—``."""
    return "—" if seconds is None else sla.human(seconds)


@register.filter
def bar_pct(share: float | None) -> str:
    """A share (0..1, or past 1) as a bar's width in percent, held to 0..100."""
    return "0" if share is None else f"{max(0.0, min(1.0, float(share))) * 100:.1f}"
