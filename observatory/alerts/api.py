"""The alerting API (CONTRACT 3 and 6): alerts with their notifications, acknowledge;
channels, rules and silences. Reading takes the read scope; writing a write-scoped API
token or an admin session."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError

from observatory.access.auth import require_write
from observatory.alerts import actions, queries
from observatory.alerts.models import ALERT_STATES, Channel, Rule, Silence
from observatory.alerts.schema import (
    AlertOut,
    AlertPageOut,
    ChannelIn,
    ChannelOut,
    RuleIn,
    RuleOut,
    SilenceIn,
    SilenceOut,
    TestOut,
    alert_out,
    channel_out,
    rule_out,
    silence_out,
)
from observatory.lib.clock import now

router = Router(tags=["alerts"])
_STATES = {s for s, _ in ALERT_STATES}


def actor(request: HttpRequest) -> str:
    """Who is acting: the signed-in user, or the API token (its user, if it has one)."""
    token: Any = getattr(request, "api_token", None)
    if token is not None:
        return token.user.get_username() if token.user_id else f"token:{token.name}"
    user: Any = getattr(request, "user", None)
    return user.get_username() if user is not None else "unknown"


def _invalid(exc: DjangoValidationError) -> NinjaValidationError:
    """A model validation error in the shape of ninja's own 422 answers."""
    errors = []
    if hasattr(exc, "error_dict"):
        for name, problems in exc.message_dict.items():
            for msg in problems:
                errors.append({"loc": ["body", name], "msg": msg, "type": "value_error"})
    else:
        for msg in exc.messages:
            errors.append({"loc": ["body"], "msg": msg, "type": "value_error"})
    return NinjaValidationError(errors)


def _bad(field: str, msg: str) -> NinjaValidationError:
    return NinjaValidationError([{"loc": ["body", field], "msg": msg, "type": "value_error"}])


# --- alerts -----------------------------------------------------------------------------------


class AlertFilters(Schema):
    state: str = Field(
        "", description="pending, firing, resolved, or several joined with commas (all: empty)"
    )
    acknowledged: bool | None = None
    rule: int | None = Field(None, description="only this rule's alerts")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, description="next_cursor of the previous page")


@router.get("/alerts", response=AlertPageOut, summary="Alerts, newest first, with notifications")
def list_alerts(request: HttpRequest, filters: Query[AlertFilters]) -> AlertPageOut:
    states = tuple(s.strip() for s in filters.state.split(",") if s.strip())
    unknown = set(states) - _STATES
    if unknown:
        raise HttpError(400, f"unknown state {', '.join(sorted(unknown))}")
    before = None
    if filters.cursor:
        try:
            before = int(filters.cursor)
        except ValueError:
            raise HttpError(400, "bad cursor") from None
    rows = queries.alerts(
        states=states,
        acknowledged=filters.acknowledged,
        rule_id=filters.rule,
        limit=filters.limit + 1,
        before_id=before,
    )
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    return AlertPageOut(
        items=[alert_out(a) for a in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


@router.get("/alerts/{alert_id}", response=AlertOut, summary="One alert with its notifications")
def get_alert(request: HttpRequest, alert_id: int) -> AlertOut:
    alert = queries.alert_with_notifications(alert_id)
    if alert is None:
        raise HttpError(404, f"no alert {alert_id}")
    return alert_out(alert)


@router.post(
    "/alerts/{alert_id}/ack",
    response=AlertOut,
    summary="Acknowledge an alert: no more reminders (write scope or an admin session)",
)
def acknowledge(request: HttpRequest, alert_id: int) -> AlertOut:
    require_write(request)
    try:
        actions.do_acknowledge(alert_id, actor(request))
    except actions.AlertNotFound:
        raise HttpError(404, f"no alert {alert_id}") from None
    except actions.InvalidTransition as exc:
        raise HttpError(409, str(exc)) from None
    return get_alert(request, alert_id)


# --- channels ---------------------------------------------------------------------------------


@router.get("/alert-channels", response=list[ChannelOut], summary="Notification channels")
def list_channels(request: HttpRequest) -> list[ChannelOut]:
    return [channel_out(c) for c in Channel.objects.order_by("id")]


@router.post(
    "/alert-channels",
    response={201: ChannelOut},
    summary="Add a Slack (webhook or bot token) or email channel",
)
def create_channel(request: HttpRequest, body: ChannelIn) -> Status[ChannelOut]:
    require_write(request)
    if body.kind == "slack" and body.webhook_url:
        problem = actions.url_problem(body.webhook_url)
        if problem:
            raise _bad("webhook_url", problem)
    try:
        channel = actions.do_create_channel(
            name=body.name,
            kind=body.kind,
            who=actor(request),
            webhook_url=body.webhook_url if body.kind == "slack" else "",
            bot_token=body.bot_token if body.kind == "slack" else "",
            slack_channel=body.channel if body.kind == "slack" else "",
            to=body.to if body.kind == "email" else [],
        )
    except DjangoValidationError as exc:
        if (
            "name" in getattr(exc, "message_dict", {})
            and Channel.objects.filter(name=body.name).exists()
        ):
            raise HttpError(409, f"a channel named {body.name!r} exists") from None
        raise _invalid(exc) from None
    return Status(201, channel_out(channel))


@router.post(
    "/alert-channels/{channel_id}/test",
    response=TestOut,
    summary="Send the channel a test message now",
)
def test_channel(request: HttpRequest, channel_id: int) -> TestOut:
    require_write(request)
    if not Channel.objects.filter(pk=channel_id).exists():
        raise HttpError(404, f"no channel {channel_id}")
    n = actions.do_send_test(channel_id, actor(request))
    return TestOut(channel_id=channel_id, status=n.status, error=n.last_error)


# --- rules ------------------------------------------------------------------------------------


@router.get("/alert-rules", response=list[RuleOut], summary="Alerting rules")
def list_rules(request: HttpRequest) -> list[RuleOut]:
    return [rule_out(r) for r in Rule.objects.prefetch_related("channels").order_by("id")]


@router.post("/alert-rules", response={201: RuleOut}, summary="Add an alerting rule")
def create_rule(request: HttpRequest, body: RuleIn) -> Status[RuleOut]:
    require_write(request)
    fields = body.dict()
    channel_ids = fields.pop("channels")
    known = set(Channel.objects.filter(id__in=channel_ids).values_list("id", flat=True))
    missing = sorted(set(channel_ids) - known)
    if missing:
        raise _bad("channels", f"no channel {', '.join(map(str, missing))}")
    if Rule.objects.filter(name=body.name).exists():
        raise HttpError(409, f"a rule named {body.name!r} exists")
    if body.kind == "stuck" and fields["threshold"] is None:
        fields["threshold"] = 1
    try:
        rule = actions.do_create_rule(who=actor(request), channel_ids=channel_ids, **fields)
    except DjangoValidationError as exc:
        raise _invalid(exc) from None
    except IntegrityError:
        raise HttpError(409, f"a rule named {body.name!r} exists") from None
    return Status(201, rule_out(rule))


# --- silences ---------------------------------------------------------------------------------


@router.get("/silences", response=list[SilenceOut], summary="Silences, newest first")
def list_silences(request: HttpRequest, expired: bool = False) -> list[SilenceOut]:
    at = now()
    qs = Silence.objects.order_by("-starts_at", "-id")
    if not expired:
        qs = qs.filter(ends_at__gt=at)
    return [silence_out(s, at) for s in qs[:500]]


@router.post(
    "/silences",
    response={201: SilenceOut},
    summary="Silence alerts whose labels match, from starts_at to ends_at",
)
def create_silence(request: HttpRequest, body: SilenceIn) -> Status[SilenceOut]:
    require_write(request)
    at = now()
    starts_at = body.starts_at or at
    for name, value in (("starts_at", starts_at), ("ends_at", body.ends_at)):
        if value.tzinfo is None:
            raise _bad(name, "needs a time zone (e.g. 2026-11-20T10:00:00Z)")
    if body.ends_at <= starts_at:
        raise _bad("ends_at", "must be after starts_at")
    if body.ends_at <= at:
        raise _bad("ends_at", "is in the past")
    try:
        silence = actions.do_create_silence(
            matchers=body.matchers,
            starts_at=starts_at,
            ends_at=body.ends_at,
            comment=body.comment,
            who=actor(request),
        )
    except DjangoValidationError as exc:
        raise _invalid(exc) from None
    return Status(201, silence_out(silence, at))


@router.post("/silences/{silence_id}/expire", response=SilenceOut, summary="End a silence now")
def expire_silence(request: HttpRequest, silence_id: int) -> SilenceOut:
    require_write(request)
    silence = actions.do_expire_silence(silence_id)
    if silence is None:
        raise HttpError(404, f"no silence {silence_id}")
    return silence_out(silence, now())
