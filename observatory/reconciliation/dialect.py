"""SQL the two databases spell differently, for the set-based runs (``actions``).

The business day of a time in a zone: PostgreSQL's ``AT TIME ZONE`` knows the IANA zones;
on SQLite a function registered on every connection does the same with ``zoneinfo``
(Django's own ``django_datetime_cast_date`` reads ``Etc/GMT+10`` as an offset of +10
hours, the opposite of what the zone is).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import connection

from observatory.reconciliation import compute

SQLITE_DAY = "observatory_business_day"


def _sqlite_day(stamp: str | None, zone_name: str | None) -> str | None:
    if stamp is None or not zone_name:
        return None
    from django.utils.dateparse import parse_datetime
    from django.utils.timezone import make_aware

    at = parse_datetime(stamp)
    if at is None:
        return None
    if at.tzinfo is None:  # stored in UTC, naive
        at = make_aware(at, compute.zone("UTC"))
    try:
        day: date = compute.business_day(at, zone_name)
    except ValueError:
        return None
    return day.isoformat()


def register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the business-day function on SQLite connections."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_DAY, 2, _sqlite_day, deterministic=True)


def day_of(moment: str, zone_sql: str) -> str:
    """SQL for the date ``moment`` (an expression of type timestamptz) falls on in the
    zone ``zone_sql`` (an expression naming an IANA zone)."""
    if connection.vendor == "postgresql":
        return f"(({moment}) AT TIME ZONE ({zone_sql}))::date"
    return f"{SQLITE_DAY}({moment}, {zone_sql})"


def database_knows_zone(name: str) -> bool:
    """Whether the database computes days in ``name`` (PostgreSQL has its own copy of the
    zone database; SQLite uses Python's)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_timezone_names WHERE name = %s", [name])
        return cur.fetchone() is not None


def greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if connection.vendor == "postgresql" else f"MAX({a}, {b})"


def true() -> str:
    return "TRUE" if connection.vendor == "postgresql" else "1"


def false() -> str:
    return "FALSE" if connection.vendor == "postgresql" else "0"
