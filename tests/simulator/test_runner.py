"""The runner loop with a fake clock and fake senders: when it sends, when it stops."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from observatory.simulator.model import Plan, Simulation, Step
from observatory.simulator.runner import Runner
from observatory.simulator.scenarios import SCENARIOS
from observatory.simulator.timing import TimeMap
from observatory.simulator.transport import Stats
from observatory.simulator.truth import SNAPSHOT

START = datetime(2026, 3, 11, 15, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.slept = 0.0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += timedelta(seconds=max(seconds, 0.001))


class FakeSenders:
    def __init__(self, clock: FakeClock, interrupt_after: int | None = None) -> None:
        self.stats = Stats()
        self.clock = clock
        #: (step, its business time stamped, when it was sent)
        self.sent: list[tuple[Step, datetime, datetime]] = []
        self.closed = False
        self.interrupt_after = interrupt_after

    def send(self, step: Step, stamp: Callable[[datetime], datetime]) -> None:
        if self.interrupt_after is not None and len(self.sent) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.sent.append((step, stamp(step.at), self.clock.now))
        # an inventory snapshot is a delivery but no hop, as the events sender counts it
        self.stats.add("snapshots" if step.event_type == SNAPSHOT else "sent", step.via)

    def tick(self) -> None:
        pass

    def backlog(self) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> None:
        self.closed = True


def make(
    plan: Plan, speed: float = 1.0, truth: Path | None = None, **kw: object
) -> tuple[Runner, FakeSenders, FakeClock]:
    clock = FakeClock()
    senders = FakeSenders(clock, **kw)  # type: ignore[arg-type]
    runner = Runner(
        Simulation(plan, record_truth=truth is not None),
        senders,
        TimeMap(START, speed),
        now=clock,
        sleep=clock.sleep,
        monotonic=lambda: (clock.now - START).total_seconds(),
        truth_path=truth,
    )
    return runner, senders, clock


def test_history_only_sends_the_past_at_once_and_stops() -> None:
    plan = Plan(
        seed=1, start=START, scenario=SCENARIOS["normal"], history_days=1, history_orders=200
    )
    runner, senders, clock = make(plan)
    summary = runner.run()
    assert senders.closed and not summary.interrupted
    assert clock.slept == 0  # nothing waited for the wall clock
    assert all(stamped <= START for _, stamped, _ in senders.sent)
    assert summary.total_orders == 200
    assert summary.not_sent > 0  # deliveries and invoices still in the future
    assert summary.hops + summary.snapshots == len(senders.sent)
    assert re.fullmatch(r"simulated 200 orders, [\d,]+ hops, 0 send errors", summary.lines()[-1])


def test_live_orders_go_out_in_compressed_real_time_then_drain() -> None:
    plan = Plan(
        seed=2,
        start=START,
        scenario=SCENARIOS["normal"],
        live_rate=0.5,  # per simulated second: 5 orders a wall second at speed 10
        live_orders=30,
    )
    runner, senders, clock = make(plan, speed=10)
    summary = runner.run()
    assert summary.total_orders == 30
    stamp = runner.timemap.stamp
    for step, stamped, sent_at in senders.sent:
        assert stamped >= START
        # sent when the wall clock reached its delivery time (never early, at most a nap
        # late); telemetry delay puts that after its business time for some hops
        due = stamp(step.send_at)
        assert due >= stamped
        assert sent_at >= due - timedelta(milliseconds=1)
        assert sent_at - due < timedelta(seconds=0.3)
    last = runner.sim.last_arrival
    assert last is not None
    elapsed = (clock.now - START).total_seconds()
    expected = (last - START).total_seconds() / 10 + 90 / 10  # arrivals + drain, compressed
    assert abs(elapsed - expected) < 1
    posted = {
        s.ref
        for s, _, _ in senders.sent
        if s.stage == "posted" or s.platform_status == "Pending Fulfillment"
    }
    web = {s.ref for s, _, _ in senders.sent if s.operation == "orders/create"}
    assert web and web <= posted | {
        s.ref for s, _, _ in senders.sent if s.operation == "orders/cancelled"
    }


def test_duration_stops_new_orders() -> None:
    plan = Plan(seed=4, start=START, scenario=SCENARIOS["normal"], live_rate=2.0)
    clock = FakeClock()
    senders = FakeSenders(clock)
    runner = Runner(
        Simulation(plan),
        senders,
        TimeMap(START),
        now=clock,
        sleep=clock.sleep,
        duration_s=10,
        drain_s=5,
    )
    summary = runner.run()
    assert 5 <= summary.total_orders <= 40
    assert (clock.now - START).total_seconds() < 10 + 5 + 1


def test_ctrl_c_stops_cleanly_with_a_summary() -> None:
    plan = Plan(
        seed=5, start=START, scenario=SCENARIOS["chaos"], history_days=1, history_orders=200
    )
    runner, senders, _ = make(plan, interrupt_after=100)
    summary = runner.run()
    assert summary.interrupted and senders.closed
    assert summary.hops + summary.snapshots == 100
    assert "interrupted" in summary.lines()[0]
    assert summary.lines()[-1].startswith("simulated ")


def test_the_ground_truth_is_written_when_the_run_ends(tmp_path: Path) -> None:
    plan = Plan(
        seed=1, start=START, scenario=SCENARIOS["chaos"], history_days=1, history_orders=200
    )
    path = tmp_path / "truth.json"
    runner, _, _ = make(plan, truth=path)
    summary = runner.run()
    truth = json.loads(path.read_text())
    lines = summary.lines()
    assert lines[-2].startswith(f"ground truth: {path} (") and lines[-1].startswith("simulated ")
    assert any(line.startswith("telemetry delay: exports every 2 s") for line in lines)
    assert sum(1 for t in truth["transactions"] if t["kind"] == "order") == 200
    assert sum(d["deliveries"] for d in truth["deliveries"].values()) == summary.hops
    assert truth["end"] == truth["start"] == "2026-03-11T15:30:00Z"


def test_ctrl_c_writes_the_truth_of_what_was_sent(tmp_path: Path) -> None:
    plan = Plan(
        seed=5, start=START, scenario=SCENARIOS["chaos"], history_days=1, history_orders=200
    )
    path = tmp_path / "truth.json"
    runner, senders, _ = make(plan, truth=path, interrupt_after=100)
    summary = runner.run()
    assert summary.interrupted and summary.hops + summary.snapshots == 100
    truth = json.loads(path.read_text())
    assert sum(d["deliveries"] for d in truth["deliveries"].values()) == summary.hops
    sent = {(s.ref, s.at) for s, _, _ in senders.sent}
    for t in truth["transactions"]:
        for stage in t["stages"].values():
            if stage["delivered"]:
                assert (t["ref"], datetime.fromisoformat(stage["at"])) in sent or stage["batch"]


def test_a_truth_that_cannot_be_written_is_reported(tmp_path: Path) -> None:
    plan = Plan(
        seed=1, start=START, scenario=SCENARIOS["normal"], history_days=1, history_orders=20
    )
    path = tmp_path / "missing" / "truth.json"
    runner, _, _ = make(plan, truth=path)
    summary = runner.run()
    assert summary.truth_failed and summary.lines()[-2].startswith("ground truth not written")
