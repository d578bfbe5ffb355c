"""The reconciliation API (docs/api.md, "Reconciliation"): day results per rule, one day's
unmatched transactions, and the rules and stores' zones as configuration. Reading takes
the read scope; writing a write-scoped API token or an admin session."""

from __future__ import annotations

from typing import Annotated, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.params.functions import Path  # typed: a default, not an annotation

from observatory.access.auth import require_write
from observatory.lib.answers import answers, invalid_body
from observatory.lib.params import text
from observatory.reconciliation import queries
from observatory.reconciliation.actions.rules import (
    do_create_rule,
    do_delete_store_zone,
    do_set_store_zone,
    do_update_rule,
)
from observatory.reconciliation.models import Rule, StoreZone
from observatory.reconciliation.schema import (
    Day,
    ReconciliationDayOut,
    ReconciliationPageOut,
    ReconciliationRuleChanges,
    ReconciliationRuleIn,
    ReconciliationRuleOut,
    StoreZoneIn,
    StoreZoneOut,
    item_out,
    result_out,
    rule_out,
)
from observatory.triage.queries import BadRequest

router = Router(tags=["reconciliation"])

_NAMES = r"^(?:| *[a-z0-9][a-z0-9_-]{0,63} *(?:, *[a-z0-9][a-z0-9_-]{0,63} *){0,19})$"
RULE_PATH = Path(..., min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
DAY_PATH = Path(..., description="the business day, YYYY-MM-DD")
STORE_PATH = Path(..., min_length=1, max_length=64, pattern=r"^[^\x00/]+$")


class ResultFilters(Schema):
    rule: Annotated[str, text(1400, _NAMES)] = Field(
        "", description="a rule's name, or several joined with commas (all: empty)"
    )
    since: Day | None = Field(None, description="first business day (YYYY-MM-DD), included")
    until: Day | None = Field(None, description="last business day (YYYY-MM-DD), included")


def _rule(name: str) -> Rule:
    rule = queries.rule_named(name)
    if rule is None:
        raise HttpError(404, f"no reconciliation rule {name!r}")
    return rule


@router.get(
    "/reconciliation",
    response=answers({200: ReconciliationPageOut}),
    summary="Per rule and business day: counts and totals of both sides, matched and gaps",
    description="One row per rule, business day and currency (and channel and store when "
    "the rule groups by them); amounts are never summed across currencies. `since` and "
    "`until` are business days, both included; by default the last 31 days.",
)
def list_results(request: HttpRequest, filters: Query[ResultFilters]) -> ReconciliationPageOut:
    names = [n.strip() for n in filters.rule.split(",") if n.strip()]
    known = set(Rule.objects.filter(name__in=names).values_list("name", flat=True))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadRequest("rule", f"no reconciliation rule {', '.join(unknown)}", location="query")
    since, until = queries.window(filters.since, filters.until)
    if since > until:
        raise BadRequest("until", "must not be before since", location="query")
    rows = queries.results(names, since, until)
    return ReconciliationPageOut(since=since, until=until, results=[result_out(r) for r in rows])


@router.get(
    "/reconciliation/{rule}/{day}",
    response=answers({200: ReconciliationDayOut}, 404),
    summary="One rule's business day: its figures and its unmatched transactions",
    description="Each unmatched transaction with its keys, both sides' amounts and "
    "documents, and its open mismatch exception; `matched=true` lists the matched too.",
)
def get_day(
    request: HttpRequest,
    rule: str = RULE_PATH,
    day: Day = DAY_PATH,
    matched: bool = False,
) -> ReconciliationDayOut:
    found = _rule(rule)
    rows = queries.results([found.name], day, day)
    items = queries.day_items(found, day, matched=matched)
    return ReconciliationDayOut(
        rule=found.name,
        day=day,
        time_zone=found.zone,
        results=[result_out(r) for r in rows],
        items=[item_out(v) for v in items],
    )


# --- configuration ------------------------------------------------------------------------


@router.get(
    "/reconciliation-rules",
    response=answers({200: list[ReconciliationRuleOut]}),
    summary="The reconciliation rules",
)
def list_rules(request: HttpRequest) -> list[ReconciliationRuleOut]:
    return [rule_out(r) for r in queries.rules()]


@router.get(
    "/reconciliation-rules/{name}",
    response=answers({200: ReconciliationRuleOut}, 404),
    summary="One reconciliation rule",
)
def get_rule(request: HttpRequest, name: str = RULE_PATH) -> ReconciliationRuleOut:
    return rule_out(_rule(name))


@router.post(
    "/reconciliation-rules",
    response=answers({201: ReconciliationRuleOut}, 409, body=True),
    summary="Create a reconciliation rule (write scope or an admin session)",
)
def create_rule(request: HttpRequest, body: ReconciliationRuleIn) -> Status[Any]:
    require_write(request)
    if Rule.objects.filter(name=body.name).exists():
        raise HttpError(409, f"a rule named {body.name!r} exists")
    try:
        rule = do_create_rule(body.fields())
    except DjangoValidationError as exc:
        raise invalid_body(exc) from None
    except IntegrityError:
        raise HttpError(409, f"a rule named {body.name!r} exists") from None
    return Status(201, rule_out(rule))


@router.patch(
    "/reconciliation-rules/{name}",
    response=answers({200: ReconciliationRuleOut}, 404, body=True),
    summary="Change a reconciliation rule (write scope or an admin session); its next run "
    "judges it again in full",
)
def update_rule(
    request: HttpRequest, body: ReconciliationRuleChanges, name: str = RULE_PATH
) -> ReconciliationRuleOut:
    require_write(request)
    rule = _rule(name)
    try:
        return rule_out(do_update_rule(rule, body.fields()))
    except DjangoValidationError as exc:
        raise invalid_body(exc) from None


@router.get(
    "/reconciliation-store-zones",
    response=answers({200: list[StoreZoneOut]}),
    summary="The time zones of stores' business days",
)
def list_store_zones(request: HttpRequest) -> list[StoreZoneOut]:
    return [
        StoreZoneOut(store_id=z.store_id, time_zone=z.time_zone) for z in StoreZone.objects.all()
    ]


@router.put(
    "/reconciliation-store-zones/{store_id}",
    response=answers({200: StoreZoneOut}, body=True),
    summary="Set the time zone of a store's business day (write scope or an admin session)",
)
def set_store_zone(
    request: HttpRequest, body: StoreZoneIn, store_id: str = STORE_PATH
) -> StoreZoneOut:
    require_write(request)
    try:
        zone = do_set_store_zone(store_id, body.time_zone)
    except DjangoValidationError as exc:
        raise invalid_body(exc) from None
    return StoreZoneOut(store_id=zone.store_id, time_zone=zone.time_zone)


@router.delete(
    "/reconciliation-store-zones/{store_id}",
    response=answers({204: None}, 404),
    summary="Forget a store's time zone (write scope or an admin session)",
)
def delete_store_zone(request: HttpRequest, store_id: str = STORE_PATH) -> Status[None]:
    require_write(request)
    if not do_delete_store_zone(store_id):
        raise HttpError(404, f"no time zone for store {store_id!r}")
    return Status(204, None)
