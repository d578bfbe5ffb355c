"""Status events as CloudEvents, through ``tracing.instrument.EventEmitter``.

:class:`EventSender` keeps one emitter per source and posts their pending events in
batches from a small thread pool, at most ``max_in_flight`` batches at once: when a
source has ``batch_size`` events waiting, and at least every ``linger_s`` wall seconds
(:meth:`EventSender.tick`; the export batching of :mod:`observatory.simulator.telemetry`).
Past :meth:`EventSender.close`'s deadline a batch is not retried again (a waiting retry
wakes and gives up), so the process exits without a pool thread still retrying against a
server that stopped too (docs/scaling.md, "Stopping").
What the server accepted, took as duplicates or rejected is counted in
:class:`~.shared.Stats` (``events``), never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from observatory.simulator.cases import LOCATION, QUANTITY, SKU
from observatory.simulator.entities import Step
from observatory.simulator.transport.shared import Stamp, Stats, attribute_values
from observatory.simulator.truth import SNAPSHOT
from tracing.instrument import EmitError, EventEmitter

log = logging.getLogger(__name__)


class EventSender:
    """Status events through ``EventEmitter``s, flushed in batches by a thread pool."""

    def __init__(
        self,
        url: str,
        token: str,
        stats: Stats,
        *,
        batch_size: int = 200,
        workers: int = 3,
        max_in_flight: int = 8,
        linger_s: float = 0.5,
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.token = token
        self.stats = stats
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.timeout = timeout
        self._emitters: dict[str, EventEmitter] = {}
        self._last_flush: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim-events")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._count_lock = threading.Lock()
        #: ids of the inventory snapshots sent: the server accepts them, but they are no hops
        self._snapshot_ids: set[str] = set()
        self._in_flight = 0
        #: set at the close's deadline: the emitters' waiting retries wake at once
        self._closing = threading.Event()

    def _emitter(self, source: str) -> EventEmitter:
        emitter = self._emitters.get(source)
        if emitter is None:
            # batch_size: never post from emit(); this sender decides when to flush
            emitter = EventEmitter(
                self.url,
                self.token,
                source,
                batch_size=10**9,
                timeout=self.timeout,
                sleep=self._closing.wait,
            )
            self._emitters[source] = emitter
            self._last_flush[source] = time.monotonic()
        return emitter

    def backlog(self) -> int:
        return self._in_flight * self.batch_size + sum(e.pending for e in self._emitters.values())

    def send(self, step: Step, stamp: Stamp) -> None:
        emitter = self._emitter(step.source)
        if step.event_type == SNAPSHOT:
            with self._count_lock:
                self._snapshot_ids.add(step.event_id)
            a = step.attributes
            emitter.snapshot(
                step.system,
                a[SKU],
                a[LOCATION],
                a[QUANTITY],
                as_of=stamp(step.at),
                id=step.event_id,
            )
        else:
            emitter.emit(
                step.event_type,
                step.system,
                step.keys,
                time=stamp(step.at),
                stage=step.stage,
                platform_status=step.platform_status,
                outcome=step.outcome,
                error=step.error,
                duration_ms=step.duration_s * 1000 if step.duration_s else None,
                channel=step.channel,
                store_id=step.store_id,
                amount=step.amount,
                currency=step.currency,
                attributes=attribute_values(step.attributes, stamp) or None,
                id=step.event_id,
            )
        if emitter.pending >= self.batch_size:
            self._flush(step.source)

    def tick(self) -> None:
        """Flush what has waited longer than ``linger_s`` (live mode's trickle)."""
        now = time.monotonic()
        for source, emitter in self._emitters.items():
            if emitter.pending and now - self._last_flush[source] >= self.linger_s:
                self._flush(source)

    def _flush(self, source: str) -> None:
        self._last_flush[source] = time.monotonic()
        self._slots.acquire()
        with self._count_lock:
            self._in_flight += 1
        future = self._pool.submit(self._post, self._emitters[source])
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()

    def _post(self, emitter: EventEmitter) -> None:
        try:
            answer = emitter.flush()
        except EmitError as exc:
            self.stats.add("requests", "events")
            status = f"HTTP {exc.status}" if exc.status else "connection error"
            self.stats.error("events", len(exc.events), status)
            log.warning("status events not delivered: %s", exc)
            return
        except Exception as exc:  # never let a worker die silently
            log.exception("status events not delivered")
            self.stats.error("events", 0, type(exc).__name__)
            return
        self.stats.add("requests", "events")
        if not isinstance(answer, dict):
            return
        accepted = [a.get("id") for a in answer.get("accepted", []) if isinstance(a, dict)]
        with self._count_lock:
            snapshots = sum(1 for i in accepted if i in self._snapshot_ids)
        self.stats.add("sent", "events", len(accepted) - snapshots)
        self.stats.add("snapshots", "events", snapshots)
        duplicates = len(answer.get("duplicates", []))
        self.stats.add("sent", "events", duplicates)
        self.stats.add("duplicates", "events", duplicates)
        rejected = answer.get("rejected", [])
        if rejected:
            self.stats.add("rejected", "events", len(rejected))
            self.stats.error("events", len(rejected), f"rejected: {rejected[0].get('reason')}")

    def close(self, timeout: float) -> None:
        for source, emitter in self._emitters.items():
            if emitter.pending:
                self._flush(source)
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        # a batch still retrying (the server stopped too) tries once more and gives up:
        # its events count as not delivered, and no pool thread outlives the run
        for emitter in self._emitters.values():
            emitter.max_retries = 0
        self._closing.set()
        self._pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        for emitter in self._emitters.values():
            lost = emitter.pending
            if lost:
                self.stats.error("events", lost, "not sent before the end")
            emitter._session.close()
