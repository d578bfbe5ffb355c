"""The alert state machine, on plain values and an injected ``now`` (no ORM: tested
without a database).

One call to ``step`` is one evaluation. It takes the rules, what each rule found true now
(``Finding``s, one per set of labels), the alerts not yet resolved, and the silences, and
answers the new state of every alert it touched and the events worth telling someone:

* **pending -> firing.** A finding with no unresolved alert of its fingerprint starts one,
  pending; it fires once it has been true for ``for_s`` (at once when ``for_s`` is 0).
  A pending alert whose condition clears before that resolves silently: flapping below
  ``for_s`` never notifies.
* **firing -> resolved.** A firing alert resolves when its condition has been false for
  ``keep_firing_s`` (at once when 0). Its resolution is announced when its firing was.
* **Dedupe.** The fingerprint is the rule and the labels the finding adds (the system, a
  stage): the same fingerprint is always the same alert until it resolves.
* **Repeat.** A firing alert that was announced is announced again every ``repeat_s``
  unless acknowledged.
* **Silences.** An alert matched by an active silence is ``silenced_by`` it and sends
  nothing; once the silence expires, a firing alert that never went out is announced.
* **Inhibition** (business-aware grouping). While a system-level alert (``silence`` or
  ``error_rate`` kinds) is pending or firing for a system, the ``stuck`` alerts labelled
  with that system are held back (``inhibited_by``) and summarised inside it instead; the
  system-level alert announces an ``update`` when a newly firing stuck alert joins it
  after it went out. Once it resolves, the stuck alerts still true come back on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

PENDING: Final = "pending"
FIRING: Final = "firing"
RESOLVED: Final = "resolved"

EV_FIRING: Final = "firing"
EV_REPEAT: Final = "repeat"
EV_UPDATE: Final = "update"
EV_RESOLVED: Final = "resolved"

STUCK: Final = "stuck"
#: rule kinds that speak for a whole system
SYSTEM_KINDS: Final = ("silence", "error_rate")


@dataclass(frozen=True)
class RuleSpec:
    id: int
    name: str
    kind: str
    severity: str
    for_s: int = 0
    repeat_s: int = 14400
    keep_firing_s: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One thing a rule found true now: the labels that tell it apart (``system``,
    ``stage``...), a value, and what to say about it."""

    rule_id: int
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    summary: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SilenceSpec:
    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers.items())


@dataclass(frozen=True)
class AlertState:
    fingerprint: str
    rule_id: int
    labels: Mapping[str, str]
    state: str
    started_at: datetime
    last_true_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    value: float | None = None
    summary: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    notified_at: datetime | None = None
    last_notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    #: fingerprint of the system-level alert holding this one back
    inhibited_by: str | None = None
    #: fingerprints this system-level alert has held back and summarised
    held: tuple[str, ...] = ()
    silenced_by: int | None = None
    #: the database id, when the alert exists (None for one this step starts)
    id: int | None = None

    @property
    def muted(self) -> bool:
        return self.silenced_by is not None or self.inhibited_by is not None


@dataclass(frozen=True)
class Event:
    fingerprint: str
    kind: str
    at: datetime


@dataclass
class StepResult:
    #: every alert this step looked at, in its new state (the resolved ones included)
    alerts: list[AlertState]
    events: list[Event]

    def by_fingerprint(self) -> dict[str, AlertState]:
        return {a.fingerprint: a for a in self.alerts}


def fingerprint(rule_id: int, labels: Mapping[str, str]) -> str:
    """The identity of one instance of a rule: its id and the finding's own labels."""
    raw = orjson.dumps([rule_id, sorted((str(k), str(v)) for k, v in labels.items())])
    return hashlib.sha256(raw).hexdigest()[:32]


def alert_labels(rule: RuleSpec, finding_labels: Mapping[str, str]) -> dict[str, str]:
    """docs/alerts.md: the rule's own labels, then ``rule``, ``kind``, ``severity``, then what
    the finding adds (``system``, ``stage``, ``channel``...)."""
    return {
        **{str(k): str(v) for k, v in rule.labels.items()},
        "rule": rule.name,
        "kind": rule.kind,
        "severity": rule.severity,
        **{str(k): str(v) for k, v in finding_labels.items()},
    }


def _advance(
    rule: RuleSpec | None, alert: AlertState, finding: Finding | None, now: datetime
) -> AlertState:
    """One alert's state after this evaluation (before silences and inhibition)."""
    if rule is None:  # the rule was deleted or switched off: nothing holds it up
        return replace(alert, state=RESOLVED, resolved_at=now)
    if finding is not None:
        alert = replace(
            alert,
            last_true_at=now,
            value=finding.value,
            summary=finding.summary,
            detail=dict(finding.detail),
            labels=alert_labels(rule, finding.labels),
        )
        if alert.state == PENDING and now - alert.started_at >= timedelta(seconds=rule.for_s):
            alert = replace(alert, state=FIRING, fired_at=now)
        return alert
    if alert.state == PENDING:
        return replace(alert, state=RESOLVED, resolved_at=now)
    if now - alert.last_true_at >= timedelta(seconds=rule.keep_firing_s):
        return replace(alert, state=RESOLVED, resolved_at=now)
    return alert


def _start(rule: RuleSpec, finding: Finding, fp: str, now: datetime) -> AlertState:
    alert = AlertState(
        fingerprint=fp,
        rule_id=rule.id,
        labels=alert_labels(rule, finding.labels),
        state=PENDING,
        started_at=now,
        last_true_at=now,
        value=finding.value,
        summary=finding.summary,
        detail=dict(finding.detail),
    )
    if rule.for_s <= 0:
        alert = replace(alert, state=FIRING, fired_at=now)
    return alert


def _silence(alert: AlertState, silences: Sequence[SilenceSpec], now: datetime) -> AlertState:
    for s in silences:
        if s.active(now) and s.matches(alert.labels):
            return replace(alert, silenced_by=s.id)
    return replace(alert, silenced_by=None)


def _inhibitors(alerts: Iterable[AlertState], kinds: Mapping[int, str]) -> dict[str, AlertState]:
    """system -> the system-level alert that holds its stuck alerts back (firing ones
    first, then the oldest)."""
    out: dict[str, AlertState] = {}
    candidates = [
        a
        for a in alerts
        if a.state in (PENDING, FIRING)
        and kinds.get(a.rule_id) in SYSTEM_KINDS
        and a.labels.get("system")
    ]
    candidates.sort(key=lambda a: (a.state != FIRING, a.fired_at or a.started_at, a.fingerprint))
    for a in candidates:
        out.setdefault(a.labels["system"], a)
    return out


def step(
    now: datetime,
    rules: Sequence[RuleSpec],
    findings: Iterable[Finding],
    alerts: Iterable[AlertState],
    silences: Sequence[SilenceSpec] = (),
) -> StepResult:
    """One evaluation (see the module docstring). ``alerts`` are the unresolved ones;
    ``rules`` the active ones (alerts of any other rule resolve)."""
    by_id = {r.id: r for r in rules}
    kinds = {r.id: r.kind for r in rules}
    found: dict[str, tuple[RuleSpec, Finding]] = {}
    for f in findings:
        rule = by_id.get(f.rule_id)
        if rule is not None:
            found.setdefault(fingerprint(rule.id, f.labels), (rule, f))

    before: dict[str, AlertState] = {}
    after: dict[str, AlertState] = {}
    for alert in sorted(alerts, key=lambda a: a.fingerprint):
        before[alert.fingerprint] = alert
        hit = found.get(alert.fingerprint)
        after[alert.fingerprint] = _advance(
            by_id.get(alert.rule_id), alert, hit[1] if hit else None, now
        )
    for fp, (rule, f) in sorted(found.items()):
        if fp not in after:
            after[fp] = _start(rule, f, fp, now)

    # silences, then inhibition, on the new states
    for fp, alert in after.items():
        if alert.state != RESOLVED:
            after[fp] = _silence(alert, silences, now)
    holders = _inhibitors(after.values(), kinds)
    for fp, alert in after.items():
        inhibitor = None
        if alert.state != RESOLVED and kinds.get(alert.rule_id) == STUCK:
            holder = holders.get(alert.labels.get("system", ""))
            inhibitor = holder.fingerprint if holder is not None else None
        after[fp] = replace(alert, inhibited_by=inhibitor)

    # what the holders summarise: the firing stuck alerts they hold
    newly_held: dict[str, list[str]] = {}
    for fp, alert in after.items():
        if alert.inhibited_by and alert.state == FIRING:
            holder = after[alert.inhibited_by]
            if fp not in holder.held:
                newly_held.setdefault(holder.fingerprint, []).append(fp)
    for holder_fp, fps in newly_held.items():
        holder = after[holder_fp]
        after[holder_fp] = replace(holder, held=(*holder.held, *sorted(fps)))

    events: list[Event] = []
    for fp in sorted(after):
        alert = after[fp]
        rule = by_id.get(alert.rule_id)
        was = before.get(fp)
        if alert.state == RESOLVED:
            if was is not None and was.notified_at is not None and alert.silenced_by is None:
                events.append(Event(fp, EV_RESOLVED, now))
            continue
        if alert.state != FIRING or alert.muted or rule is None:
            continue
        if alert.notified_at is None:
            events.append(Event(fp, EV_FIRING, now))
            after[fp] = replace(alert, notified_at=now, last_notified_at=now)
        elif (
            alert.acknowledged_at is None
            and alert.last_notified_at is not None
            and now - alert.last_notified_at >= timedelta(seconds=rule.repeat_s)
        ):
            events.append(Event(fp, EV_REPEAT, now))
            after[fp] = replace(alert, last_notified_at=now)
        elif fp in newly_held:
            events.append(Event(fp, EV_UPDATE, now))
    return StepResult(alerts=[after[fp] for fp in sorted(after)], events=events)


def compare(value: float, op: str, threshold: float) -> bool:
    """``value op threshold`` for the four operators of docs/alerts.md."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    raise ValueError(f"unknown operator {op!r}")
