"""What a corpus case expects, and the checks every case ends with."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import models

from observatory.hops.models import Hop, HopKey

MARK = "[truncated]"
LONG = 100_000  # the review's "one long value": quadratic masking took 20 s and more


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


def nested(depth: int) -> Any:
    """A value ``depth`` maps deep: {"a": {"a": ... "x"}}."""
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


# --- what a case expects ------------------------------------------------------------------


@dataclass(frozen=True)
class Reject:
    """The bad item is refused alone, with ``word`` (its field) in the reason."""

    word: str


@dataclass(frozen=True)
class Store:
    """The bad item is stored (cut, cleaned, or exactly as sent); ``check`` reads its hop."""

    check: Callable[[Hop], None] = lambda hop: None


@dataclass(frozen=True)
class Refuse:
    """The whole request is refused with ``status`` (a body no decoder can read)."""

    status: int = 400


Expect = Reject | Store | Refuse


def cut(column: str) -> Callable[[Hop], None]:
    def check(hop: Hop) -> None:
        value = getattr(hop, column)
        assert MARK in value, f"{column} should carry the truncation marker"
        assert len(value) <= (Hop._meta.get_field(column).max_length or 1 << 62)

    return check


def equals(column: str, value: Any) -> Callable[[Hop], None]:
    def check(hop: Hop) -> None:
        assert getattr(hop, column) == value

    return check


def no_nul(column: str) -> Callable[[Hop], None]:
    def check(hop: Hop) -> None:
        value = getattr(hop, column)
        assert "\x00" not in value and "\ufffd" in value, repr(value[:80])

    return check


def attribute(name: str, test: Callable[[Any], bool]) -> Callable[[Hop], None]:
    def check(hop: Hop) -> None:
        assert test(hop.attributes[name]), repr(hop.attributes.get(name))[:200]

    return check


def clean_attributes(hop: Hop) -> None:
    text = orjson.dumps(hop.attributes).decode()
    assert "\\u0000" not in text and "\ufffd" in text


def truncated_attribute(name: str) -> Callable[[Hop], None]:
    return attribute(name, lambda v: MARK in v and len(v) < LONG)


def system_ok(hop: Hop) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_\-]{0,63}", hop.system), hop.system[:80]
    assert len(hop.source) <= (Hop._meta.get_field("source").max_length or 0)
    assert "\x00" not in hop.source


# --- every stored row fits its column -----------------------------------------------------


def assert_stored_rows_fit() -> None:
    for model in (Hop, HopKey):
        for f in model._meta.concrete_fields:
            if not isinstance(f, models.CharField | models.TextField):
                continue
            for value in model.objects.values_list(f.attname, flat=True):
                assert "\x00" not in value, f"NUL in {model.__name__}.{f.name}"
                if f.max_length:
                    assert len(value) <= f.max_length, (
                        f"{model.__name__}.{f.name}: {len(value)} > {f.max_length}"
                    )
        for f in model._meta.concrete_fields:
            if isinstance(f, models.JSONField):
                for value in model.objects.values_list(f.attname, flat=True):
                    assert "\\u0000" not in orjson.dumps(value).decode()


def no_server_error(response: Any) -> None:
    assert response.status_code < 500, f"got {response.status_code}: {response.content[:300]!r}"


def assert_short_names(attributes: dict[str, Any]) -> None:
    assert all(len(name) < 1000 for name in attributes), "attribute names are cut"


def assert_amount(hop: Hop, text: str) -> None:
    assert hop.amount == Decimal(text)


def assert_year(hop: Hop, year: int) -> None:
    assert hop.start_time.year == year


def check(expect: Expect, stored: set[str], bad_uid: str, good_uid: str) -> None:
    if isinstance(expect, Refuse):
        assert stored == set()
        return
    assert good_uid in stored, "the good item beside the bad one is stored"
    if isinstance(expect, Reject):
        assert bad_uid not in stored, "the refused item is not stored"
    else:
        assert bad_uid in stored
        expect.check(Hop.objects.get(uid=bad_uid))
