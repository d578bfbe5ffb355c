"""The alerting API (docs/api.md, docs/alerts.md): alerts with their notifications, acknowledge;
channels, rules and silences. Reading takes the read scope; writing a write-scoped API
token or an admin session."""

from __future__ import annotations

from typing import Annotated, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.params.functions import Path  # typed: a default, not an annotation

from observatory.access.auth import can_write, require_write
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
from observatory.lib.answers import answers, bad_body, invalid_body
from observatory.lib.clock import now
from observatory.lib.params import MAX_INT64, DbId, Text256, one_of, text
from observatory.triage.queries import BadRequest

router = Router(tags=["alerts"])
_STATES = {s for s, _ in ALERT_STATES}
#: a row id in a path: 1 to 2^63 - 1
PATH_ID = Path(..., ge=1, le=MAX_INT64)
AlertStates = Annotated[str, text(100, one_of(sorted(_STATES), several=True))]


def actor(request: HttpRequest) -> str:
    """Who is acting: the signed-in user, or the API token (its user, if it has one)."""
    token: Any = getattr(request, "api_token", None)
    if token is not None:
        return token.user.get_username() if token.user_id else f"token:{token.name}"
    user: Any = getattr(request, "user", None)
    return user.get_username() if user is not None else "unknown"


# --- alerts -----------------------------------------------------------------------------------


class AlertFilters(Schema):
    state: AlertStates = Field(
        "", description="pending, firing, resolved, or several joined with commas (all: empty)"
    )
    acknowledged: bool | None = None
    rule: DbId | None = Field(None, description="only this rule's alerts")
    limit: int = Field(50, ge=1, le=500)
    cursor: Text256 | None = Field(None, description="next_cursor of the previous page")


@router.get(
    "/alerts",
    response=answers({200: AlertPageOut}),
    summary="Alerts, newest first, with notifications",
)
def list_alerts(request: HttpRequest, filters: Query[AlertFilters]) -> AlertPageOut:
    states = tuple(s.strip() for s in filters.state.split(",") if s.strip())
    before = None
    if filters.cursor:
        cursor = filters.cursor.strip()
        if not cursor.isdigit() or not 0 < int(cursor) <= MAX_INT64:
            raise BadRequest("cursor", "not a cursor this API handed out")
        before = int(cursor)
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


@router.get(
    "/alerts/{alert_id}",
    response=answers({200: AlertOut}, 404),
    summary="One alert with its notifications",
)
def get_alert(request: HttpRequest, alert_id: int = PATH_ID) -> AlertOut:
    alert = queries.alert_with_notifications(alert_id)
    if alert is None:
        raise HttpError(404, f"no alert {alert_id}")
    return alert_out(alert)


@router.post(
    "/alerts/{alert_id}/ack",
    response=answers({200: AlertOut}, 404, 409),
    summary="Acknowledge an alert: no more reminders (write scope or an admin session)",
)
def acknowledge(request: HttpRequest, alert_id: int = PATH_ID) -> AlertOut:
    require_write(request)
    try:
        actions.do_acknowledge(alert_id, actor(request))
    except actions.AlertNotFound:
        raise HttpError(404, f"no alert {alert_id}") from None
    except actions.InvalidTransition as exc:
        raise HttpError(409, str(exc)) from None
    return get_alert(request, alert_id)


# --- channels ---------------------------------------------------------------------------------


@router.get(
    "/alert-channels",
    response=answers({200: list[ChannelOut]}),
    summary="Notification channels",
    description="The webhook URL is shown whole only to a write-scoped token or an admin "
    "session; to anyone else it is masked after its host. Bot tokens are never shown.",
)
def list_channels(request: HttpRequest) -> list[ChannelOut]:
    reveal = can_write(request)
    return [channel_out(c, reveal=reveal) for c in Channel.objects.order_by("id")]


#: per kind, the API's fields that the channel keeps (the others are ignored)
_CHANNEL_FIELDS = {
    "slack": ("webhook_url", "bot_token", "channel"),
    "email": ("to",),
    "teams": ("webhook_url",),
    "pagerduty": ("routing_key",),
    "webhook": ("url", "secret"),
}


def _channel_errors(exc: DjangoValidationError, kind: str) -> NinjaValidationError:
    """The model's errors under the API's field names (a webhook's URL is ``url``)."""
    rename = {"webhook_url": "url"} if kind == "webhook" else {"slack_channel": "channel"}
    errors = []
    for name, problems in getattr(exc, "message_dict", {"__all__": exc.messages}).items():
        for msg in problems:
            loc = ["body"] if name == "__all__" else ["body", rename.get(name, name)]
            errors.append({"loc": loc, "msg": msg, "type": "value_error"})
    return NinjaValidationError(errors)


@router.post(
    "/alert-channels",
    response=answers({201: ChannelOut}, 409, body=True),
    summary="Add a channel: Slack (webhook or bot token), email, Teams, PagerDuty or webhook",
)
def create_channel(request: HttpRequest, body: ChannelIn) -> Status[ChannelOut]:
    require_write(request)
    kept = _CHANNEL_FIELDS[body.kind]
    url_field = "url" if body.kind == "webhook" else "webhook_url"
    url = body.url if body.kind == "webhook" else body.webhook_url
    if url_field in kept and url:
        problem = actions.url_problem(url)
        if problem:
            raise bad_body(url_field, problem)
    try:
        channel = actions.do_create_channel(
            name=body.name,
            kind=body.kind,
            who=actor(request),
            webhook_url=url if url_field in kept else "",
            bot_token=body.bot_token if "bot_token" in kept else "",
            slack_channel=body.channel if "channel" in kept else "",
            to=body.to if "to" in kept else [],
            routing_key=body.routing_key.strip() if "routing_key" in kept else "",
            secret=body.secret if "secret" in kept else "",
        )
    except DjangoValidationError as exc:
        if (
            "name" in getattr(exc, "message_dict", {})
            and Channel.objects.filter(name=body.name).exists()
        ):
            raise HttpError(409, f"a channel named {body.name!r} exists") from None
        raise _channel_errors(exc, body.kind) from None
    return Status(201, channel_out(channel, reveal=True))


@router.post(
    "/alert-channels/{channel_id}/test",
    response=answers({200: TestOut}, 404),
    summary="Send the channel a test message now",
)
def test_channel(request: HttpRequest, channel_id: int = PATH_ID) -> TestOut:
    require_write(request)
    if not Channel.objects.filter(pk=channel_id).exists():
        raise HttpError(404, f"no channel {channel_id}")
    n = actions.do_send_test(channel_id, actor(request))
    return TestOut(channel_id=channel_id, status=n.status, error=n.last_error)


# --- rules ------------------------------------------------------------------------------------


@router.get("/alert-rules", response=answers({200: list[RuleOut]}), summary="Alerting rules")
def list_rules(request: HttpRequest) -> list[RuleOut]:
    return [rule_out(r) for r in Rule.objects.prefetch_related("channels").order_by("id")]


@router.post(
    "/alert-rules",
    response=answers({201: RuleOut}, 409, body=True),
    summary="Add an alerting rule",
)
def create_rule(request: HttpRequest, body: RuleIn) -> Status[RuleOut]:
    require_write(request)
    fields = body.dict()
    channel_ids = fields.pop("channels")
    known = set(Channel.objects.filter(id__in=channel_ids).values_list("id", flat=True))
    missing = sorted(set(channel_ids) - known)
    if missing:
        raise bad_body("channels", f"no channel {', '.join(map(str, missing))}")
    if Rule.objects.filter(name=body.name).exists():
        raise HttpError(409, f"a rule named {body.name!r} exists")
    if body.kind == "stuck" and fields["threshold"] is None:
        fields["threshold"] = 1
    try:
        rule = actions.do_create_rule(who=actor(request), channel_ids=channel_ids, **fields)
    except DjangoValidationError as exc:
        raise invalid_body(exc) from None
    except IntegrityError:
        raise HttpError(409, f"a rule named {body.name!r} exists") from None
    return Status(201, rule_out(rule))


# --- silences ---------------------------------------------------------------------------------


@router.get(
    "/silences", response=answers({200: list[SilenceOut]}), summary="Silences, newest first"
)
def list_silences(request: HttpRequest, expired: bool = False) -> list[SilenceOut]:
    at = now()
    qs = Silence.objects.order_by("-starts_at", "-id")
    if not expired:
        qs = qs.filter(ends_at__gt=at)
    return [silence_out(s, at) for s in qs[:500]]


@router.post(
    "/silences",
    response=answers({201: SilenceOut}, body=True),
    summary="Silence alerts whose labels match, from starts_at to ends_at",
)
def create_silence(request: HttpRequest, body: SilenceIn) -> Status[SilenceOut]:
    require_write(request)
    at = now()
    starts_at = body.starts_at or at
    if body.ends_at <= starts_at:
        raise bad_body("ends_at", "must be after starts_at")
    if body.ends_at <= at:
        raise bad_body("ends_at", "is in the past")
    try:
        silence = actions.do_create_silence(
            matchers=body.matchers,
            starts_at=starts_at,
            ends_at=body.ends_at,
            comment=body.comment,
            who=actor(request),
        )
    except DjangoValidationError as exc:
        raise invalid_body(exc) from None
    return Status(201, silence_out(silence, at))


@router.post(
    "/silences/{silence_id}/expire",
    response=answers({200: SilenceOut}, 404),
    summary="End a silence now",
)
def expire_silence(request: HttpRequest, silence_id: int = PATH_ID) -> SilenceOut:
    require_write(request)
    silence = actions.do_expire_silence(silence_id)
    if silence is None:
        raise HttpError(404, f"no silence {silence_id}")
    return silence_out(silence, now())
