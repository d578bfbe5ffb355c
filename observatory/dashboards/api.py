"""``GET /api/v1/systems``: every system's health, watermark and arrival lag."""

from __future__ import annotations

from dataclasses import asdict

from django.http import HttpRequest
from ninja import Router
from ninja.errors import HttpError
from ninja.params.functions import Path  # typed: a default, not an annotation

from observatory.dashboards import health
from observatory.dashboards.schema import SystemOut, SystemsOut
from observatory.lib.answers import answers
from observatory.lib.clock import now
from observatory.lib.params import NO_NUL

router = Router(tags=["systems"])


def summary(h: health.Health) -> str:
    """``erp: reported up to 14:02:11, 3 s behind now; arrival lag p95 4 s``."""
    if h.watermark is None:
        head = f"{h.system}: nothing reported yet"
    else:
        head = (
            f"{h.system}: reported up to {h.watermark:%Y-%m-%d %H:%M:%S} UTC, "
            f"{_secs(h.behind_s)} behind now"
        )
    if h.arrival_lag_p95_s is not None:
        head += f"; arrival lag p95 {_secs(h.arrival_lag_p95_s)}"
    return head


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    s = max(0, round(value))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def system_out(h: health.Health) -> SystemOut:
    data = asdict(h)
    return SystemOut(**data, summary=summary(h))


@router.get(
    "/systems", response=answers({200: SystemsOut}), summary="Every system's health and watermark"
)
def list_systems(request: HttpRequest) -> SystemsOut:
    at = now()
    return SystemsOut(at=at, systems=[system_out(h) for h in health.systems(at)])


@router.get(
    "/systems/{system}",
    response=answers({200: SystemOut}, 404),
    summary="One system's health and watermark",
)
def get_system(
    request: HttpRequest, system: str = Path(..., min_length=1, max_length=64, pattern=NO_NUL)
) -> SystemOut:
    found = health.systems(now(), only=system)
    if not found:
        raise HttpError(404, f"system: no hop from {system!r}")
    return system_out(found[0])
