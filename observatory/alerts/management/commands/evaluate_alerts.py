"""``python manage.py evaluate_alerts``: one alert evaluation and delivery pass now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from observatory.alerts.actions import DeliverResult, do_deliver, do_evaluate, summarize
from observatory.lib.clock import now


class Command(BaseCommand):
    help = (
        "Evaluate every active alert rule once, then deliver the due notifications (what "
        "the worker does on its schedule). The result is the last line of the output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now",
            help="evaluate as of this business time (ISO 8601), e.g. when replaying old "
            "traffic; default: the current time",
        )
        parser.add_argument(
            "--no-deliver", action="store_true", help="evaluate only; leave the outbox"
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

        evaluated = do_evaluate(clock=clock)
        delivered = do_deliver(clock=clock, limit=1000) if not options["no_deliver"] else None
        self.stdout.write(summarize(evaluated, delivered or DeliverResult()))
