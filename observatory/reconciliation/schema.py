"""API shapes of reconciliation (docs/api.md, "Reconciliation")."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import BeforeValidator, WithJsonSchema, model_validator

from observatory.lib.params import Int32, Text64, text
from observatory.reconciliation.models import Result, Rule
from observatory.reconciliation.queries import ItemView
from observatory.triage.schema import TxKeyOut

#: a system or key kind: lower-case word, or blank (any)
_WORD = r"^(?:|[a-z][a-z0-9_-]{0,63})$"
_STAGE = r"^[a-z][a-z0-9_]{0,31}$"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Word = Annotated[str, text(64, _WORD)]
Stage = Annotated[str, text(32, _STAGE)]
RuleName = Annotated[str, text(64, _NAME, min_length=1)]
Channel = Annotated[str, text(32, r"^[a-z0-9][a-z0-9_-]{0,31}$", min_length=1)]


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(value: Any) -> Any:
    """A business day: ``YYYY-MM-DD`` only (no number taken for a date)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("must be a day, YYYY-MM-DD")
    return date.fromisoformat(value)


#: a business day the API takes in
Day = Annotated[date, BeforeValidator(_day), WithJsonSchema({"type": "string", "format": "date"})]


def _money(value: Any) -> Any:
    if isinstance(value, int | float | str):
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return value
    return value


#: an amount: a number or a string holding one, at most 12 digits before the point
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, max_digits=14, decimal_places=2),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,12}(\.\d{1,2})?$"}),
]
Fraction = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, max_digits=9, decimal_places=6),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,3}(\.\d{1,6})?$"}),
]


class ReconciliationResultOut(Schema):
    """One rule's figures for one business day and currency (and channel and store when
    the rule groups by them)."""

    rule: str
    day: date
    currency: str
    channel: str
    store_id: str
    source_count: int
    source_total: Decimal
    target_count: int
    target_total: Decimal
    matched: int
    missing_in_target: int
    missing_in_source: int
    amount_mismatch: int
    posted_twice: int
    #: gaps still within the rule's grace period (not counted yet)
    pending: int
    #: matched / (matched + every counted gap); null with nothing judged yet
    rate: float | None
    #: the sum of |source - target| over the amount mismatches
    mismatched_amount: Decimal
    #: |source - target| summed over every counted gap
    value_at_risk: Decimal
    computed_at: datetime


def result_out(r: Result) -> ReconciliationResultOut:
    """A day result as the API shows it, built without validation: its values come typed
    from the database (as ``triage.api.order_out`` explains)."""
    rate = r.rate
    return ReconciliationResultOut.model_construct(
        rule=r.rule.name,
        day=r.day,
        currency=r.currency,
        channel=r.channel,
        store_id=r.store_id,
        source_count=r.source_count,
        source_total=r.source_total,
        target_count=r.target_count,
        target_total=r.target_total,
        matched=r.matched,
        missing_in_target=r.missing_in_target,
        missing_in_source=r.missing_in_source,
        amount_mismatch=r.amount_mismatch,
        posted_twice=r.posted_twice,
        pending=r.pending,
        rate=None if rate is None else round(rate, 6),
        mismatched_amount=r.mismatched_amount,
        value_at_risk=r.value_at_risk,
        computed_at=r.computed_at,
    )


class ReconciliationPageOut(Schema):
    since: date
    until: date
    results: list[ReconciliationResultOut]


class ReconciliationItemOut(Schema):
    """One transaction of a day under a rule: its keys, both sides and the gap."""

    transaction_id: int
    label: str
    keys: list[TxKeyOut]
    #: matched, missing_in_target, missing_in_source, amount_mismatch or posted_twice
    status: str
    #: false while a missing side is still waited for (the rule's grace period)
    counted: bool
    #: when such a gap counts
    due_at: datetime | None
    currency: str
    channel: str
    store_id: str
    source_at: datetime | None
    source_amount: Decimal | None
    source_docs: int
    target_at: datetime | None
    target_amount: Decimal | None
    target_docs: int
    #: the batch posting (a hop id) that reached the target, if one did
    target_batch: int | None
    value_at_risk: Decimal
    #: the open mismatch exception, if there is one
    exception_id: int | None


def item_out(v: ItemView) -> ReconciliationItemOut:
    """An item as the API shows it, built without validation like ``result_out``."""
    i = v.item
    return ReconciliationItemOut.model_construct(
        transaction_id=i.transaction_id,
        label=v.label,
        keys=[TxKeyOut.model_construct(kind=k, value=val) for k, val in v.keys],
        status=i.status,
        counted=i.counted,
        due_at=v.due_at,
        currency=i.currency,
        channel=i.channel,
        store_id=i.store_id,
        source_at=i.source_at,
        source_amount=i.source_amount,
        source_docs=i.source_docs,
        target_at=i.target_at,
        target_amount=i.target_amount,
        target_docs=i.target_docs,
        target_batch=i.target_batch,
        value_at_risk=v.value_at_risk,
        exception_id=v.exception_id,
    )


class ReconciliationDayOut(Schema):
    rule: str
    day: date
    time_zone: str
    results: list[ReconciliationResultOut]
    items: list[ReconciliationItemOut]


class ReconciliationRuleOut(Schema):
    id: int
    name: str
    title: str
    description: str
    source_system: str
    source_stage: str
    source_key: str
    target_system: str
    target_stage: str
    target_key: str
    transaction_kind: str
    channels: list[str]
    time_zone: str
    #: the zone in force: time_zone, or RECONCILIATION_TIME_ZONE when blank
    zone: str
    store_time_zones: bool
    group_by_channel: bool
    group_by_store: bool
    tolerance_abs: Decimal
    tolerance_rel: Decimal
    grace_s: int
    every_s: int
    exempt_cancelled: bool
    active: bool
    last_run_at: datetime | None


def rule_out(r: Rule) -> ReconciliationRuleOut:
    return ReconciliationRuleOut(
        id=r.id,
        name=r.name,
        title=r.title,
        description=r.description,
        source_system=r.source_system,
        source_stage=r.source_stage,
        source_key=r.source_key,
        target_system=r.target_system,
        target_stage=r.target_stage,
        target_key=r.target_key,
        transaction_kind=r.transaction_kind,
        channels=r.channel_list,
        time_zone=r.time_zone,
        zone=r.zone,
        store_time_zones=r.store_time_zones,
        group_by_channel=r.group_by_channel,
        group_by_store=r.group_by_store,
        tolerance_abs=r.tolerance_abs,
        tolerance_rel=r.tolerance_rel,
        grace_s=r.grace_s,
        every_s=r.every_s,
        exempt_cancelled=r.exempt_cancelled,
        active=r.active,
        last_run_at=r.last_run_at,
    )


class ReconciliationRuleChanges(Schema):
    """The fields of a rule that can be set (every one optional in a change)."""

    title: Annotated[str, text(200, min_length=1)] | None = None
    description: Annotated[str, text(2000)] | None = None
    source_system: Word | None = None
    source_stage: Stage | None = None
    source_key: Word | None = None
    target_system: Word | None = None
    target_stage: Stage | None = None
    target_key: Word | None = None
    transaction_kind: Annotated[str, text(20, r"^(?:|order|return|inventory_update)$")] | None = (
        None
    )
    channels: list[Channel] | None = Field(None, max_length=10)
    time_zone: Text64 | None = Field(None, description="IANA zone; blank: the default")
    store_time_zones: bool | None = None
    group_by_channel: bool | None = None
    group_by_store: bool | None = None
    tolerance_abs: Money | None = None
    tolerance_rel: Fraction | None = None
    grace_s: Int32 | None = None
    every_s: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    exempt_cancelled: bool | None = None
    active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        # every field is optional: without this, a JSON array would pass for "{}" (ninja
        # hands the body in wrapped, as it would an ORM object)
        if not isinstance(getattr(data, "_obj", data), dict):
            raise ValueError("must be a JSON object")
        return data

    def fields(self) -> dict[str, Any]:
        """The fields given, as the model holds them."""
        out = self.model_dump(exclude_unset=True)
        if "channels" in out:
            out["channels"] = ",".join(c.strip() for c in out["channels"] or [] if c.strip())
        return {k: v for k, v in out.items() if v is not None or k == "channels"}


class ReconciliationRuleIn(ReconciliationRuleChanges):
    name: RuleName
    title: Annotated[str, text(200, min_length=1)]
    source_stage: Stage
    target_stage: Stage


class StoreZoneIn(Schema):
    time_zone: Annotated[str, text(64, min_length=1)]


class StoreZoneOut(Schema):
    store_id: str
    time_zone: str
