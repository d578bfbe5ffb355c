"""Reporting streams: how far each system's telemetry has got in business time (its
watermark) and how late its hops arrive. Pure: plain values and a clock, no ORM.

Every hop carries two times: its business time (when it happened) and its arrival time
(when Observatory received it); the difference is its *arrival lag*. A *stream* is one
system, or, for the systems whose stores report on their own (the POS), one store.
``docs/watermarks.md`` explains the model; in short:

* **Maximum telemetry delay** (``max_delay_s``): how late a stream's hops may normally
  arrive. Configured per system, or else measured: the 99th percentile of its steady
  arrival lags (within twice the delay measured before: not a backfill's or a
  straggler's) that are within the ceiling, held between a floor and that ceiling.
* **Late hops**: a hop whose lag exceeds the stream's maximum delay belongs to data that is
  catching up: a backfill, an offline store's upload, a webhook retried hours later, a
  stopped worker's backlog. While such hops keep arriving (the latest within
  ``late_window_s``), the stream is still delivering that far back in business time.
* **Skew** (``skew_s``): the 99th percentile of on-time lags, at least a minimum: two
  hops of one stream sent a few seconds apart (spans batched by an exporter, events sent
  at once) may arrive in the other order.
* **Watermark**: the business time up to which the stream's telemetry is complete. While
  late hops keep arriving: the older of the newest on-time business time less the skew,
  and the oldest business time among the late hops of the last window. Otherwise: the
  newest business time reported, less the skew.

A deadline is judged once the watermark of the stream expected to report the awaited stage
has passed it; a stream that has said nothing for longer than its maximum delay while
deadlines wait on it is *silent*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from observatory.lib.sketch import Sketch

#: a lag up to this many times the stream's maximum delay is steady (measured on)
STEADY_FACTOR: Final = 2.0


@dataclass(frozen=True)
class Limits:
    """The settings that bound a stream's figures (seconds)."""

    floor_s: float = 60.0
    ceiling_s: float = 900.0
    min_skew_s: float = 5.0
    late_window_s: float = 30.0


@dataclass(frozen=True)
class StreamState:
    """What the hop store remembers of one stream (the ``Stream`` row)."""

    system: str
    store_id: str = ""
    #: newest business time reported (a business time after its arrival counts as its
    #: arrival: a sender's clock running fast cannot push the watermark into the future)
    reported_up_to: datetime | None = None
    #: newest business time among hops that arrived within the maximum delay
    on_time_up_to: datetime | None = None
    #: newest arrival
    last_arrival_at: datetime | None = None
    #: newest arrival of a late hop, and the late window's oldest business times
    late_arrival_at: datetime | None = None
    late_window_at: datetime | None = None
    late_floor: datetime | None = None
    late_prev_floor: datetime | None = None
    max_delay_s: float = 60.0
    skew_s: float = 5.0
    hops: int = 0
    late_hops: int = 0


@dataclass(frozen=True)
class Arrival:
    """One hop as its stream sees it."""

    business_at: datetime
    received_at: datetime

    @property
    def at(self) -> datetime:
        """The business time, never after the arrival."""
        return min(self.business_at, self.received_at)

    @property
    def lag_s(self) -> float:
        return max(0.0, (self.received_at - self.business_at).total_seconds())


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def record(
    state: StreamState, arrivals: Iterable[Arrival], limits: Limits
) -> tuple[StreamState, list[float]]:
    """``state`` after ``arrivals`` (in any order; a batch of one stitch chunk), and the
    *steady* lags among them: those within twice the stream's maximum delay. The maximum
    delay and the skew are measured on steady lags only, so that a backfill, an upload or
    a webhook retried hours late (lags far beyond what the stream usually shows) do not
    stretch them, while a stream whose hops do come later (a relay every few minutes)
    moves its maximum delay up, doubling at most per measurement."""
    window = timedelta(seconds=limits.late_window_s)
    s = state
    n = late_n = 0
    steady: list[float] = []
    for a in sorted(arrivals, key=lambda a: a.received_at):
        n += 1
        at = a.at
        if a.lag_s <= STEADY_FACTOR * s.max_delay_s:
            steady.append(a.lag_s)
        s = replace(
            s,
            reported_up_to=_max(s.reported_up_to, at),
            last_arrival_at=_max(s.last_arrival_at, a.received_at),
        )
        if a.lag_s <= s.max_delay_s:
            s = replace(s, on_time_up_to=_max(s.on_time_up_to, at))
            continue
        late_n += 1
        start = s.late_window_at
        if start is None or a.received_at >= start + window:
            # a new window; the one before it still counts while it is within a window
            keep = start is not None and a.received_at < start + 2 * window
            s = replace(
                s,
                late_window_at=a.received_at,
                late_prev_floor=s.late_floor if keep else None,
                late_floor=at,
            )
        else:
            s = replace(s, late_floor=_min(s.late_floor, at))
        s = replace(s, late_arrival_at=_max(s.late_arrival_at, a.received_at))
    return replace(s, hops=s.hops + n, late_hops=s.late_hops + late_n), steady


def catching_up(state: StreamState, wall: datetime, limits: Limits) -> bool:
    """Whether late hops are still arriving (the newest within the late window)."""
    last = state.late_arrival_at
    return last is not None and last > wall - timedelta(seconds=limits.late_window_s)


def watermark(state: StreamState, wall: datetime, limits: Limits) -> datetime | None:
    """The business time up to which the stream's telemetry is complete, as of ``wall``
    (None before it reported anything)."""
    skew = timedelta(seconds=state.skew_s)
    if catching_up(state, wall, limits):
        floor = state.late_floor
        start = state.late_window_at
        if start is not None and wall - timedelta(seconds=limits.late_window_s) < start:
            # the last late window reaches back into the one before
            floor = _min(floor, state.late_prev_floor)
        on_time = state.on_time_up_to - skew if state.on_time_up_to else None
        return _min(floor, on_time)
    if state.reported_up_to is None:
        return None
    return state.reported_up_to - skew


def silent(state: StreamState | None, wall: datetime) -> bool:
    """Whether the stream has said nothing for longer than its maximum delay (or never
    said anything)."""
    if state is None or state.last_arrival_at is None:
        return True
    return (wall - state.last_arrival_at).total_seconds() > state.max_delay_s


def measure(lags: Sketch, limits: Limits, configured_s: float | None = None) -> tuple[float, float]:
    """(maximum delay, skew) from a sketch of recent steady arrival lags (``record``).

    The maximum delay is ``configured_s`` when set, else the 99th percentile of the lags
    within the ceiling, held between the floor and the ceiling. The skew is the 99th
    percentile of the lags within the maximum delay, at least the minimum skew and at
    most the maximum delay.
    """
    delay = configured_s if configured_s is not None else _p99_within(lags, limits.ceiling_s)
    if configured_s is None:
        delay = min(max(delay or 0.0, limits.floor_s), limits.ceiling_s)
    assert delay is not None
    skew = _p99_within(lags, delay) or 0.0
    return delay, min(max(skew, limits.min_skew_s), max(delay, limits.min_skew_s))


def _p99_within(lags: Sketch, limit: float) -> float | None:
    """The 99th percentile of the lags at most ``limit`` (those are the lowest values, so
    it is the overall quantile at 0.99 of their share)."""
    share = lags.fraction_at_most(limit)
    if not share:
        return None
    return lags.quantile(0.99 * share)
