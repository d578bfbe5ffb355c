"""``python manage.py stitch``: one pass now of what the worker does every few seconds:
stitch every waiting hop, then sweep SLAs and open or close exceptions.

The sweep is the stage above this one: it is run by its task name (in this process, at
once), never imported.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError, CommandParser

from observatory.transactions.actions import StitchResult, do_stitch

SWEEP = "observatory.triage.tasks.sweep"


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def summary(stitched: StitchResult, swept: dict[str, Any]) -> str:
    """``stitched 1,204 hops: 311 transactions created, 402 touched, 2 merged; 3 stuck
    opened, 1 closed`` (and the other kinds when any)."""
    line = (
        f"stitched {_plural(stitched.hops, 'hop')}: "
        f"{_plural(stitched.transactions_created, 'transaction')} created, "
        f"{stitched.touched:,} touched, {stitched.merged:,} merged; "
        f"{swept.get('stuck_opened', 0):,} stuck opened, {swept.get('stuck_closed', 0):,} closed"
    )
    extra = [
        ("withdrawn", "stuck withdrawn", "stuck withdrawn", ""),
        ("failed_opened", "failed hop", "failed hops", "opened"),
        ("failed_closed", "failed hop", "failed hops", "closed"),
        ("duplicates_opened", "duplicate", "", "opened"),
        ("conflicts_opened", "conflict", "", "opened"),
        ("silences_opened", "silence", "", "opened"),
        ("drift_opened", "inventory drift", "inventory drifts", "opened"),
        ("drift_closed", "inventory drift", "inventory drifts", "closed"),
    ]
    parts = [
        f"{_plural(int(swept[key]), one, many)} {verb}".strip()
        for key, one, many, verb in extra
        if swept.get(key)
    ]
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
        at: datetime | None = None
        if options.get("now"):
            try:
                at = datetime.fromisoformat(options["now"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--now: {exc}") from None
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        stitched = do_stitch()
        current_app.loader.import_default_modules()  # every app's tasks, as a worker has
        kwargs = {"full": True, "now": at.isoformat() if at else None}
        swept = current_app.signature(SWEEP, kwargs=kwargs).apply().get()
        self.stdout.write(summary(stitched, swept))
