"""The small display helpers of the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from observatory.dashboards.templatetags import dashboards as tags


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.2 s"),
        (42, "42 s"),
        (119.999999, "2 min"),
        (3600, "1 h"),
        (3 * 3600 + 5 * 60, "3 h 5 min"),
        (4 * 86400 + 2 * 3600, "4 d 2 h"),
        (-5, "0.0 s"),
    ],
)
def test_humanize_seconds(seconds: float, text: str) -> None:
    assert tags.humanize_seconds(seconds) == text


def test_age_of_a_duration_and_durations_in_ms() -> None:
    assert tags.age(timedelta(minutes=7)) == "7 min"
    assert tags.age(None) == "—"
    assert tags.duration_ms(842) == "842 ms"
    assert tags.duration_ms(30_000) == "30.0 s"
    assert tags.duration_ms(180_000) == "3 min"


def test_labels() -> None:
    assert tags.label("payment_authorized") == "Payment authorized"
    assert tags.label("fulfillment_synced") == "Fulfillment seen by Shopify"
    assert tags.label("") == "—"
