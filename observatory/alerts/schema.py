"""API shapes for alerts, rules, channels and silences (docs/api.md, docs/alerts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import WithJsonSchema

from observatory.alerts.models import (
    WEBHOOK,
    Alert,
    Channel,
    Notification,
    Rule,
    Silence,
    mask_key,
    mask_url,
)
from observatory.alerts.validation import EMAIL_PATTERN, LABEL_PATTERN
from observatory.lib.params import (
    MAX_INT32,
    NO_NUL,
    DbId,
    Instant,
    Int32,
    Text32,
    Text64,
    text,
)

#: A label name (a word) and a label value, of a rule or a silence matcher.
LabelName = Annotated[str, text(64, LABEL_PATTERN)]
LabelText = Annotated[str, text(200)]
#: One plain e-mail address (ASCII, as Django's validator reads it): no spaces, control
#: characters, list separators or display names.
Address = Annotated[str, text(254, EMAIL_PATTERN)]


def _labels_schema(min_items: int) -> dict[str, Any]:
    """label name -> value, both bounded, said as JSON Schema says it (pydantic's own
    form, ``patternProperties``, would let any other name through)."""
    return {
        "type": "object",
        "minProperties": min_items,
        "maxProperties": 50,
        "propertyNames": {"pattern": LABEL_PATTERN, "maxLength": 64},
        "additionalProperties": {"type": "string", "maxLength": 200, "pattern": NO_NUL},
    }


Labels = Annotated[dict[LabelName, LabelText], WithJsonSchema(_labels_schema(0))]
Matchers = Annotated[dict[LabelName, LabelText], WithJsonSchema(_labels_schema(1))]


class ChannelIn(Schema):
    """Per kind (docs/alerts.md, "Channels"): ``slack`` with ``webhook_url``, or
    ``bot_token`` and ``channel``; ``email`` with ``to``; ``teams`` with ``webhook_url``;
    ``pagerduty`` with ``routing_key``; ``webhook`` with ``url`` and optional ``secret``."""

    name: Annotated[str, text(100, min_length=1)]
    kind: Literal["slack", "email", "teams", "pagerduty", "webhook"]
    webhook_url: Annotated[str, text(2000)] = Field(
        "", description="slack: incoming webhook URL; teams: Workflows webhook URL"
    )
    routing_key: Annotated[str, text(64)] = Field(
        "", description="pagerduty: the Events API v2 integration (routing) key"
    )
    url: Annotated[str, text(2000)] = Field(
        "", description="webhook: where the Alertmanager v4 JSON is posted"
    )
    secret: Annotated[str, text(255)] = Field(
        "",
        description="webhook: HMAC-SHA256 key; each body is then signed in "
        "X-Observatory-Signature: sha256=<hex>",
    )
    bot_token: Annotated[str, text(255)] = Field(
        "", description="Slack bot token (xoxb-...), with channel"
    )
    channel: Annotated[str, text(100)] = Field(
        "", description="Slack channel id or #name, with bot_token"
    )
    to: list[Address] = Field(
        default_factory=list, max_length=50, description="email addresses, one each"
    )


class ChannelOut(Schema):
    id: int
    name: str
    kind: str
    #: slack-webhook, slack-bot, email, teams, pagerduty or webhook
    mode: str
    #: where it posts, secrets elided
    target: str
    #: slack, teams: whole for a write-scoped token or an admin session, else masked
    webhook_url: str
    channel: str
    to: list[str]
    #: webhook: its URL, whole or masked as ``webhook_url``
    url: str = ""
    #: pagerduty: the routing key's last four characters (never whole)
    routing_key: str = ""
    #: webhook: whether bodies are signed (the secret is never shown)
    signed: bool = False
    active: bool
    failing: bool
    failing_reason: str
    failing_since: datetime | None
    last_sent_at: datetime | None
    created_at: datetime


def channel_out(c: Channel, *, reveal: bool = False) -> ChannelOut:
    """A channel as the API shows it: its webhook URL whole only when ``reveal`` (to
    those who may change channels); a bot token never."""
    shown_url = c.webhook_url if reveal else mask_url(c.webhook_url)
    return ChannelOut(
        id=c.id,
        name=c.name,
        kind=c.kind,
        mode=c.mode,
        target=c.target,
        webhook_url="" if c.kind == WEBHOOK else shown_url,
        channel=c.slack_channel,
        to=list(c.to or []),
        url=shown_url if c.kind == WEBHOOK else "",
        routing_key=mask_key(c.routing_key),
        signed=bool(c.secret),
        active=c.active,
        failing=c.failing,
        failing_reason=c.failing_reason,
        failing_since=c.failing_since,
        last_sent_at=c.last_sent_at,
        created_at=c.created_at,
    )


class RuleIn(Schema):
    name: Annotated[str, text(150, min_length=1)]
    kind: Literal["kpi", "stuck", "error_rate", "silence"]
    severity: Literal["critical", "warning", "info"] = "warning"
    for_s: Int32 = 0
    repeat_s: Int32 = 14400
    keep_firing_s: Int32 = Field(0, description="stay firing this long after it clears")
    labels: Labels = Field(default_factory=dict, max_length=50)
    channels: list[DbId] = Field(
        default_factory=list, max_length=100, description="channel ids; none: every active channel"
    )
    description: Annotated[str, text(2000)] = ""
    active: bool = True
    kpi: Text64 = ""
    field: Text64 = ""
    op: Literal["", ">", ">=", "<", "<="] = ""
    threshold: float | None = Field(None, allow_inf_nan=False)
    window_s: int | None = Field(None, ge=1, le=MAX_INT32)
    stage: Text32 = ""
    channel: Text32 = Field("", description="sales channel: web, pos, marketplace…")
    system: Text64 = ""
    operation: Annotated[str, text(255)] = ""
    while_system: Text64 = ""
    min_count: int = Field(
        1, ge=1, le=MAX_INT32, description="error_rate: hops needed in the window"
    )
    min_failed: int = Field(
        1, ge=1, le=MAX_INT32, description="error_rate: failed hops needed in the window"
    )


class RuleOut(Schema):
    id: int
    name: str
    kind: str
    severity: str
    for_s: int
    repeat_s: int
    keep_firing_s: int
    labels: dict[str, str]
    channels: list[int]
    description: str
    active: bool
    kpi: str
    field: str
    op: str
    threshold: float | None
    window_s: int | None
    stage: str
    channel: str
    system: str
    operation: str
    while_system: str
    min_count: int
    min_failed: int
    created_by: str
    created_at: datetime


def rule_out(r: Rule) -> RuleOut:
    return RuleOut(
        id=r.id,
        name=r.name,
        kind=r.kind,
        severity=r.severity,
        for_s=r.for_s,
        repeat_s=r.repeat_s,
        keep_firing_s=r.keep_firing_s,
        labels=dict(r.labels or {}),
        channels=sorted(c.id for c in r.channels.all()),
        description=r.description,
        active=r.active,
        kpi=r.kpi,
        field=r.field,
        op=r.op,
        threshold=r.threshold,
        window_s=r.window_s,
        stage=r.stage,
        channel=r.channel,
        system=r.system,
        operation=r.operation,
        while_system=r.while_system,
        min_count=r.min_count,
        min_failed=r.min_failed,
        created_by=r.created_by,
        created_at=r.created_at,
    )


class SilenceIn(Schema):
    matchers: Matchers = Field(
        ..., min_length=1, max_length=50, description="label -> value; every one must match"
    )
    starts_at: Instant | None = Field(
        None, description="RFC 3339, UTC without an offset; default: now"
    )
    ends_at: Instant = Field(..., description="RFC 3339, UTC without an offset")
    comment: Annotated[str, text(2000, min_length=1)]


class SilenceOut(Schema):
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime
    #: pending (starts later), active or expired
    state: str


def silence_out(s: Silence, at: datetime) -> SilenceOut:
    return SilenceOut(
        id=s.id,
        matchers=dict(s.matchers or {}),
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        comment=s.comment,
        created_by=s.created_by,
        created_at=s.created_at,
        state=s.state(at),
    )


class NotificationOut(Schema):
    id: int
    channel_id: int
    channel: str
    #: firing, repeat, update, resolved, acknowledged
    event: str
    event_at: datetime
    #: pending, sent, failed, skipped
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        channel_id=n.channel_id,
        channel=n.channel.name,
        event=n.event.kind,
        event_at=n.event.at,
        status=n.status,
        attempts=n.attempts,
        created_at=n.created_at,
        sent_at=n.sent_at,
        next_attempt_at=n.next_attempt_at if n.status == "pending" else None,
        last_error=n.last_error,
    )


class AlertOut(Schema):
    id: int
    rule_id: int
    rule: str
    kind: str
    severity: str
    #: pending, firing or resolved
    state: str
    #: firing since (pending since while pending; resolved at once resolved)
    since: datetime | None
    started_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str
    fingerprint: str
    labels: dict[str, str]
    summary: str
    value: float | None
    detail: dict[str, Any]
    #: the system-level alert holding this one back, if any
    inhibited_by: int | None
    #: the silence muting it, if any
    silenced_by: int | None
    #: an incident that began and ended before its data arrived: recorded, never sent
    found_in_history: bool = False
    notifications: list[NotificationOut]


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        rule_id=a.rule_id,
        rule=a.rule.name,
        kind=a.rule.kind,
        severity=a.rule.severity,
        state=a.state,
        since=a.since,
        started_at=a.started_at,
        fired_at=a.fired_at,
        resolved_at=a.resolved_at,
        acknowledged=a.acknowledged,
        acknowledged_at=a.acknowledged_at,
        acknowledged_by=a.acknowledged_by,
        fingerprint=a.fingerprint,
        labels=dict(a.labels or {}),
        summary=a.summary,
        value=a.value,
        detail=dict(a.detail or {}),
        inhibited_by=a.inhibited_by_id,
        silenced_by=a.silenced_by_id,
        found_in_history=a.found_in_history,
        notifications=[notification_out(n) for n in a.notifications.all()],
    )


class AlertPageOut(Schema):
    items: list[AlertOut]
    next_cursor: str | None


class TestOut(Schema):
    channel_id: int
    #: sent or failed
    status: str
    error: str
