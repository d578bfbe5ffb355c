"""Reporting streams from plain values: watermarks, late hops, maximum delay and skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from observatory.hops import streams
from observatory.hops.streams import Arrival, Limits, StreamState
from observatory.lib.sketch import Sketch

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIM = Limits(floor_s=60, ceiling_s=900, min_skew_s=5, late_window_s=30)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def arrive(*pairs: tuple[float, float]) -> list[Arrival]:
    """(business second, arrival second) pairs."""
    return [Arrival(at(b), at(r)) for b, r in pairs]


def test_a_live_stream_is_complete_up_to_its_newest_report_less_its_skew() -> None:
    s, _ = streams.record(StreamState("erp"), arrive((0, 1), (10, 12), (20, 21)), LIM)
    assert s.reported_up_to == s.on_time_up_to == at(20)
    assert streams.watermark(s, at(22), LIM) == at(15)
    assert not streams.catching_up(s, at(22), LIM)
    assert not streams.silent(s, at(22)) and streams.silent(s, at(82))


def test_history_beside_live_traffic_holds_the_watermark_back_while_it_streams() -> None:
    """A backfill of yesterday streaming in beside today's live hops: the stream is not
    complete past the backfill's position, however new its live hops are."""
    day = 86400
    s, _ = streams.record(StreamState("erp"), arrive((day, day + 1)), LIM)  # live, now
    s, steady = streams.record(s, arrive((3600, day + 2), (3700, day + 3)), LIM)  # yesterday
    assert steady == []  # behind the live hops: they say nothing about the live delay
    assert s.reported_up_to == at(day)
    assert streams.catching_up(s, at(day + 5), LIM)
    assert streams.watermark(s, at(day + 5), LIM) == at(3600)
    # the backfill moves on: its oldest recent hop is the watermark
    s, _ = streams.record(s, arrive((7200, day + 40), (9000, day + 41)), LIM)
    assert streams.watermark(s, at(day + 45), LIM) == at(3600)  # the previous window counts
    assert streams.watermark(s, at(day + 70.5), LIM) == at(7200)
    # the backfill is over: complete up to the newest report
    assert not streams.catching_up(s, at(day + 80), LIM)
    assert streams.watermark(s, at(day + 80), LIM) == at(day - 5)


def test_a_sender_clock_in_the_future_cannot_push_the_watermark_past_the_arrival() -> None:
    s, _ = streams.record(StreamState("pos", "ST1"), arrive((500, 10)), LIM)
    assert s.reported_up_to == at(10)


def test_measured_delay_and_skew_within_their_bounds() -> None:
    live = Sketch.from_values([1.0] * 95 + [3.0] * 5)
    assert streams.measure(live, LIM) == (60, 5)  # the floor, the minimum skew
    relayed = Sketch.from_values([float(x) for x in range(300)])  # batches every 5 min
    delay, skew = streams.measure(relayed, LIM)
    assert 290 <= delay <= 300 and 290 <= skew <= 300
    # a backfill's lags of days are beyond the ceiling: they do not stretch the delay
    backfill = Sketch.from_values([2.0] * 50 + [86400.0 * 3] * 950)
    assert streams.measure(backfill, LIM)[0] == 60
    assert streams.measure(backfill, LIM, configured_s=120.0)[0] == 120


@given(
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 400)), min_size=1, max_size=40),
    st.integers(0, 6000),
)
def test_the_watermark_never_passes_a_hop_still_arriving(
    hops: list[tuple[int, int]], probe: int
) -> None:
    """Whatever the order hops arrive in: while a hop reported up to ``w`` may still be
    on its way (its arrival within the late window, a late one), ``w`` stays ahead."""
    now = at(probe)
    arrivals = [Arrival(at(b), at(b + delay)) for b, delay in hops]
    arrivals = [a for a in arrivals if a.received_at <= now]  # what has arrived by then
    assume(arrivals)
    state, _ = streams.record(StreamState("erp"), arrivals, LIM)
    mark = streams.watermark(state, now, LIM)
    assert mark is not None and mark <= state.reported_up_to  # type: ignore[operator]
    recent_late = [
        a
        for a in arrivals
        if a.lag_s > state.max_delay_s and now - timedelta(seconds=30) < a.received_at <= now
    ]
    for a in recent_late:
        assert mark <= a.at


def test_steady_lags_are_within_twice_the_maximum_delay() -> None:
    # a relay every five minutes: the delay grows towards it, doubling at most each time
    s, steady = streams.record(StreamState("carrier"), arrive((0, 110), (100, 300)), LIM)
    assert steady == [110.0]
    delay, _ = streams.measure(Sketch.from_values(steady), LIM)
    assert 100 <= delay <= 111
    # a webhook retried an hour late is not steady whatever the delay
    s, steady = streams.record(s, arrive((-3000, 602)), LIM)
    assert steady == []
