"""The alert state machine on plain values and a fake clock (no database)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from observatory.alerts.evaluate import (
    FIRING,
    PENDING,
    RESOLVED,
    AlertState,
    Finding,
    RuleSpec,
    SilenceSpec,
    StepResult,
    alert_labels,
    compare,
    fingerprint,
    step,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class Machine:
    """Drives ``step`` like the evaluator does: keeps the unresolved alerts between
    evaluations, collects the events, and moves a fake clock."""

    def __init__(self, rules: Sequence[RuleSpec], silences: Sequence[SilenceSpec] = ()) -> None:
        self.rules = list(rules)
        self.silences = list(silences)
        self.now = T0
        self.alerts: dict[str, AlertState] = {}
        self.history: list[AlertState] = []
        self.events: list[tuple[float, str, str]] = []

    def tick(self, findings: Iterable[Finding], advance_s: float = 15) -> StepResult:
        result = step(self.now, self.rules, list(findings), self.alerts.values(), self.silences)
        for a in result.alerts:
            if a.state == RESOLVED:
                self.alerts.pop(a.fingerprint, None)
                self.history.append(a)
            else:
                self.alerts[a.fingerprint] = a
        offset = (self.now - T0).total_seconds()
        self.events += [(offset, e.kind, e.fingerprint) for e in result.events]
        self.now += timedelta(seconds=advance_s)
        return result

    def kinds(self, fp: str | None = None) -> list[str]:
        return [k for _, k, f in self.events if fp is None or f == fp]

    def acknowledge(self, fp: str) -> None:
        from dataclasses import replace

        self.alerts[fp] = replace(self.alerts[fp], acknowledged_at=self.now)


ERP_ERRORS = RuleSpec(1, "ERP error rate", "error_rate", "critical", for_s=0, repeat_s=3600)
STUCK = RuleSpec(2, "Web orders stuck", "stuck", "critical", for_s=0, repeat_s=3600)
SLOW = RuleSpec(3, "Inventory lag", "kpi", "warning", for_s=60, repeat_s=600)


def erp_errors(rate: float = 0.3) -> Finding:
    return Finding(1, {"system": "erp"}, rate, f"erp error rate {rate}")


def stuck(n: int = 3, system: str = "erp") -> Finding:
    return Finding(
        2, {"system": system, "stage": "posted"}, float(n), f"{n} orders stuck", {"orders": n}
    )


def lag(value: float = 400) -> Finding:
    return Finding(3, {"kpi": "inventory_sync_lag"}, value, f"p95 {value}")


FP_ERP = fingerprint(1, {"system": "erp"})
FP_STUCK = fingerprint(2, {"system": "erp", "stage": "posted"})
FP_LAG = fingerprint(3, {"kpi": "inventory_sync_lag"})


def test_pending_then_firing_after_for() -> None:
    m = Machine([SLOW])
    first = m.tick([lag()])
    assert [a.state for a in first.alerts] == [PENDING]
    assert first.events == []
    m.tick([lag()])  # 15 s
    m.tick([lag()])  # 30 s
    m.tick([lag()])  # 45 s
    assert m.alerts[FP_LAG].state == PENDING and m.kinds() == []
    m.tick([lag()])  # 60 s: true for for_s
    alert = m.alerts[FP_LAG]
    assert alert.state == FIRING
    assert alert.fired_at == T0 + timedelta(seconds=60)
    assert alert.started_at == T0
    assert m.events == [(60.0, "firing", FP_LAG)]


def test_for_zero_fires_at_once_and_labels_follow_the_contract() -> None:
    m = Machine([ERP_ERRORS])
    m.tick([erp_errors()])
    alert = m.alerts[FP_ERP]
    assert alert.state == FIRING and m.kinds() == ["firing"]
    assert alert.labels == {
        "rule": "ERP error rate",
        "kind": "error_rate",
        "severity": "critical",
        "system": "erp",
    }


def test_dedupe_by_fingerprint_one_alert_whatever_the_number_of_evaluations() -> None:
    m = Machine([ERP_ERRORS])
    for rate in (0.3, 0.4, 0.5, 0.6):
        m.tick([erp_errors(rate)])
    assert list(m.alerts) == [FP_ERP]
    assert m.kinds() == ["firing"]
    assert m.alerts[FP_ERP].value == 0.6  # the figures follow the latest evaluation


def test_repeat_after_repeat_s_and_acknowledge_stops_it() -> None:
    rule = RuleSpec(1, "ERP error rate", "error_rate", "critical", repeat_s=60)
    m = Machine([rule])
    for _ in range(9):  # 0..120 s
        m.tick([erp_errors()])
    assert [(t, k) for t, k, _ in m.events] == [
        (0.0, "firing"),
        (60.0, "repeat"),
        (120.0, "repeat"),
    ]
    m.acknowledge(FP_ERP)
    for _ in range(12):
        m.tick([erp_errors()])
    assert m.kinds() == ["firing", "repeat", "repeat"]
    m.tick([])
    assert m.kinds()[-1] == "resolved"  # an acknowledged alert still announces its end


def test_resolution_is_announced_once_and_a_new_occurrence_is_a_new_alert() -> None:
    m = Machine([ERP_ERRORS])
    m.tick([erp_errors()])
    m.tick([])
    assert m.kinds() == ["firing", "resolved"]
    resolved = m.history[-1]
    assert resolved.state == RESOLVED and resolved.resolved_at == T0 + timedelta(seconds=15)
    m.tick([])
    assert m.kinds() == ["firing", "resolved"]
    m.tick([erp_errors()])
    assert m.kinds() == ["firing", "resolved", "firing"]
    assert m.alerts[FP_ERP].started_at == T0 + timedelta(seconds=45)


def test_flapping_below_for_never_notifies() -> None:
    m = Machine([SLOW])
    for i in range(40):
        m.tick([lag()] if i % 3 != 2 else [])  # true 30 s, false 15 s, ...
    assert m.kinds() == []
    assert all(a.fired_at is None for a in m.history)


def test_keep_firing_damps_flapping_after_firing() -> None:
    rule = RuleSpec(1, "ERP error rate", "error_rate", "critical", keep_firing_s=60)
    m = Machine([rule])
    for i in range(20):
        m.tick([erp_errors()] if i % 2 == 0 else [])
    assert m.kinds() == ["firing"]
    for _ in range(5):
        m.tick([])
    assert m.kinds() == ["firing", "resolved"]


def test_pending_alert_that_clears_resolves_silently() -> None:
    m = Machine([SLOW])
    m.tick([lag()])
    m.tick([])
    assert m.kinds() == [] and m.alerts == {}
    assert m.history[-1].state == RESOLVED and m.history[-1].fired_at is None


def test_an_alert_whose_rule_is_gone_resolves() -> None:
    m = Machine([ERP_ERRORS])
    m.tick([erp_errors()])
    m.rules = []
    m.tick([erp_errors()])
    assert m.kinds() == ["firing", "resolved"]


def test_silence_mutes_then_expiry_announces_what_still_fires() -> None:
    silence = SilenceSpec(
        7, {"system": "erp"}, T0 + timedelta(seconds=10), T0 + timedelta(seconds=100)
    )
    m = Machine([ERP_ERRORS, STUCK], [silence])
    m.tick([])  # 0 s: nothing
    m.tick([erp_errors()])  # 15 s: silenced
    assert m.alerts[FP_ERP].silenced_by == 7 and m.kinds() == []
    for _ in range(5):  # up to 90 s, still inside the silence
        m.tick([erp_errors()])
    assert m.kinds() == []
    m.tick([erp_errors()])  # 105 s: the silence expired
    assert m.alerts[FP_ERP].silenced_by is None
    assert m.kinds() == ["firing"]


def test_silence_only_matches_every_matcher() -> None:
    other = SilenceSpec(8, {"system": "erp", "severity": "warning"}, T0, T0 + timedelta(hours=1))
    m = Machine([ERP_ERRORS], [other])
    m.tick([erp_errors()])
    assert m.kinds() == ["firing"]


def test_silence_that_starts_later_does_not_mute_yet() -> None:
    later = SilenceSpec(9, {"system": "erp"}, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert not later.active(T0) and later.active(T0 + timedelta(hours=1))
    m = Machine([ERP_ERRORS], [later])
    m.tick([erp_errors()])
    assert m.kinds() == ["firing"]


def test_resolution_while_silenced_is_not_announced() -> None:
    m = Machine([ERP_ERRORS])
    m.tick([erp_errors()])
    m.silences = [SilenceSpec(1, {"rule": "ERP error rate"}, T0, T0 + timedelta(hours=1))]
    m.tick([erp_errors()])
    m.tick([])
    assert m.kinds() == ["firing"]


def test_system_alert_holds_back_stuck_alerts_and_releases_what_is_still_true() -> None:
    m = Machine([ERP_ERRORS, STUCK])
    m.tick([erp_errors()])  # the ERP fails first
    assert m.kinds() == ["firing"]
    m.tick([erp_errors(), stuck(3)])  # orders pass their SLA: held back inside it
    assert m.alerts[FP_STUCK].inhibited_by == FP_ERP
    assert m.alerts[FP_ERP].held == (FP_STUCK,)
    assert m.events[-1] == (15.0, "update", FP_ERP)  # one update saying orders are stuck
    for n in range(4, 200, 20):  # the backlog grows: no more messages
        m.tick([erp_errors(), stuck(n)])
    assert m.kinds() == ["firing", "update"]
    m.tick([stuck(5)])  # the ERP recovers, five orders still stuck
    assert m.kinds() == ["firing", "update", "resolved", "firing"]
    assert m.events[-1][2] == FP_STUCK  # the stuck alert comes back on its own
    assert m.alerts[FP_STUCK].inhibited_by is None
    m.tick([])
    assert m.kinds() == ["firing", "update", "resolved", "firing", "resolved"]


def test_backlog_drained_inside_the_incident_means_two_messages() -> None:
    m = Machine([ERP_ERRORS, STUCK])
    m.tick([erp_errors(), stuck(3)])  # both at once: the stuck alert never speaks
    assert m.kinds() == ["firing"]
    assert m.alerts[FP_STUCK].inhibited_by == FP_ERP
    m.tick([erp_errors(), stuck(30)])
    m.tick([erp_errors()])  # drained while the ERP alert still fires: silently resolved
    m.tick([])
    assert m.kinds() == ["firing", "resolved"]
    assert all(f == FP_ERP for _, _, f in m.events)


def test_pending_system_alert_already_holds_back() -> None:
    slow_erp = RuleSpec(1, "ERP error rate", "error_rate", "critical", for_s=30)
    m = Machine([slow_erp, STUCK])
    m.tick([erp_errors(), stuck(3)])
    assert m.alerts[FP_ERP].state == PENDING
    assert m.alerts[FP_STUCK].inhibited_by == FP_ERP and m.kinds() == []
    m.tick([erp_errors(), stuck(3)])
    m.tick([erp_errors(), stuck(3)])  # 30 s: fires, with the stuck orders inside
    assert m.kinds() == ["firing"]
    assert m.alerts[FP_ERP].held == (FP_STUCK,)


def test_stuck_alerts_of_another_system_are_not_held_back() -> None:
    m = Machine([ERP_ERRORS, STUCK])
    m.tick([erp_errors(), stuck(2, system="wms")])
    fp_wms = fingerprint(2, {"system": "wms", "stage": "posted"})
    assert m.alerts[fp_wms].inhibited_by is None
    assert sorted(m.kinds()) == ["firing", "firing"]


def test_stuck_alert_already_announced_then_held_resolves_on_its_own() -> None:
    m = Machine([ERP_ERRORS, STUCK])
    m.tick([stuck(1)])
    m.tick([stuck(1), erp_errors()])
    assert m.alerts[FP_STUCK].inhibited_by == FP_ERP
    m.tick([erp_errors()])
    # it was announced, so its resolution is too; the ERP alert says it held it
    assert m.kinds(FP_STUCK) == ["firing", "resolved"]


def test_compare() -> None:
    assert compare(2, ">", 1) and not compare(1, ">", 1)
    assert compare(1, ">=", 1) and compare(0, "<", 1) and compare(1, "<=", 1)


def test_alert_labels_rule_labels_do_not_override_the_core_ones() -> None:
    rule = RuleSpec(1, "r", "stuck", "info", labels={"team": "erp", "severity": "x"})
    assert alert_labels(rule, {"system": "erp"}) == {
        "team": "erp",
        "rule": "r",
        "kind": "stuck",
        "severity": "info",
        "system": "erp",
    }


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.lists(st.booleans(), min_size=1, max_size=60),
    for_s=st.sampled_from([0, 15, 45]),
    repeat_s=st.sampled_from([30, 60, 3600]),
)
def test_properties_of_any_history(pattern: list[bool], for_s: int, repeat_s: int) -> None:
    """Whatever the condition does: at most one unresolved alert; events alternate
    firing ... resolved; a resolution only follows a firing; repeats are spaced."""
    rule = RuleSpec(1, "ERP error rate", "error_rate", "critical", for_s=for_s, repeat_s=repeat_s)
    m = Machine([rule])
    for true in pattern:
        m.tick([erp_errors()] if true else [])
        assert len(m.alerts) <= 1
    open_ = False
    last_note = None
    for t, kind, _ in m.events:
        if kind == "firing":
            assert not open_
            open_, last_note = True, t
        elif kind == "repeat":
            assert open_ and last_note is not None and t - last_note >= repeat_s
            last_note = t
        elif kind == "resolved":
            assert open_
            open_ = False
