"""The KPI pages' figures from plain values: valid plotly, the right traces, safe JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson

from observatory.dashboards import kpi_figures as figs
from observatory.dashboards.series import LAG_BINS, lag_distribution
from observatory.kpis.compute import Sketch

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def days(n: int, **fields: object) -> list[dict[str, object]]:
    return [{"day": DAY0 + timedelta(days=i), **fields} for i in range(n)]


def test_posting_times_one_pair_of_lines_per_channel_on_a_log_axis() -> None:
    series = {
        "web": [{"day": DAY0, "count": 3, "p50_s": 20.0, "p95_s": 58.0}],
        "pos": [{"day": DAY0, "count": 9, "p50_s": 600.0, "p95_s": 1300.0}],
    }
    fig = figs.posting_times(series)
    figs.validate(fig)
    names = [t["name"] for t in fig["data"]]
    assert names == ["web · slowest 5 %", "web · typical", "pos · slowest 5 %", "pos · typical"]
    axis = fig["layout"]["yaxis"]
    assert axis["type"] == "log" and "1 min" in axis["ticktext"] and "15 min" in axis["ticktext"]
    assert fig["data"][0]["customdata"] == ["58 s"]


def test_rates_are_percent_over_volume_bars() -> None:
    rows = days(3, orders=10, with_exception=1, rate=0.1, posted_twice=0)
    rows[1]["rate"] = None
    fig = figs.daily_rate(rows, count="orders")
    figs.validate(fig)
    bars, line = fig["data"]
    assert bars["type"] == "bar" and bars["yaxis"] == "y2"
    assert line["y"] == [10.0, None, 10.0]


def test_every_chart_is_valid_plotly_even_when_empty() -> None:
    for fig in (
        figs.posting_times({}),
        figs.daily_rate([]),
        figs.backlog([], (DAY0, DAY0 + timedelta(days=1))),
        figs.backlog(
            [{"at": DAY0, "total": 3, "by_stage": {"posted": 2, "fulfillment_synced": 1}}]
        ),
        figs.distribution(lag_distribution(Sketch())),
        figs.resolution(days(2, exceptions_mean_s=3600.0, alerts_mean_s=None)),
        figs.hourly_hops([{"hour": DAY0, "hops": 5, "errors": 1}]),
        figs.systems_bars([SimpleNamespace(system="erp", hops=10, errors=2, minutes=60.0)]),
    ):
        figs.validate(fig)


def test_lag_distribution_bins() -> None:
    rows = lag_distribution(Sketch.from_values([0, 5, 45, 100, 250, 320, 4000]))
    assert [r["bin"] for r in rows] == [label for label, _ in LAG_BINS]
    assert [r["count"] for r in rows] == [2, 1, 1, 1, 1, 0, 1]


def test_json_is_safe_inside_a_script_tag() -> None:
    fig = figs.distribution([{"bin": "</script><b>", "count": 1}])
    text = figs.to_json(fig, {"displayModeBar": False})
    assert "</script>" not in text and "<" not in text
    assert orjson.loads(text)["config"] == {"displayModeBar": False}


def test_plain_words_for_durations() -> None:
    assert figs.human_s(None) == "—"
    assert figs.human_s(0.2) == "under 1 s"
    assert figs.human_s(42) == "42 s"
    assert figs.human_s(180) == "3.0 min"
    assert figs.human_s(5 * 3600) == "5.0 h"
    assert figs.human_s(3 * 86400) == "3.0 days"
