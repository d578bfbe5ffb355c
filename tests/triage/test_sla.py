"""The pure SLA rules: which policy applies, reached or skipped, batch allowance, ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from observatory.triage import sla

T = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WEB = sla.Policy(1, "web", "order", "", "captured", "posted", 60)
POS = sla.Policy(2, "pos", "order", "pos", "captured", "posted", 3600)
DELIVERY = sla.Policy(3, "delivery", "order", "", "shipped", "delivered", 3 * 86400)
NIGHTLY = sla.Policy(4, "nightly", "order", "", "posted", "invoiced", 3600, batch_allowance_s=7200)
RETURNS = sla.Policy(5, "refund", "return", "", "refunded", "refund_settled", 86400)
ALL = [WEB, POS, DELIVERY, NIGHTLY, RETURNS]


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def test_channel_policy_wins_over_the_blank_one() -> None:
    assert sla.applicable(ALL, "order", "pos") == [POS, NIGHTLY, DELIVERY]
    assert sla.applicable(ALL, "order", "web") == [WEB, NIGHTLY, DELIVERY]
    assert sla.applicable(ALL, "return", "web") == [RETURNS]


def test_seconds_flow_pending_overdue_late_on_time() -> None:
    captured = {"captured": sla.Reached(at(0))}
    assert [s.status for s in sla.evaluate(ALL, "order", "web", captured, at(59))] == ["pending"]
    (late,) = sla.overdue(ALL, "order", "web", captured, at(61))
    assert late.stage == "posted" and late.deadline_at == at(60)
    assert late.late_by_s(at(61)) == 1
    # a POS sale has an hour
    assert sla.overdue(ALL, "order", "pos", captured, at(61)) == []
    on_time = {**captured, "posted": sla.Reached(at(60))}
    statuses = sla.evaluate(ALL, "order", "web", on_time, at(999))
    assert [(s.stage, s.status) for s in statuses] == [
        ("posted", "on_time"),
        ("invoiced", "pending"),  # posted starts the next question
    ]
    late_post = {**captured, "posted": sla.Reached(at(61))}
    judged, _ = sla.evaluate(ALL, "order", "web", late_post, at(61))
    assert judged.status == "late" and judged.reached_at == at(61)


def test_days_flow() -> None:
    shipped = {"shipped": sla.Reached(at(0))}
    assert sla.overdue(ALL, "order", "web", shipped, at(2 * 86400)) == []
    (late,) = sla.overdue(ALL, "order", "web", shipped, at(3 * 86400 + 1))
    assert late.stage == "delivered"


def test_a_later_stage_satisfies_a_skipped_one_and_cancel_ends_the_question() -> None:
    skipped = {"captured": sla.Reached(at(0)), "shipped": sla.Reached(at(30))}
    statuses = {s.stage: s for s in sla.evaluate(ALL, "order", "web", skipped, at(10_000))}
    assert statuses["posted"].status == "on_time"
    assert statuses["posted"].reached_stage == "shipped"
    cancelled = {"captured": sla.Reached(at(0)), "cancelled": sla.Reached(at(10))}
    (moot,) = sla.evaluate(ALL, "order", "web", cancelled, at(10_000))
    assert moot.status == "cancelled"
    assert sla.overdue(ALL, "order", "web", cancelled, at(10_000)) == []


def test_batch_allowance() -> None:
    posted = {"posted": sla.Reached(at(0))}
    # not reached: overdue only past deadline + allowance
    assert sla.overdue([NIGHTLY], "order", "web", posted, at(3601)) == []
    assert sla.overdue([NIGHTLY], "order", "web", posted, at(3 * 3600 + 1))
    # reached by a batch hop within the allowance: on time; by a live hop: late
    by_batch = {**posted, "invoiced": sla.Reached(at(2 * 3600), batch=True)}
    by_hop = {**posted, "invoiced": sla.Reached(at(2 * 3600))}
    assert sla.evaluate([NIGHTLY], "order", "web", by_batch, at(0))[0].status == "on_time"
    assert sla.evaluate([NIGHTLY], "order", "web", by_hop, at(0))[0].status == "late"


def test_by_stage_keys_the_due_stage_and_the_one_that_satisfied_it() -> None:
    stages = {"captured": sla.Reached(at(0)), "released": sla.Reached(at(90))}
    per_stage = sla.by_stage(sla.evaluate(ALL, "order", "web", stages, at(100)))
    assert per_stage["posted"].status == "late"
    assert per_stage["released"] is per_stage["posted"]


def test_age_buckets() -> None:
    assert sla.age_bucket(0) == "under_1h"
    assert sla.age_bucket(3599) == "under_1h"
    assert sla.age_bucket(3600) == "h1_to_4"
    assert sla.age_bucket(5 * 3600) == "h4_to_24"
    assert sla.age_bucket(30 * 3600) == "over_24h"


@given(
    deadline=st.integers(0, 10 * 86400),
    allowance=st.integers(0, 86400),
    elapsed=st.integers(-86400, 20 * 86400),
)
def test_the_sweep_threshold_agrees_with_judge(deadline: int, allowance: int, elapsed: int) -> None:
    """The set-based sweep asks ``from_at < overdue_threshold``; judge must agree."""
    policy = sla.Policy(9, "p", "order", "", "captured", "posted", deadline, allowance)
    now = at(elapsed)
    judged = sla.judge(policy, {"captured": sla.Reached(T)}, now)
    assert judged is not None
    assert (judged.status == "overdue") == (sla.overdue_threshold(policy, now) > T)


def test_a_verdict_on_business_time() -> None:
    V = sla.Verdict
    # posted 5 min late, asked a day later: overdue from 60 s until it was posted
    late = sla.verdict(WEB, T, {"posted": at(300)}, None, at(86400))
    assert late == V("late", at(60), at(60), at(300), "posted")
    # a later stage ends it when the due one may be skipped; the earliest end wins
    skippable = sla.verdict(
        DELIVERY, T, {"delivered": None, "invoiced": at(4 * 86400)}, None, at(9 * 86400)
    )
    assert skippable.status == "late" and skippable.ended_by == "invoiced"
    # ... but "posted" may not be skipped: shipped without posted is still overdue
    unposted = sla.Policy(1, "web", "order", "", "captured", "posted", 60, skippable=False)
    assert sla.verdict(unposted, T, {"posted": None}, None, at(999)).status == "overdue"
    assert sla.satisfying(unposted) == ("posted",)
    # on time, even when its hop only comes now: late telemetry is not a late order
    assert sla.verdict(WEB, T, {"posted": at(60)}, None, at(999)).status == "on_time"
    assert sla.verdict(WEB, T, {}, at(30), at(999)).status == "cancelled"  # moot
    assert sla.verdict(WEB, T, {}, at(90), at(999)) == V(
        "late", at(60), at(60), at(90), "cancelled"
    )
    # still missing: overdue; not due yet: pending
    assert sla.verdict(WEB, T, {"posted": None}, None, at(61)).status == "overdue"
    assert sla.verdict(WEB, T, {}, None, at(60)).status == "pending"
    # what happens after "now" has not happened yet
    assert sla.verdict(WEB, T, {"posted": at(300)}, None, at(120)).status == "overdue"
    # the batch allowance is granted before a stage counts as missing
    assert sla.verdict(NIGHTLY, T, {"invoiced": at(3600 + 7200)}, None, at(99_999)).status == (
        "on_time"
    )
    assert sla.verdict(NIGHTLY, T, {"invoiced": at(3600 + 7201)}, None, at(99_999)) == V(
        "late", at(3600), at(3600 + 7200), at(3600 + 7201), "invoiced"
    )


def test_a_deadline_past_the_watermark_is_not_known_yet() -> None:
    # the ERP has reported up to 50 s: whether it posted by 60 s is not known yet
    assert sla.verdict(WEB, T, {}, None, at(999), cutoff=at(50)).status == "pending"
    assert sla.verdict(WEB, T, {}, None, at(999), cutoff=at(61)).status == "overdue"
    # a stage that came late is known only once nothing earlier can still come
    assert sla.verdict(WEB, T, {"posted": at(90)}, None, at(999), cutoff=at(50)).status == (
        "pending"
    )
    # a stage in time is in time whatever the watermark says
    assert sla.verdict(WEB, T, {"posted": at(40)}, None, at(999), cutoff=at(0)).status == (
        "on_time"
    )


@given(
    deadline=st.integers(0, 86400),
    allowance=st.integers(0, 3600),
    reached=st.one_of(st.none(), st.integers(0, 3 * 86400)),
    asked=st.lists(st.integers(0, 4 * 86400), min_size=1, max_size=6),
)
def test_a_verdict_is_what_a_sweep_running_all_along_would_have_seen(
    deadline: int, allowance: int, reached: int | None, asked: list[int]
) -> None:
    """Sweeps at any moments find a stage overdue at one of them only if ``verdict`` says
    it was a problem as of the last; asked at a moment it is overdue, it is still open."""
    policy = sla.Policy(9, "p", "order", "", "captured", "posted", deadline, allowance)
    stages = {"posted": None if reached is None else at(reached)}
    seen = False
    for moment in sorted(asked):
        now = at(moment)
        visible = {s: t for s, t in stages.items() if t is not None and t <= now}
        overdue = sla.overdue(
            [policy],
            "order",
            "",
            {"captured": sla.Reached(T)} | {s: sla.Reached(t) for s, t in visible.items()},
            now,
        )
        found = sla.verdict(policy, T, stages, None, now)
        if overdue:
            seen = True
            assert found.status == "overdue"
            assert found.overdue_after == at(deadline + allowance)
    if seen:
        assert sla.verdict(policy, T, stages, None, at(max(asked))).problem
