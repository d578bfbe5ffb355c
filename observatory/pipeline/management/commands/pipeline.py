"""``python manage.py pipeline``: one pass now of everything the worker's schedule does, in
order: stitch, sweep, reconciliation, KPI fill, alert evaluation and delivery (for scripts
and cron)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from observatory.lib.clock import Clock, now
from observatory.pipeline import wiring


class Command(BaseCommand):
    help = (
        "One pass of everything the worker's schedule does, in order: stitch every "
        "waiting hop, sweep SLAs and exceptions, run the reconciliation rules, fill the KPI "
        "rollups, evaluate the alert rules and deliver their notifications."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now",
            help="judge SLAs and alert rules as of this business time (ISO 8601); "
            "default: the current time",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        clock: Clock = now
        if options.get("now"):
            try:
                at = datetime.fromisoformat(options["now"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--now: {exc}") from None
            at = at if at.tzinfo else at.replace(tzinfo=UTC)

            def clock() -> datetime:
                return at

        done = wiring.once(clock=clock)
        st, sw = done.tick.stitched, done.tick.swept
        ev, dl = done.evaluated, done.delivered
        self.stdout.write(
            f"stitched {st.hops:,} hops ({st.transactions_created:,} transactions created, "
            f"{st.touched:,} touched, {st.merged:,} merged); exceptions: {sw.stuck_opened:,} "
            f"stuck opened, {sw.stuck_closed:,} closed, {sw.withdrawn:,} withdrawn, "
            f"{sw.failed_opened:,} failed hops opened; reconciliation: "
            f"{sum(r.opened for r in done.reconciled.rules):,} mismatches opened, "
            f"{sum(r.resolved for r in done.reconciled.rules):,} resolved; KPI hours recomputed "
            f"{sum(done.filled.recomputed.values()):,}; alerts: {ev.firing:,} firing, "
            f"{ev.notifications:,} notifications queued, {dl.sent:,} sent"
        )
