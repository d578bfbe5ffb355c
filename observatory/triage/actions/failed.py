"""Failed hops: one ``failed_hop`` exception per (transaction, system, operation),
counting repeats, closed when a later attempt succeeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Subquery

from observatory.hops.models import exception_events
from observatory.transactions.models import TransactionHop
from observatory.triage import queries
from observatory.triage.actions.common import _BATCH, SweepResult, _insert
from observatory.triage.models import (
    FAILED_HOP,
    RESOLVED,
    SYSTEM_ACTOR,
    UNRESOLVED,
    Issue,
    TriagedHop,
)
from tracing import conventions as c


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _op_key(system: str, operation: str) -> str:
    raw = f"{system}:{operation}"
    if len(raw) <= 160:
        return raw
    return f"{system}:{hashlib.sha1(operation.encode()).hexdigest()}"


def _open_failed(
    at: datetime, touched: list[int] | None, owner: Callable[[str], str], result: SweepResult
) -> None:
    links = TransactionHop.objects.filter(
        hop__outcome=c.ERROR, transaction__merged_into__isnull=True
    ).exclude(Exists(TriagedHop.objects.filter(hop_id=OuterRef("hop_id"))))
    if touched is not None:
        links = links.filter(transaction_id__in=touched)
    rows = list(
        links.order_by("hop__start_time", "hop_id").values_list(
            "transaction_id",
            "hop_id",
            "hop__system",
            "hop__operation",
            "hop__start_time",
            "hop__status_message",
            "hop__retry_attempt",
            "hop__trace_id",
            "hop__extra",
        )
    )
    if not rows:
        return
    # per (transaction, system, operation): how many failed, and the latest failure
    groups: dict[str, dict[str, Any]] = {}
    for tx_id, hop_id, system, operation, start, message, attempt, trace_id, extra in rows:
        key = f"{FAILED_HOP}:{tx_id}:{_op_key(system, operation)}"
        g = groups.setdefault(
            key,
            {"tx": tx_id, "system": system, "operation": operation, "count": 0, "first": start},
        )
        g["count"] += 1
        # rows are in time order: the latest failure's error, trace and exception event win
        g.update(hop=hop_id, at=start, message=message, attempt=attempt, trace_id=trace_id)
        g["exception"] = _last_exception(extra)
    held = {
        i.dedupe_key: i
        for i in Issue.objects.filter(state__in=UNRESOLVED, dedupe_key__in=list(groups))
    }
    labels = queries.transaction_labels(g["tx"] for k, g in groups.items() if k not in held)
    new, changed = [], []
    for key, g in groups.items():
        issue = held.get(key)
        if issue is not None:
            failures = int(issue.detail.get("failures", 1)) + g["count"]
            issue.detail = {**issue.detail, "failures": failures}
            if issue.event_at is None or g["at"] > issue.event_at:
                issue.hop_id = g["hop"]
                issue.event_at = g["at"]
                issue.detail.update(_latest(g))
            issue.summary = _failed_summary(
                issue.summary.split(": ", 1)[0], g, failures, issue.detail["last_error"]
            )
            changed.append(issue)
            continue
        new.append(
            Issue(
                kind=FAILED_HOP,
                transaction_id=g["tx"],
                hop_id=g["hop"],
                system=g["system"],
                operation=g["operation"][:255],
                owner=owner(g["system"]),
                summary=_failed_summary(labels[g["tx"]], g, g["count"], g["message"]),
                detail={
                    "failures": g["count"],
                    "first_failed_at": g["first"].isoformat(),
                    **_latest(g),
                },
                dedupe_key=key,
                event_at=g["at"],
                opened_at=g["first"],
                detected_at=at,
            )
        )
    Issue.objects.bulk_update(
        changed, ["hop_id", "event_at", "detail", "summary"], batch_size=_BATCH
    )
    result.failed_opened += _insert(new)
    claims = [TriagedHop(hop_id=hop_id, at=at) for hop_id in {r[1] for r in rows}]
    TriagedHop.objects.bulk_create(claims, ignore_conflicts=True, batch_size=_BATCH)


def _last_exception(extra: Any) -> dict[str, Any] | None:
    """The failed hop's last OpenTelemetry exception event (type, message, stack trace),
    None without one."""
    found = exception_events(extra) if isinstance(extra, dict) else []
    return found[-1] if found else None


def _latest(g: dict[str, Any]) -> dict[str, Any]:
    """What the issue keeps of its latest failure: the error, the attempt, the trace and
    the exception event (kept here, since hops are pruned before exceptions)."""
    latest: dict[str, Any] = {"last_error": g["message"], "retry_attempt": g["attempt"]}
    if g["trace_id"]:
        latest["trace_id"] = g["trace_id"]
    latest["exception"] = g["exception"]
    return latest


def _failed_summary(label: str, g: dict[str, Any], failures: int, message: str) -> str:
    times = f" ({failures} times)" if failures > 1 else ""
    why = f": {_short(message)}" if message else ""
    return f"{label}: {g['system']} {g['operation']} failed{times}{why}"


def _close_failed(result: SweepResult) -> None:
    """Resolve failed-hop exceptions a later attempt made good, at the business time of
    that attempt."""
    later_success = TransactionHop.objects.filter(
        transaction_id=OuterRef("transaction_id"),
        hop__system=OuterRef("system"),
        hop__operation=OuterRef("operation"),
        hop__outcome=c.OK,
        hop__start_time__gt=OuterRef("event_at"),
    )
    first = Subquery(later_success.order_by("hop__start_time").values("hop__start_time")[:1])
    result.failed_closed += int(
        Issue.objects.filter(kind=FAILED_HOP, state__in=UNRESOLVED)
        .filter(Exists(later_success))
        .update(
            state=RESOLVED,
            resolved_at=first,
            resolved_by=SYSTEM_ACTOR,
            resolution="a later attempt succeeded",
        )
    )
