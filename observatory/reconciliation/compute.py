"""How one item is judged, from plain values (docs/reconciliation.md, "How an item is
judged"). Pure: no ORM. The runs judge in set-based SQL (``actions``); this is the same
judgement in Python, its reference, tested against it, and what the pages use to say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from observatory.reconciliation.models import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_IN_SOURCE,
    MISSING_IN_TARGET,
    POSTED_TWICE,
)

CENT = Decimal("0.01")


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not an IANA time zone: {name!r}") from None


def business_day(at: datetime, zone_name: str) -> date:
    """The calendar day ``at`` falls on in ``zone_name`` (a DST change makes a day of 23
    or 25 hours: the zone's rules say where midnight is)."""
    return at.astimezone(zone(zone_name)).date()


def tolerance(source: Decimal, absolute: Decimal, relative: Decimal) -> Decimal:
    """How far apart two amounts may be and still match: the absolute tolerance or the
    relative one times the source amount, whichever is larger."""
    return max(absolute, relative * abs(source))


def amounts_differ(source: Decimal, target: Decimal, absolute: Decimal, relative: Decimal) -> bool:
    """Whether ``target`` is further from ``source`` than the tolerance allows (the
    difference rounded to the cent, as it is stored)."""
    gap = abs(source - target).quantize(CENT)
    return gap > tolerance(source, absolute, relative)


@dataclass(frozen=True)
class Side:
    """One side of an item: when it was first and last reached, its documents, its
    amount (per document the first amount reported, summed) and its currencies."""

    first_at: datetime
    last_at: datetime
    docs: int = 1
    amount: Decimal | None = None
    currencies: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    status: str
    #: when a gap counts (a missing side is waited for the grace period); None: at once
    due_at: datetime | None


def judge(
    source: Side | None,
    target: Side | None,
    *,
    absolute: Decimal,
    relative: Decimal,
    grace: timedelta,
) -> Verdict:
    """The status of an item with these sides (at least one of them).

    In order: a side missing; more target documents than source documents (posted
    twice), or fewer (a source document missing in the target); amounts in different
    currencies, or further apart than the tolerance; else matched. A missing side counts
    once ``grace`` has passed since the other side (its last document for a missing
    target, its first for a missing source)."""
    if source is None and target is None:
        raise ValueError("an item has at least one side")
    if source is None:
        assert target is not None
        return Verdict(MISSING_IN_SOURCE, target.first_at + grace)
    if target is None:
        return Verdict(MISSING_IN_TARGET, source.last_at + grace)
    if target.docs > source.docs:
        return Verdict(POSTED_TWICE, None)
    if target.docs < source.docs:
        return Verdict(MISSING_IN_TARGET, source.last_at + grace)
    if source.amount is not None and target.amount is not None:
        currencies = source.currencies | target.currencies
        if len(currencies) > 1 or amounts_differ(source.amount, target.amount, absolute, relative):
            return Verdict(AMOUNT_MISMATCH, None)
    return Verdict(MATCHED, None)


def at_risk(status: str, source: Decimal | None, target: Decimal | None) -> Decimal:
    """The money of an item that does not reconcile: nothing when matched, else
    |source - target| (a missing side counting as zero)."""
    if status == MATCHED:
        return Decimal("0")
    return abs((source or Decimal("0")) - (target or Decimal("0")))
