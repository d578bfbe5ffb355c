"""Plays a :class:`~observatory.simulator.model.Simulation` through the senders.

Live steps go out when the wall clock reaches them, simulated time running ``speed``
times faster after the start (see :class:`~observatory.simulator.timing.TimeMap`); the
history (everything due before the start) streams out as fast as the senders take it in
between, so a demo's live trickle starts at once while days of backfill are still on
their way. The clock and sleep are injected, so the loop is tested without waiting.

The run ends when the history is sent and there is no live phase; or, with a live
phase, ``drain`` simulated seconds after the last order arrived (long enough for it to
be validated and posted); or at Ctrl-C (SIGINT / SIGTERM), which stops at once, flushes
what was handed to the senders and still prints the summary. Given a ``truth_path``, it
then writes the run's ground truth there (:mod:`.truth`), interrupted or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from observatory.simulator.model import Simulation, Step
from observatory.simulator.timing import TimeMap
from observatory.simulator.transport import Stats
from observatory.simulator.truth import document_of, write

#: Steps handed out per turn of the loop.
CHUNK = 500
#: Hops handed to the senders and not yet delivered, above which the loop waits: enough to
#: keep every sender busy, small enough that a live hop never queues long behind history.
MAX_BACKLOG = 1_500
#: Longest nap between two turns of the live loop (keeps Ctrl-C and ticks responsive).
MAX_NAP_S = 0.25


class SenderLike(Protocol):
    stats: Stats

    def send(self, step: Step, stamp: Callable[[datetime], datetime]) -> None: ...

    def tick(self) -> None: ...

    def backlog(self) -> int: ...

    def close(self, timeout: float = ...) -> None: ...


class ProgressLike(Protocol):
    def update(self, n: float | None = ...) -> bool | None: ...

    def set_postfix_str(self, s: str = ..., refresh: bool = ...) -> None: ...

    def close(self) -> None: ...


@dataclass
class Summary:
    scenario: str
    seed: int
    orders: dict[str, int]
    counts: dict[str, int]
    faults: dict[str, int]
    sent: dict[str, int]
    failed: dict[str, int]
    requests: dict[str, int]
    duplicates: dict[str, int]
    reasons: dict[str, int]
    not_sent: int
    elapsed_s: float
    interrupted: bool
    #: live hops handed to the senders more than a second after they were due, and the
    #: worst delay: the run could not keep up with the asked rate
    live_late: int = 0
    live_max_delay_s: float = 0.0
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    #: how hops were delivered (one line), and where the ground truth went
    telemetry: str = ""
    truth: str = ""
    truth_failed: bool = False
    #: inventory snapshots the server accepted (deliveries, but no hops)
    snapshots: int = 0

    @property
    def total_orders(self) -> int:
        return sum(self.orders.values())

    @property
    def hops(self) -> int:
        return sum(self.sent.values())

    @property
    def errors(self) -> int:
        return sum(self.failed.values())

    def lines(self) -> list[str]:
        """The human summary; the last line is the result, alone (like every management command's)."""

        def tally(values: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(values.items()) if v) or "none"

        rate = self.total_orders / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"scenario {self.scenario}, seed {self.seed} (--seed {self.seed} replays it)"
            + (", interrupted" if self.interrupted else ""),
            f"orders by channel: {tally(self.orders)} "
            f"({self.total_orders:,} in {self.elapsed_s:.1f} s, {rate:.1f} orders/s)",
            f"also: {tally(self.counts)}",
        ]
        endpoints = sorted(set(self.sent) | set(self.failed) | set(self.requests))
        parts = []
        for endpoint in endpoints:
            part = f"{endpoint} {self.sent.get(endpoint, 0):,} in {self.requests.get(endpoint, 0):,} requests"
            if self.duplicates.get(endpoint):
                part += f" ({self.duplicates[endpoint]:,} answered as duplicates)"
            parts.append(part)
        out.append("hops sent by endpoint: " + ("; ".join(parts) or "none"))
        out.append(f"faults injected: {tally(self.faults)}")
        for name, (begin, end) in self.windows.items():
            out.append(
                f"  {name} window (business time): {begin:%Y-%m-%d %H:%M:%S} - {end:%H:%M:%S} UTC"
            )
        if self.telemetry:
            out.append(self.telemetry)
        if self.reasons:
            out.append("send errors: " + tally(self.reasons))
        else:
            out.append("send errors: none")
        if self.live_late:
            out.append(
                f"live hops sent more than 1 s late: {self.live_late:,} "
                f"(at worst {self.live_max_delay_s:.1f} s): the server or the machine "
                "could not keep up"
            )
        if self.not_sent:
            out.append(f"not sent: {self.not_sent:,} hops due after the end of the run")
        if self.snapshots:
            out.append(f"inventory snapshots sent: {self.snapshots:,}")
        if self.truth:
            out.append(self.truth)
        out.append(
            f"simulated {self.total_orders:,} orders, {self.hops:,} hops, "
            f"{self.errors:,} send errors"
        )
        return out


#: Seconds an interrupted run waits for its queued sends before it gives up on them.
INTERRUPTED_CLOSE_S = 2.0


class Runner:
    def __init__(
        self,
        sim: Simulation,
        senders: SenderLike,
        timemap: TimeMap,
        *,
        drain_s: float = 90.0,
        duration_s: float | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Any] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        progress: ProgressLike | None = None,
        close_timeout: float = 30.0,
        on_history_sent: Callable[[Stats, float], Any] | None = None,
        truth_path: str | Path | None = None,
    ) -> None:
        self.sim = sim
        self.senders = senders
        self.timemap = timemap
        self.drain = timedelta(seconds=drain_s)
        self.duration = None if duration_s is None else timedelta(seconds=duration_s)
        self._now = now
        self._sleep = sleep
        self._monotonic = monotonic
        self.progress = progress
        self.close_timeout = close_timeout
        self.on_history_sent = on_history_sent
        self.truth_path = None if truth_path is None else Path(truth_path)
        self._shown_orders = 0
        self._late = 0
        self._max_delay = 0.0
        self._last_postfix = 0.0
        self._started = 0.0

    def run(self) -> Summary:
        started = self._started = self._monotonic()
        interrupted = False
        try:
            self._loop()
        except KeyboardInterrupt:
            interrupted = True
            self.sim.stop_arrivals()
        finally:
            # stopped (Ctrl-C, or make run's supervisor): what is still queued gets a moment
            # only, since the server is likely stopping too (everything ends within 5 s)
            timeout = min(self.close_timeout, INTERRUPTED_CLOSE_S) if interrupted else None
            try:
                self.senders.close(timeout or self.close_timeout)
            except KeyboardInterrupt:
                interrupted = True
            if self.progress is not None:
                self._show_progress(force=True)
                self.progress.close()
        summary = self._summary(self._monotonic() - started, interrupted)
        if self.truth_path is not None:
            self._write_truth(summary, self.truth_path)
        return summary

    def _write_truth(self, summary: Summary, path: Path) -> None:
        try:
            document = document_of(self.sim, self.timemap.stamp)
            write(path, document)
        except (OSError, ValueError) as exc:
            summary.truth, summary.truth_failed = f"ground truth not written to {path}: {exc}", True
            return
        missed = sum(len(t["missed"]) for t in document["transactions"])
        summary.truth = (
            f"ground truth: {path} ({len(document['transactions']):,} transactions, "
            f"{missed:,} missed deadlines, as of {document['end']})"
        )

    def _loop(self) -> None:
        sim, stamp = self.sim, self.timemap.stamp
        origin = self.timemap.origin
        drain_until: datetime | None = None
        history_pending = True
        while True:
            wall = self._now()
            horizon = self.timemap.to_sim(wall)
            if self.duration is not None and wall >= origin + self.duration:
                sim.stop_arrivals()
            if drain_until is None and sim.arrivals_done:
                if sim.live:
                    drain_until = max(sim.last_arrival or origin, origin) + self.drain
                else:
                    drain_until = origin
            limit = horizon if drain_until is None else min(horizon, drain_until)
            batch = sim.pop_due(limit, CHUNK)
            for i, step in enumerate(batch):
                if step.live:
                    delay = (wall - stamp(step.send_at)).total_seconds()
                    if delay > 1.0:
                        self._late += 1
                        self._max_delay = max(self._max_delay, delay)
                try:
                    self.senders.send(step, stamp)
                except KeyboardInterrupt:
                    sim.not_sent(batch[i:])
                    raise
            self.senders.tick()
            self._show_progress()
            while self.senders.backlog() > MAX_BACKLOG:
                self._sleep(0.05)
            if history_pending and not sim.history_pending():
                history_pending = False
                if self.on_history_sent is not None and sim.live:
                    self.on_history_sent(self.senders.stats, self._monotonic() - self._started)
            if batch:
                continue
            upcoming = sim.next_time()
            if upcoming is None:
                return
            if drain_until is not None and (horizon >= drain_until or upcoming > drain_until):
                return
            wait = (stamp(upcoming) - self._now()).total_seconds()
            self._sleep(min(MAX_NAP_S, max(0.0, wait)))

    def _show_progress(self, force: bool = False) -> None:
        if self.progress is None:
            return
        orders = self.sim.orders
        if orders > self._shown_orders:
            self.progress.update(orders - self._shown_orders)
            self._shown_orders = orders
        moment = self._monotonic()
        if force or moment - self._last_postfix > 0.3:
            self._last_postfix = moment
            stats = self.senders.stats
            self.progress.set_postfix_str(
                f"{stats.hops_sent:,} hops, {stats.hops_failed:,} errors", refresh=False
            )

    def _telemetry_line(self) -> str:
        t = self.sim.plan.telemetry
        if not t.enabled:
            return "telemetry delay: none (--no-telemetry-delay)"
        parts = [f"exports every {t.export_delay_s:g} s"]
        if t.relay_every_s:
            parts.append(f"carrier events relayed every {t.relay_every_s:g} s")
        parts.append("ERP and WMS callbacks seconds late")
        retried = self.sim.delayed["shopify_retry"]
        parts.append(f"{retried:,} Shopify deliveries by retry")
        window = self.sim.delivery.offline
        if window is not None:
            begin, end = self.timemap.stamp(window.begin), self.timemap.stamp(window.end)
            parts.append(
                f"POS of {window.store_id} offline {begin:%Y-%m-%d %H:%M} - {end:%H:%M} UTC "
                f"({self.sim.delayed['offline_store']:,} sales uploaded at its end)"
            )
        return "telemetry delay: " + ", ".join(parts)

    def _summary(self, elapsed: float, interrupted: bool) -> Summary:
        stats = self.senders.stats
        stamp = self.timemap.stamp
        windows: dict[str, tuple[datetime, datetime]] = {}
        if self.sim.erp_outage:
            begin, end = self.sim.erp_outage
            windows["ERP outage"] = (stamp(begin), stamp(end))
        if self.sim.wms_silence:
            begin, end = self.sim.wms_silence
            windows["silent warehouse"] = (stamp(begin), stamp(end))
        return Summary(
            telemetry=self._telemetry_line(),
            scenario=self.sim.scenario.name,
            seed=self.sim.seed,
            orders=dict(self.sim.orders_by_channel),
            counts=dict(self.sim.counts),
            faults=dict(self.sim.faults),
            sent=dict(stats.sent),
            failed=dict(stats.failed),
            requests=dict(stats.requests),
            duplicates=dict(stats.duplicates),
            reasons=dict(stats.reasons),
            not_sent=self.sim.pending,
            elapsed_s=elapsed,
            interrupted=interrupted,
            live_late=self._late,
            live_max_delay_s=self._max_delay,
            windows=windows,
            snapshots=sum(stats.snapshots.values()),
        )
