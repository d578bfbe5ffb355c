"""The swimlane figure, from plain values (no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from observatory.dashboards import figures

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@dataclass
class FakeHop:
    id: int
    system: str
    operation: str
    start_time: datetime
    duration_ms: float = 100.0
    outcome: str = "ok"
    status_message: str = ""
    trace_id: str = "4bf92f3577b34da6a3ce929d0e0e4736"
    span_id: str = "00f067aa0ba902b7"
    retry_attempt: int = 0
    replay: bool = False
    platform_status: str = ""

    @property
    def end_time(self) -> datetime:
        return self.start_time + timedelta(milliseconds=self.duration_ms)


HOPS = [
    FakeHop(1, "shopify", "orders/create", T0),
    FakeHop(2, "middleware", "validate order", T0 + timedelta(seconds=4)),
    FakeHop(
        3,
        "erp",
        "post sales order",
        T0 + timedelta(seconds=9),
        30_000,
        outcome="error",
        status_message="ERP answered 503",
    ),
    FakeHop(
        4,
        "erp",
        "post sales order",
        T0 + timedelta(minutes=3),
        842,
        retry_attempt=1,
        platform_status="Pending Fulfillment",
    ),
    FakeHop(5, "wms", "pick_pack", T0 + timedelta(minutes=40)),
]


def traces_by_name(fig: figures.go.Figure) -> dict[str, dict]:
    doc = orjson.loads(fig.to_json())
    return {t.get("name"): t for t in doc["data"]}


def test_one_lane_per_system_in_the_order_the_order_met_them() -> None:
    fig = figures.swimlane(HOPS)
    lanes = list(fig.layout.yaxis.categoryarray)
    # plotly draws categories bottom-up: reversed, so the first system is the top lane
    assert lanes == ["wms", "erp", "middleware", "shopify"]


def test_failed_hops_are_red_and_retries_marked() -> None:
    traces = traces_by_name(figures.swimlane(HOPS, {4: ["posted"]}))
    failed = traces["failed"]
    assert failed["marker"]["color"] == figures.FAILED_COLOUR
    assert failed["y"] == ["erp"]
    retried = traces["retry / replay"]
    assert retried["y"] == ["erp"]
    assert retried["text"] == ["posted · retry 1"]
    assert set(traces["completed"]["y"]) == {"shopify", "middleware", "wms"}


def test_hover_says_operation_duration_and_trace() -> None:
    traces = traces_by_name(figures.swimlane(HOPS))
    (hover,) = traces["failed"]["hovertext"]
    assert "post sales order" in hover
    assert "duration: 30.0 s" in hover
    assert "trace: 4bf92f3577b34da6a3ce929d0e0e4736" in hover
    assert "ERP answered 503" in hover


def test_duration_bars_start_at_each_hop() -> None:
    bars = traces_by_name(figures.swimlane(HOPS))["duration"]
    assert bars["type"] == "bar" and bars["orientation"] == "h"
    assert bars["x"][2] == 30_000
    assert bars["base"][2].startswith("2026-11-20T10:00:09")


def test_figure_json_cannot_break_out_of_its_script_tag() -> None:
    hop = FakeHop(1, "erp", "</script><script>alert(1)</script>", T0)
    text = figures.figure_json(figures.swimlane([hop]))
    assert "</script>" not in text and "<" not in text
    assert orjson.loads(text)["data"]
