"""One health model per system, for ``GET /api/v1/systems`` and the systems pages.

A system's status comes, worst first, from:

* ``silent``: triage holds a ``silence`` exception for it (it stopped reporting while
  orders wait on it), a ``silence`` alert about it is firing, or it sent nothing for 30
  minutes while others did;
* ``failing``: a critical alert about it is firing, or a fifth or more of its hops of the
  last 15 minutes failed;
* ``degraded``: another alert about it is firing, a twentieth or more of its hops failed,
  a tenth or more of them were retries, or its telemetry runs behind: the watermark
  further behind now than its maximum delay, or old data still arriving (it is catching
  up);
* ``ok`` otherwise.

``systems()`` is the one place that decides it: the ops dashboard's cards and flow nodes,
``/systems/``, ``/systems/<system>/`` and ``GET /api/v1/systems`` all show its answer.
Each status names its reasons, each with a link to what caused it (the firing alert, the
silence exception, the failed hops). The watermark, arrival lags and maximum delay are the
hop store's (``hops.streams``; docs/watermarks.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from observatory.alerts.models import FIRING, Alert
from observatory.dashboards import series
from observatory.hops.queries import Lags, Mark, stream_lags, stream_marks, system_marks
from observatory.triage.models import FAILED_HOP, SILENCE, UNRESOLVED, Issue

OK = "ok"
DEGRADED = "degraded"
FAILING = "failing"
SILENT = "silent"
_RANK = {OK: 0, DEGRADED: 1, FAILING: 2, SILENT: 3}
#: The colour each status is drawn in, everywhere (cards, flow nodes, badges).
COLOURS = {OK: "ok", DEGRADED: "amber", FAILING: "red", SILENT: "red"}
#: Retried share of a system's recent hops (with at least ``MIN_RETRIES`` retries) that
#: makes it degraded: it gets its work through, but only on a second try.
RETRY_RATE = 0.10
MIN_RETRIES = 3


@dataclass
class Reason:
    status: str
    words: str
    #: what to open for it: an alert or exception id
    alert_id: int | None = None
    exception_id: int | None = None
    #: the page that shows the cause: the alert, the silence exception, the failed hops
    url: str = ""


@dataclass
class Store:
    store_id: str
    watermark: datetime | None
    behind_s: float | None
    last_hop_at: datetime | None
    arrival_lag_p95_s: float | None
    catching_up: bool
    silent: bool


@dataclass
class Health:
    system: str
    status: str = OK
    reasons: list[Reason] = field(default_factory=list)
    watermark: datetime | None = None
    behind_s: float | None = None
    max_delay_s: float | None = None
    catching_up: bool = False
    arrival_lag_p50_s: float | None = None
    arrival_lag_p95_s: float | None = None
    late_hops: int = 0
    last_hop_at: datetime | None = None
    error_rate: float | None = None
    retry_rate: float | None = None
    hops_15m: int = 0
    firing_alerts: list[int] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)

    def add(self, reason: Reason) -> None:
        self.reasons.append(reason)
        if _RANK[reason.status] > _RANK[self.status]:
            self.status = reason.status

    @property
    def words(self) -> str:
        """The reasons for the status, or what is fine."""
        worst = [r.words for r in self.worst]
        return "; ".join(worst) if worst else "reporting on time"

    @property
    def worst(self) -> list[Reason]:
        """The reasons that make the status (the lesser ones are listed too, elsewhere)."""
        return [r for r in self.reasons if r.status == self.status]

    @property
    def colour(self) -> str:
        return COLOURS[self.status]

    @property
    def url(self) -> str:
        """Where the status's cause is shown: its first worst reason's page, else the
        system's own page."""
        for reason in self.worst:
            if reason.url:
                return reason.url
        return _system_url(self.system)


def systems(
    at: datetime,
    *,
    only: str | None = None,
    tiles: Sequence[series.Tile] | None = None,
    lags: Mapping[tuple[str, str], Lags] | None = None,
) -> list[Health]:
    """Every system that ever reported (or ``only`` that one), as of ``at``. A fixed
    number of queries; ``tiles`` and ``lags``, when the caller has them already, save
    theirs."""
    every = stream_marks(at)
    marks = system_marks(at, every)
    by_tile = {t.system: t for t in (series.system_tiles(at) if tiles is None else tiles)}
    names = sorted(set(marks) | {s for s, t in by_tile.items() if t.hops or t.last_at})
    if only is not None:
        names = [n for n in names if n == only]
    lags = stream_lags(at, system=only) if lags is None else lags
    store_marks: dict[str, list[Mark]] = defaultdict(list)
    for m in every:
        if m.store_id:
            store_marks[m.system].append(m)
    firing = list(
        Alert.objects.filter(state=FIRING)
        .select_related("rule")
        .only("id", "labels", "summary", "rule__severity", "rule__kind", "rule__name")
    )
    silences = {
        i.system: i
        for i in Issue.objects.filter(kind=SILENCE, state__in=UNRESOLVED).only(
            "id", "system", "summary"
        )
    }
    order = {s: i for i, s in enumerate(series.FLOW_SYSTEMS)}
    out = []
    for name in sorted(names, key=lambda s: (order.get(s, 99), s)):
        h = Health(name)
        mark = marks.get(name)
        tile = by_tile.get(name)
        if mark is not None:
            h.watermark = mark.watermark
            h.behind_s = mark.behind_s(at)
            h.max_delay_s = mark.max_delay_s
            h.catching_up = mark.catching_up
            h.late_hops = mark.late_hops
            h.last_hop_at = mark.last_arrival_at
        lag = _merged(lags, name)
        if lag is not None:
            h.arrival_lag_p50_s, h.arrival_lag_p95_s = lag.p50_s, lag.p95_s
        if tile is not None:
            h.error_rate = tile.error_rate
            h.retry_rate = tile.retry_rate
            h.hops_15m = tile.hops
            h.last_hop_at = h.last_hop_at or tile.last_at
        _judge(h, tile, mark, silences.get(name), firing)
        for m in sorted(store_marks.get(name, []), key=lambda m: m.store_id):
            store_lag = lags.get((name, m.store_id))
            h.stores.append(
                Store(
                    store_id=m.store_id,
                    watermark=m.watermark,
                    behind_s=m.behind_s(at),
                    last_hop_at=m.last_arrival_at,
                    arrival_lag_p95_s=store_lag.p95_s if store_lag else None,
                    catching_up=m.catching_up,
                    silent=m.silent,
                )
            )
        out.append(h)
    return out


def _merged(lags: Mapping[tuple[str, str], Lags], system: str) -> Lags | None:
    """The system's own stream, or the busiest of its stores' when it reports by store."""
    own = lags.get((system, ""))
    if own is not None:
        return own
    stores = [v for (s, _), v in lags.items() if s == system]
    return max(stores, key=lambda v: v.count) if stores else None


def _system_url(system: str) -> str:
    try:
        return reverse("system", args=[system])
    except NoReverseMatch:
        return reverse("systems")


def _exceptions_url(kind: str, system: str) -> str:
    return reverse("dashboards:exceptions") + "?" + urlencode({"kind": kind, "system": system})


def _judge(
    h: Health,
    tile: series.Tile | None,
    mark: Mark | None,
    silence: Issue | None,
    firing: list[Alert],
) -> None:
    if silence is not None:
        h.add(
            Reason(
                SILENT,
                silence.summary,
                exception_id=silence.id,
                url=_exceptions_url(SILENCE, h.system),
            )
        )
    for alert in firing:
        if (alert.labels or {}).get("system") != h.system:
            continue
        h.firing_alerts.append(alert.id)
        if alert.rule.kind == "silence":
            status = SILENT
        elif alert.rule.severity == "critical":
            status = FAILING
        else:
            status = DEGRADED
        h.add(
            Reason(
                status,
                f"{alert.rule.name}: {alert.summary}",
                alert_id=alert.id,
                url=reverse("alerts:alert", args=[alert.id]),
            )
        )
    if tile is not None and tile.status in ("red", "amber"):
        failing = tile.status == "red" and "failed" in tile.reason
        silent = "silent" in tile.reason
        status = SILENT if silent else FAILING if failing else DEGRADED
        url = _exceptions_url(FAILED_HOP, h.system) if "failed" in tile.reason else ""
        h.add(Reason(status, f"last 15 minutes: {tile.reason}", url=url))
    if tile is not None and tile.retries >= MIN_RETRIES and (tile.retry_rate or 0) >= RETRY_RATE:
        h.add(
            Reason(
                DEGRADED,
                f"last 15 minutes: {tile.retry_rate:.0%} of its hops were retries",
                url=_system_url(h.system),
            )
        )
    if mark is not None and mark.catching_up:
        h.add(Reason(DEGRADED, "old telemetry still arriving: catching up"))
    elif (
        mark is not None
        and h.behind_s is not None
        and h.hops_15m
        and h.behind_s > mark.max_delay_s + mark.skew_s
    ):
        h.add(
            Reason(
                DEGRADED,
                f"reported up to {int(h.behind_s)} s ago, more than its "
                f"{int(mark.max_delay_s)} s maximum delay",
            )
        )
