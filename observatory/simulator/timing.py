"""Time in the simulation: business-hours curves, lognormal delays, the sim -> wall map.

Pure functions of their arguments (a ``random.Random`` is passed in, never created).
Every datetime is aware UTC; local business hours are computed with fixed offsets.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

#: Relative web-order intensity per local hour (lunch bump, evening peak, quiet night).
WEB_CURVE: Final = (
    0.30, 0.20, 0.14, 0.10, 0.10, 0.14, 0.30, 0.55, 0.85, 1.05, 1.15, 1.25,
    1.35, 1.30, 1.20, 1.15, 1.15, 1.25, 1.45, 1.65, 1.75, 1.55, 1.10, 0.60,
)  # fmt: skip
#: POS sales per store-local hour: the shops open 10:00-21:00.
POS_CURVE: Final = (
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.70, 0.95,
    1.30, 1.45, 1.20, 1.10, 1.20, 1.45, 1.55, 1.30, 0.90, 0, 0, 0,
)  # fmt: skip
#: Marketplace orders: flatter, buyers in every time zone.
MARKETPLACE_CURVE: Final = (
    0.50, 0.40, 0.35, 0.30, 0.30, 0.35, 0.50, 0.70, 0.90, 1.00, 1.05, 1.10,
    1.15, 1.15, 1.10, 1.05, 1.05, 1.10, 1.20, 1.25, 1.25, 1.10, 0.85, 0.65,
)  # fmt: skip
#: Saturday and Sunday: more web and much more store traffic.
WEEKEND_FACTOR: Final = {"web": 1.15, "pos": 1.45, "marketplace": 1.10}
#: Warehouse shifts (local time): picking and shipping only happen in them.
WAREHOUSE_OPEN_H: Final = 6
WAREHOUSE_CLOSE_H: Final = 22


def lognormal(
    rng: random.Random, median_s: float, sigma: float, lo_s: float, hi_s: float
) -> timedelta:
    """A lognormal delay with the given median, clipped to ``[lo_s, hi_s]`` seconds."""
    value = median_s * math.exp(sigma * rng.gauss(0.0, 1.0))
    return timedelta(seconds=min(hi_s, max(lo_s, value)))


def local(moment: datetime, utc_offset_h: int) -> datetime:
    """The wall-clock time at a fixed UTC offset (still an aware datetime)."""
    return moment + timedelta(hours=utc_offset_h)


def curve_weight(channel: str, moment: datetime, utc_offset_h: int) -> float:
    """Relative order intensity of ``channel`` at ``moment`` (local hour and weekday)."""
    here = local(moment, utc_offset_h)
    curve = {"web": WEB_CURVE, "pos": POS_CURVE, "marketplace": MARKETPLACE_CURVE}[channel]
    weight = curve[here.hour]
    if here.weekday() >= 5:
        weight *= WEEKEND_FACTOR[channel]
    return weight


def is_open(moment: datetime, utc_offset_h: int, open_h: int, close_h: int) -> bool:
    return open_h <= local(moment, utc_offset_h).hour < close_h


def next_open(moment: datetime, utc_offset_h: int, open_h: int, close_h: int) -> datetime:
    """``moment`` if the site is open then, else the next opening time."""
    if is_open(moment, utc_offset_h, open_h, close_h):
        return moment
    here = local(moment, utc_offset_h)
    opening = here.replace(hour=open_h, minute=0, second=0, microsecond=0)
    if here.hour >= close_h:
        opening += timedelta(days=1)
    return opening - timedelta(hours=utc_offset_h)


def next_local_time(moment: datetime, utc_offset_h: int, hour: int, minute: int = 0) -> datetime:
    """The first ``hour:minute`` local time strictly after ``moment``."""
    here = local(moment, utc_offset_h)
    target = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= here:
        target += timedelta(days=1)
    return target - timedelta(hours=utc_offset_h)


def ceil_to(moment: datetime, minutes: int) -> datetime:
    """The first multiple of ``minutes`` past the hour at or after ``moment``."""
    step = minutes * 60
    base = moment.replace(minute=0, second=0, microsecond=0)
    elapsed = (moment - base).total_seconds()
    slots = math.ceil(elapsed / step)
    return base + timedelta(seconds=slots * step)


@dataclass(frozen=True, slots=True)
class TimeMap:
    """Maps simulated time onto the business time stamped on hops (and the wall clock).

    History (simulated times up to ``origin``, the moment the run started) keeps its
    timestamps. After ``origin`` simulated time runs ``speed`` times faster than the wall
    clock: a 60 s simulated delay becomes ``60 / speed`` real seconds, and hops carry the
    real time at which they are sent, so nothing is ever stamped in the future.
    """

    origin: datetime
    speed: float = 1.0

    def stamp(self, sim: datetime) -> datetime:
        if sim <= self.origin:
            return sim
        return self.origin + (sim - self.origin) / self.speed

    def to_sim(self, wall: datetime) -> datetime:
        if wall <= self.origin:
            return wall
        return self.origin + (wall - self.origin) * self.speed
