"""Small display helpers shared by every page: ages, durations, stage names, nav state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from observatory.dashboards import roles
from observatory.lib.clock import now
from observatory.lib.timerange import ALL, PRESETS, TimeRange
from observatory.triage import sla

register = template.Library()

#: Names that read better than their identifier.
WORDS = {
    "fulfillment_synced": "fulfillment seen by Shopify",
    "inventory_update": "inventory update",
}


def humanize_seconds(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3 h 5 min``, ``4 d 2 h``: short and exact enough to act on."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    minutes = round(seconds) // 60  # 119.9999 s (nanosecond clocks) is 2 min
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def age(value: datetime | timedelta | None) -> str:
    """How long ago ``value`` was (a datetime), or how long ``value`` is (a timedelta)."""
    if value is None:
        return "—"
    delta = value if isinstance(value, timedelta) else now() - value
    return humanize_seconds(delta.total_seconds())


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds, humanized."""
    return "—" if value is None else humanize_seconds(float(value))


@register.filter
def duration_ms(value: float | None) -> str:
    """A hop's duration: ``842 ms``, ``1.4 s``, ``3 min``."""
    if value is None:
        return "—"
    ms = float(value)
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return humanize_seconds(ms / 1000)


@register.filter
def label(value: str | None) -> str:
    """``payment_authorized`` -> ``Payment authorized``."""
    if not value:
        return "—"
    text = WORDS.get(str(value)) or str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


@register.simple_tag(takes_context=True)
def nav_active(context: dict[str, Any], prefix: str, exact: bool = False) -> str:
    """``active`` when the current page is under ``prefix`` (or is exactly it)."""
    request = context.get("request")
    path = getattr(request, "path", "")
    hit = path == prefix if exact else path.startswith(prefix)
    return "active" if hit else ""


@register.simple_tag
def figure(json_text: str, element_id: str, css_class: str = "chart") -> str:
    """A plotly figure built by ``figures.py``: a div, and its JSON beside it, rendered by
    ``static/js/observatory.js`` with the locally served plotly bundle. The div is a
    ``figure`` whose label says in words what the chart shows (``chart_summary``)."""
    return format_html(
        '<div class="{}" id="{}" data-figure="{}-json" role="figure" aria-label="{}"></div>'
        '<script type="application/json" id="{}-json">{}</script>',
        css_class,
        element_id,
        element_id,
        chart_summary(json.loads(json_text)),
        element_id,
        mark_safe(json_text),  # figures.figure_json escaped <, > and &
    )


def _text(value: Any) -> str:
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


def chart_summary(fig: dict[str, Any]) -> str:
    """A chart's text alternative: its title, then each trace's name, how many points it
    has, over which span, and its lowest and highest value."""
    layout = fig.get("layout") or {}
    title = layout.get("title")
    title = title.get("text") if isinstance(title, dict) else title
    parts = [f"Chart: {title}." if title else "Chart."]
    for trace in fig.get("data") or []:
        horizontal = trace.get("orientation") == "h"
        along = list(trace.get("y" if horizontal else "x") or [])
        values = [v for v in trace.get("x" if horizontal else "y") or [] if _is_number(v)]
        name = trace.get("name") or trace.get("type", "series")
        if not along and not values:
            continue
        text = f"{name}: {max(len(along), len(values))} point{'s' if len(values) != 1 else ''}"
        if along:
            text += f" from {_text(along[0])} to {_text(along[-1])}"
        if values:
            text += f", lowest {_text(min(values))}, highest {_text(max(values))}"
        parts.append(text + ".")
    if len(parts) == 1:
        parts.append("No data.")
    return " ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register.filter
def can_act(user: Any) -> bool:
    """May this user acknowledge and resolve exceptions?"""
    return roles.can_act(user)


@register.filter
def stage_system(stage: str) -> str:
    """The system expected to bring ``stage`` (``posted``: the ERP)."""
    return sla.stage_system(stage) or "the next system"


@register.filter
def when(value: datetime | None) -> str:
    """``<time datetime="2026-12-06T21:40:00Z" data-local>Dec 6, 21:40:00 UTC</time>``: the
    server writes UTC; ``static/js/time.js`` shows it in the browser's time zone unless
    the reader chose UTC."""
    if value is None:
        return mark_safe('<span class="dim">—</span>')
    value = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local>{} UTC</time>',
        value.isoformat(timespec="seconds").replace("+00:00", "Z"),
        f"{value:%b} {value.day}, {value:%H:%M:%S}",
    )


#: The range parameters the picker owns; every other one of the page's is kept.
_RANGE_PARAMS = ("range", "from", "to", "page", "cursor")


@register.inclusion_tag("_timerange.html", takes_context=True)
def timerange_picker(
    context: dict[str, Any], tr: TimeRange, error: str = "", allow_all: bool = False
) -> dict[str, Any]:
    """The range picker of ``templates/_timerange.html`` for ``tr`` (``lib/timerange.py``)."""
    request = context.get("request")
    kept: list[tuple[str, str]] = []
    if request is not None:
        kept = [
            (k, v)
            for k, vs in request.GET.lists()
            if k not in _RANGE_PARAMS and k != "tz"
            for v in vs
        ]
    base = urlencode(kept)

    def link(params: dict[str, str]) -> str:
        return "?" + "&".join(p for p in (base, urlencode(params)) if p)

    presets = [(key, words, link({"range": key})) for key, words, _ in PRESETS]
    if allow_all:
        presets.append((ALL, "all time", link({"range": ALL})))
    since = tr.since.astimezone(UTC) if tr.since is not None else None
    return {
        "tr": tr,
        "error": error,
        "presets": presets,
        "kept": kept,
        "from_value": f"{since:%Y-%m-%dT%H:%M}" if since is not None else "",
        "to_value": f"{tr.until.astimezone(UTC):%Y-%m-%dT%H:%M}",
        "since_iso": since.isoformat().replace("+00:00", "Z") if since is not None else "",
        "until_iso": tr.until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


@register.filter
def as_list(value: Any) -> list[Any]:
    """One value as a list of it (nothing for None), for a partial that loops."""
    return [] if value is None else [value]


@register.filter
def span_ms(value: float | None) -> str:
    """A span's duration or offset, keeping what a fast span has: ``0.48 ms``, ``2.3 ms``,
    then as ``duration_ms`` (``842 ms``, ``1.4 s``)."""
    if value is None:
        return "—"
    ms = float(value)
    if ms == 0:
        return "0 ms"
    if ms < 0.01:
        return "< 0.01 ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    return duration_ms(ms)
