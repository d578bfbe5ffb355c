"""``python manage.py stitch``: one pass now of what the worker does on its schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from observatory.lib.clock import now
from observatory.triage.actions import TickResult, do_pipeline_tick


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def summary(tick: TickResult) -> str:
    """``stitched 1,204 hops into 311 transactions; 3 stuck opened, 1 closed`` (+ others)."""
    st, sw = tick.stitched, tick.swept
    hops = int(getattr(st, "hops", 0))
    created = int(getattr(st, "transactions_created", 0))
    line = (
        f"stitched {_plural(hops, 'hop')} into {_plural(created, 'transaction')}; "
        f"{sw.stuck_opened:,} stuck opened, {sw.stuck_closed:,} closed"
    )
    extra = [
        (sw.failed_opened, "failed hop", "failed hops", "opened"),
        (sw.failed_closed, "failed hop", "failed hops", "closed"),
        (sw.duplicates_opened, "duplicate", "", "opened"),
        (sw.conflicts_opened, "conflict", "", "opened"),
    ]
    parts = [f"{_plural(n, one, many)} {verb}" for n, one, many, verb in extra if n]
    merged = int(getattr(st, "merged", 0) or 0)
    if merged:
        parts.insert(0, f"{_plural(merged, 'merge')}")
    return line + "".join(f"; {p}" for p in parts)


class Command(BaseCommand):
    help = (
        "Stitch every waiting hop into transactions, then sweep SLAs and open or close "
        "exceptions (what the worker does every few seconds)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now",
            help="judge SLAs as of this business time (ISO 8601), e.g. when replaying old "
            "traffic, over everything sent so far (no system counts as still catching up); "
            "default: the current time",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        clock = now
        if options.get("now"):
            try:
                at = datetime.fromisoformat(options["now"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--now: {exc}") from None
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)

            def clock() -> datetime:
                return at

        # with --now: judged over the traffic as sent, no stream still catching up
        tick = do_pipeline_tick(clock=clock, full=True)
        self.stdout.write(summary(tick))
