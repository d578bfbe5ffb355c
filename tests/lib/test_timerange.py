"""The one parser of a page's time range (``lib/timerange.py``): presets, custom ranges in
any ISO 8601 form, and a precise error for each bad one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from observatory.lib.timerange import RangeError, parse_range

AT = datetime(2026, 12, 6, 21, 40, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "span", "words"),
    [
        ("1h", timedelta(hours=1), "last hour"),
        ("24h", timedelta(hours=24), "last 24 hours"),
        ("7d", timedelta(days=7), "last 7 days"),
        ("30d", timedelta(days=30), "last 30 days"),
        ("90d", timedelta(days=90), "last 90 days"),
    ],
)
def test_presets_end_now(key: str, span: timedelta, words: str) -> None:
    tr = parse_range({"range": key}, at=AT)
    assert (tr.since, tr.until, tr.words, tr.query) == (AT - span, AT, words, f"range={key}")


def test_the_default_and_all() -> None:
    assert parse_range({}, at=AT).key == "24h"
    assert parse_range({"range": ""}, at=AT, default="7d").key == "7d"
    everything = parse_range({"range": "all"}, at=AT, allow_all=True)
    assert everything.since is None and everything.words == "all time"
    with pytest.raises(RangeError, match=r"^range: this page needs a bounded range"):
        parse_range({"range": "all"}, at=AT)


def test_custom_ranges_in_utc_whatever_form_they_come_in() -> None:
    tr = parse_range(
        {"range": "custom", "from": "2026-12-01T10:00+01:00", "to": "2026-12-02T12:30Z"}, at=AT
    )
    assert tr.since == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert tr.until == datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
    assert tr.words == "Dec 1, 2026 09:00 to Dec 2, 2026 12:30 UTC"
    assert tr.query == "range=custom&from=2026-12-01T09%3A00%3A00Z&to=2026-12-02T12%3A30%3A00Z"
    # a time without an offset is UTC (the picker without script); dates are whole days
    naive = parse_range({"range": "custom", "from": "2026-12-01T10:00", "to": "2026-12-03"}, at=AT)
    assert naive.since == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert naive.until == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    # the query gives the same range back
    again = parse_range(dict(p.split("=") for p in tr.query.replace("%3A", ":").split("&")), at=AT)
    assert (again.since, again.until) == (tr.since, tr.until)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"range": "2w"}, "range: must be one of 1h, 24h, 7d, 30d, 90d or custom, not '2w'"),
        ({"range": "custom", "to": "2026-12-02"}, "from: is required for a custom range"),
        ({"range": "custom", "from": "2026-12-01"}, "to: is required for a custom range"),
        ({"range": "custom", "from": "yesterday", "to": "2026-12-02"}, "from: 'yesterday' is not"),
        (
            {"range": "custom", "from": "2026-13-45", "to": "2026-12-02"},
            "from: '2026-13-45' is not",
        ),
        ({"range": "custom", "from": "2026-12-02", "to": "2026-12-01T00:00Z"}, "to: must be after"),
        ({"range": "custom", "from": "2020-01-01", "to": "2026-12-01"}, "to: a range may span"),
    ],
)
def test_a_bad_range_names_its_parameter(params: dict[str, str], error: str) -> None:
    with pytest.raises(RangeError) as caught:
        parse_range(params, at=AT)
    assert str(caught.value).startswith(error)
