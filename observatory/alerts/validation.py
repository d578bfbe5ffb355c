"""What makes a rule, a channel or a silence well-formed (shared by the API, the forms
and the admin). Pure: takes plain attributes, never queries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from tracing.conventions import ALL_STAGES

#: KPI ids and the fields a rule may watch (docs/kpis.md)
KPI_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "acceptance_to_posting": ("count", "p50_s", "p95_s", "p99_s", "within_sla"),
    "inventory_sync_lag": ("count", "p50_s", "p95_s", "max_s"),
    "fulfillment_propagation": ("count", "p50_s", "p95_s"),
    "exception_rate": ("orders", "with_exception", "rate"),
    "duplicate_rate": ("deliveries", "duplicates", "rate", "posted_twice", "worst_source_rate"),
    "reconciliation_backlog": ("total",),
    "exception_aging": ("open", "under_1h", "h1_to_4", "h4_to_24", "over_24h", "oldest_s"),
    "refund_reconciliation": ("refunds", "settled_within_sla", "rate"),
    "cancellation_success": ("requested", "succeeded", "rate"),
    "posting_completeness": ("orders", "posted", "rate"),
    "reroute_rate": ("shipments", "rerouted", "rate"),
    "inventory_drift": ("pairs", "off", "rate", "units_off"),
    "value_at_risk": ("orders",),
    "retries": ("retries", "replays"),
    "resolution_time": ("alerts_mean_s", "exceptions_mean_s"),
}
#: KPI fields that hold one figure per currency: a rule watches one of them as
#: ``<field>.<ISO 4217 code>`` (``value_at_risk`` ``by_currency.USD``), never a sum of several
PER_CURRENCY: Final[Mapping[str, tuple[str, ...]]] = {
    "value_at_risk": ("by_currency",),
    "posting_completeness": ("by_currency",),
}
#: per-currency fields holding several figures per currency: a rule names one of them,
#: ``<field>.<ISO 4217 code>.<figure>`` (``posting_completeness`` ``by_currency.USD.value``)
PER_CURRENCY_FIGURES: Final[Mapping[str, tuple[str, ...]]] = {
    "posting_completeness": ("value", "value_posted"),
}
_PER_CURRENCY_FIELD = re.compile(r"^([a-z_]+)\.([A-Z]{3})(?:\.([a-z_]+))?$")
STAGES: Final = (*ALL_STAGES, "fulfillment_synced")
#: the fields each rule kind uses beside the common ones (docs/alerts.md, "Rules")
KIND_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "kpi": ("kpi", "field", "op", "threshold", "window_s", "channel", "system"),
    "stuck": ("stage", "threshold", "channel", "system"),
    "error_rate": ("system", "threshold", "window_s", "operation", "min_count", "min_failed"),
    "silence": ("system", "window_s", "while_system"),
}
#: every kind-specific field (the union of KIND_FIELDS)
KIND_SPECIFIC: Final = tuple(dict.fromkeys(f for fs in KIND_FIELDS.values() for f in fs))
OPS: Final = (">", ">=", "<", "<=")
_SYSTEM = re.compile(r"^[a-z][a-z0-9_\-.]{0,63}$")
LABEL_PATTERN: Final = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
_LABEL = re.compile(LABEL_PATTERN)
#: One plain address, nothing around it: ASCII, as Django's validator reads it (a dot-atom,
#: then a domain of labels), so no spaces or control characters (a CR or LF would start a
#: new mail header), no list separators, no display name. The API's schema says the same.
EMAIL_PATTERN: Final = (
    r"^[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{1,62}[A-Za-z0-9]$"
)
_EMAIL = re.compile(EMAIL_PATTERN)


def kpi_field_ok(kpi: str, field: str) -> bool:
    """Whether a rule may watch ``field`` of ``kpi`` (a figure, or one currency's)."""
    if field in KPI_FIELDS.get(kpi, ()):
        return True
    per = _PER_CURRENCY_FIELD.match(field)
    if per is None or per.group(1) not in PER_CURRENCY.get(kpi, ()):
        return False
    figures = PER_CURRENCY_FIGURES.get(kpi)
    return per.group(3) in figures if figures else per.group(3) is None


def kpi_field_value(values: Mapping[str, Any], kpi: str, field: str) -> Any:
    """The figure a rule watches in ``kpi_values``'s answer (None: nothing measured; a
    currency with nothing at risk: 0)."""
    figures = values.get(kpi) or {}
    per = _PER_CURRENCY_FIELD.match(field)
    if per and per.group(1) in PER_CURRENCY.get(kpi, ()):
        amount = (figures.get(per.group(1)) or {}).get(per.group(2), 0)
        if per.group(3):
            return (amount or {}).get(per.group(3), 0)
        return amount
    return figures.get(field)


def rule_problems(rule: Any) -> dict[str, str]:
    """field -> what is wrong with it, for an object with a Rule's attributes."""
    out: dict[str, str] = {}
    kind = rule.kind
    if kind not in ("kpi", "stuck", "error_rate", "silence"):
        return {"kind": "must be kpi, stuck, error_rate or silence"}
    if rule.severity not in ("critical", "warning", "info"):
        out["severity"] = "must be critical, warning or info"
    labels = rule.labels or {}
    if not isinstance(labels, dict):
        out["labels"] = "must be an object of label -> value"
    else:
        for key, value in labels.items():
            if not _LABEL.match(str(key)) or not isinstance(value, str):
                out["labels"] = f"label {key!r}: names are words, values strings"
    for name in ("system", "while_system"):
        value = getattr(rule, name, "") or ""
        if value and not _SYSTEM.match(value):
            out[name] = "a system is a lower-case word"
    if kind == "kpi":
        if rule.kpi not in KPI_FIELDS:
            out["kpi"] = "one of " + ", ".join(KPI_FIELDS)
        elif not kpi_field_ok(rule.kpi, rule.field or ""):
            fields = list(KPI_FIELDS[rule.kpi])
            parts = PER_CURRENCY_FIGURES.get(rule.kpi) or ("",)
            fields += [
                f"{name}.<currency>" + (f".{part}" if part else "")
                for name in PER_CURRENCY.get(rule.kpi, ())
                for part in parts
            ]
            out["field"] = f"{rule.kpi} has " + ", ".join(fields)
        if rule.op not in OPS:
            out["op"] = "one of > >= < <="
        if rule.threshold is None:
            out["threshold"] = "required"
        if not rule.window_s:
            out["window_s"] = "required, in seconds"
    elif kind == "stuck":
        if rule.stage not in STAGES:
            out["stage"] = "a stage of docs/stages.md"
        if rule.threshold is not None and rule.threshold < 1:
            out["threshold"] = "at least 1 transaction"
    elif kind == "error_rate":
        if not rule.system:
            out["system"] = "required"
        if rule.threshold is None or not 0 <= rule.threshold < 1:
            out["threshold"] = "a share between 0 and 1 (0.05 is 5 %)"
        if not rule.window_s:
            out["window_s"] = "required, in seconds"
    elif kind == "silence":
        if not rule.system:
            out["system"] = "required"
        if not rule.window_s:
            out["window_s"] = "required, in seconds"
        if rule.while_system and rule.while_system == rule.system:
            out["while_system"] = "must differ from system"
    return out


#: a PagerDuty Events API v2 integration key: 32 letters and digits
ROUTING_KEY_PATTERN: Final = r"^[A-Za-z0-9]{32}$"
_ROUTING_KEY = re.compile(ROUTING_KEY_PATTERN)
#: the shortest webhook secret: an HMAC key shorter than this is guessable
MIN_SECRET = 16


def channel_problems(kind: str, channel: Any) -> dict[str, str]:
    """field -> what is wrong, for a ``teams``, ``pagerduty`` or ``webhook`` channel (an
    object with a Channel's attributes; the URL's address is judged by ``links.url_problem``,
    which the callers run too)."""
    out: dict[str, str] = {}
    if kind in ("teams", "webhook"):
        url = channel.webhook_url or ""
        if not url:
            out["webhook_url"] = "required: the URL to post to"
        elif not url.startswith(("https://", "http://")):
            out["webhook_url"] = "an http(s) URL"
    if kind == "pagerduty" and not _ROUTING_KEY.match(channel.routing_key or ""):
        out["routing_key"] = (
            "the 32-character integration key of a PagerDuty Events API v2 integration"
        )
    if kind == "webhook" and channel.secret and len(channel.secret) < MIN_SECRET:
        out["secret"] = f"at least {MIN_SECRET} characters (or none, to send unsigned)"
    return out


def email_problems(addresses: Any) -> str:
    """Why ``addresses`` are not a list of single, plain e-mail addresses ("" if they are)."""
    if not isinstance(addresses, list) or not addresses:
        return "at least one address"
    bad = [a for a in addresses if not _is_address(a)]
    return f"not an address: {', '.join(map(repr, bad))}" if bad else ""


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value):
        return False
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def matcher_problems(matchers: Any) -> str:
    if not isinstance(matchers, dict) or not matchers:
        return "at least one label -> value matcher"
    for key, value in matchers.items():
        if not _LABEL.match(str(key)) or not isinstance(value, str):
            return f"matcher {key!r}: label names are words, values strings"
    return ""
