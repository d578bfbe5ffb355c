"""Business days for ``posting_completeness`` (docs/kpis.md): of the orders captured in a
window, those the ERP posted before the end of their business day.

An order's business day is the calendar day of its capture in its store's time zone
(reconciliation's ``StoreZone``, else ``RECONCILIATION_TIME_ZONE``); it ends at the next
local midnight, as ``zoneinfo`` says (a day of 23 or 25 hours is what the zone makes it).
The fill gives each captured order its verdict here (``BusinessDays.verdict``); the
figures live in the orders rollup (``queries/posting.py``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings

from observatory.lib import memo
from observatory.reconciliation.models import StoreZone


def _zones() -> tuple[tuple[str, str], ...]:
    """(store, time zone name) of every store with a zone of its own."""
    return tuple(StoreZone.objects.values_list("store_id", "time_zone"))


class BusinessDays:
    """The store zones as they are now, and the end of each business day asked for."""

    def __init__(self) -> None:
        self.default = ZoneInfo(settings.RECONCILIATION_TIME_ZONE)
        self.zones = {store: ZoneInfo(zone) for store, zone in memo.once("store_zones", _zones)}
        self._ends: dict[tuple[ZoneInfo, date], datetime] = {}

    def day_end(self, captured: datetime, store: str) -> datetime:
        """The first instant (UTC) after the business day of an order captured at
        ``captured`` in ``store``: the next local midnight of the store's zone."""
        tz = self.zones.get(store, self.default)
        day = captured.astimezone(tz).date()
        end = self._ends.get((tz, day))
        if end is None:
            end = self._ends[(tz, day)] = midnight(day + timedelta(days=1), tz)
        return end

    def verdict(
        self, captured: datetime, posted: datetime | None, store: str
    ) -> tuple[bool, datetime]:
        """(posted before the end of its business day, that end)."""
        end = self.day_end(captured, store)
        return posted is not None and posted < end, end


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz``, in UTC (where midnight falls in a gap, the
    earlier offset places it at the end of the gap, when the day begins)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def cents(amount: Decimal | float | None) -> int | None:
    """An amount in whole cents (exact sums on either database)."""
    if amount is None:
        return None
    return int((Decimal(str(amount)) * 100).to_integral_value())


def zones_digest() -> str:
    """What the business days depend on, for the fill to judge every order again when it
    changes: the default zone and every store's."""
    pairs = sorted(memo.once("store_zones", _zones))
    raw = repr((settings.RECONCILIATION_TIME_ZONE, pairs)).encode()
    return hashlib.sha256(raw).hexdigest()[:16]
