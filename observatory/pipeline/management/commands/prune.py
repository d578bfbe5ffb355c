"""``python manage.py prune``: apply retention now (what the worker does hourly): make the
hop partitions ahead, then delete, stage by stage and in chunks, everything older than
``settings.RETENTION_DAYS`` (docs/retention.md), printing progress and the counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from observatory.pipeline import wiring


class Command(BaseCommand):
    help = (
        "Delete everything older than its retention (RETENTION_DAYS), in chunks of "
        "PRUNE_CHUNK rows, and make the hop table's partitions ahead."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        days = ", ".join(f"{k} {v} days" for k, v in settings.RETENTION_DAYS.items())
        self.stdout.write(f"retention: {days}")
        deleted: Counter[str] = Counter()
        for table, n in wiring.prune():
            deleted[table] += n
            if options["verbosity"] > 0:
                self.stdout.write(f"  {table}: {deleted[table]:,}")
        if not deleted:
            self.stdout.write("nothing past its retention")
            return
        total = sum(deleted.values())
        self.stdout.write(
            f"pruned {total:,} rows: " + ", ".join(f"{t} {n:,}" for t, n in sorted(deleted.items()))
        )
