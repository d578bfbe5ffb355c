"""Schemathesis hooks for ``tests/test_api_schema.py``: the few rules of the JSON API that
span several fields, which an OpenAPI document cannot state, applied to the requests
schemathesis means to be valid (positive cases) so that they are. Negative cases are
left alone: those must be refused, and are.

* a KPI window ends after it starts (``since`` before ``until``);
* a cursor is one the API handed out (cursors reach positive cases only through links);
* a silence ends after it starts and after now;
* a rule has the fields its kind needs (``alerts.validation.rule_problems``);
* a channel has a working destination for its kind (a webhook URL, a routing key, a
  signing secret long enough or none: the test stubs the outbound HTTP seam, nothing
  leaves the machine);
* an exception is assigned to a person who exists (none here: a team instead);
* reconciliation results name rules that exist, and days in order; a reconciliation
  rule's time zone is one the server knows, its target not its source, and a store's zone
  a real one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

from observatory.alerts.validation import KPI_FIELDS, STAGES
from observatory.lib.params import LATEST, parse_instant

WEBHOOK = "https://hooks.example.com/services/T000/B000/schemathesis"
_SYSTEM = re.compile(r"^[a-z][a-z0-9_\-.]{0,63}$")


def _positive(case: Any) -> bool:
    meta = getattr(case, "meta", None) or getattr(case, "_meta", None)
    return bool(meta is not None and meta.generation.mode.is_positive)


def _time(value: Any) -> datetime | None:
    """The time the API takes ``value`` for (held to its years), or None."""
    try:
        return parse_instant(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fix_query(case: Any) -> None:
    query = case.query
    if not isinstance(query, dict):
        return
    query.pop("cursor", None)
    since, until = _time(query.get("since")), _time(query.get("until"))
    if since is not None and since >= LATEST - timedelta(hours=2):
        # past the last time the API keeps: taken as that one, so nothing can end after it
        since = LATEST - timedelta(hours=2)
        query["since"] = _iso(since)
    if since is not None and until is None and since >= datetime.now(UTC):
        query["until"] = _iso(since + timedelta(hours=1))  # until defaults to now
    elif since is not None and until is not None and since >= until:
        query["since"], query["until"] = _iso(until - timedelta(hours=1)), _iso(since)


def _fix_silence(body: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    starts = _time(body.get("starts_at")) or now
    if starts >= LATEST - timedelta(days=2):  # nothing can end after it: start now
        body.pop("starts_at", None)
        starts = now
    ends = _time(body.get("ends_at"))
    if ends is None or ends <= max(starts, now) + timedelta(minutes=1):
        body["ends_at"] = _iso(max(starts, now) + timedelta(days=1))


def _fix_rule(body: dict[str, Any]) -> None:
    kind = body.get("kind")
    body["channels"] = []
    for name in ("system", "while_system"):
        if not _SYSTEM.match(str(body.get(name) or "")):
            body[name] = ""
    if kind == "kpi":
        body["kpi"], body["field"] = "exception_rate", "rate"
        body["op"] = body.get("op") or ">"
        body["threshold"] = 0.5 if body.get("threshold") is None else body["threshold"]
        body["window_s"] = body.get("window_s") or 3600
    elif kind == "stuck":
        if body.get("stage") not in STAGES:
            body["stage"] = "posted"
        if body.get("threshold") is not None and body["threshold"] < 1:
            body["threshold"] = 1
    elif kind in ("error_rate", "silence"):
        body["system"] = body.get("system") or "erp"
        body["window_s"] = body.get("window_s") or 300
        if kind == "error_rate":
            threshold = body.get("threshold")
            if threshold is None or not 0 <= threshold < 1:
                body["threshold"] = 0.05
        elif body.get("while_system") == body["system"]:
            body["while_system"] = ""
    assert set(KPI_FIELDS)  # the KPI ids come from the same table the API checks


def _fix_assignment(body: dict[str, Any]) -> None:
    if body.get("assignee"):
        body.pop("assignee")
    if body.get("assignee") is None and body.get("team") is None:
        body["team"] = "ops"


def _fix_channel(body: dict[str, Any]) -> None:
    kind = body.get("kind")
    if kind == "email":
        body["to"] = ["ops@example.com"]
    elif kind == "pagerduty":
        body["routing_key"] = "R0UTINGKEY0123456789abcdefABCDEF"
    elif kind == "webhook":
        body["url"] = WEBHOOK
        if len(str(body.get("secret") or "")) < 16:
            body["secret"] = ""
    else:
        body["webhook_url"], body["bot_token"], body["channel"] = WEBHOOK, "", ""


def _fix_reconciliation_query(case: Any) -> None:
    query = case.query
    if not isinstance(query, dict):
        return
    query["rule"] = "shopify-orders" if query.get("rule") else ""
    since, until = query.get("since"), query.get("until")
    if isinstance(since, str) and isinstance(until, str) and since > until:
        query["since"], query["until"] = until, since


def _fix_reconciliation_rule(body: dict[str, Any], method: str) -> None:
    if body.get("time_zone"):
        body["time_zone"] = "America/New_York"
    if method == "PATCH":  # the rule it changes is unknown here: leave its sides alone
        for name in ("source_system", "source_stage", "target_system", "target_stage"):
            body.pop(name, None)
        return
    source = (body.get("source_system", ""), body.get("source_stage", ""))
    target = (body.get("target_system", ""), body.get("target_stage", ""))
    if source == target and body.get("target_stage"):
        body["target_stage"] = "posted" if body["target_stage"] != "posted" else "captured"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if not _positive(case):
        return case
    if case.path == "/api/v1/reconciliation":
        _fix_reconciliation_query(case)
        return case
    if case.path.startswith("/api/v1/reconciliation-rules") and isinstance(case.body, dict):
        _fix_reconciliation_rule(case.body, case.method.upper())
    if case.path.startswith("/api/v1/reconciliation-store-zones") and isinstance(case.body, dict):
        case.body["time_zone"] = "Europe/Berlin"
    _fix_query(case)
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and case.method.upper() == "POST":
        if case.path.endswith("/silences"):
            _fix_silence(body)
        elif case.path.endswith("/alert-rules"):
            _fix_rule(body)
        elif case.path.endswith("/alert-channels"):
            _fix_channel(body)
        elif case.path.endswith(("/exceptions/bulk", "/assign")):
            _fix_assignment(body)
    return case
