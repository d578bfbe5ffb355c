"""The deadline sweep: ``stuck`` and ``silence`` exceptions, judged on business time once
the truth is knowable (``docs/watermarks.md``). ``actions.do_sweep`` runs it inside its
transaction; everything here is set-based per SLA policy, never a query per transaction.

For each policy, the system expected to reach its stage (``sla.stage_system``: the ERP for
``posted``) has a *cutoff*: the business time its telemetry is complete up to (its
watermark, ``hops.queries.system_marks``), at most business "now". Then:

* **Open.** A transaction past a deadline before the cutoff and still without the stage
  opens a ``stuck`` exception, opened at the deadline (ages count from it), once the
  system has also had its maximum delay, counted from when the transaction's start
  arrived, to report the stage (history sent today about last week: the system's own
  old hops come in behind the first orders'). One whose stage
  (or cancellation) came after such a deadline before any sweep saw it missing (history
  sent in bulk, a stopped worker, a stage between two sweeps) gets one opened and resolved
  on business time: the exceptions do not depend on when the sweeps ran.
* **Re-judge.** Every unresolved ``stuck`` exception, and every one the system resolved
  whose transaction changed since, is judged again against its transaction's stage times
  (for a fragment merged into another transaction: the transaction it merged into). The
  stage came in time after all (only its telemetry was late) -> ``withdrawn``; it came
  late -> resolved at the business time it came; still missing with a later stage there
  (a skipped stage that may not be skipped) -> the summary says so ("shipped by wms, never
  posted to the ERP").
  When the system has not reported that far, a deadline is still judged once business
  now has passed it by the system's maximum telemetry delay, unless the system is
  catching up with old data (a backfill, an upload: the truth is on its way).
* **Silence.** When the system has stopped reporting altogether (nothing from it for
  longer than its maximum delay and ``SILENCE_AFTER_S``), the deadlines past its watermark
  are not opened one by one: they are counted under one ``silence`` exception for the
  system, which resolves when it reports again. Once it does, they are judged one by one.

The parts: ``common`` (the sweep's context and the policy helpers), ``rejudge``,
``opening`` and ``silence``.
"""

from __future__ import annotations

from observatory.triage.deadlines.common import Context, Tally, final_winners
from observatory.triage.deadlines.opening import _open
from observatory.triage.deadlines.rejudge import _rejudge
from observatory.triage.deadlines.silence import _silence


def sweep(ctx: Context, result: Tally) -> None:
    _rejudge(ctx, result)
    _open(ctx, result)
    _silence(ctx, result)


__all__ = ["Context", "Tally", "final_winners", "sweep"]
