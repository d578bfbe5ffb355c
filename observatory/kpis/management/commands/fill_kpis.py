"""``python manage.py fill_kpis [--full]``: one rollup fill now (what the worker does every
few seconds); ``--full`` recomputes every bucket (after an SLA policy edit)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from observatory.kpis.actions import do_fill_rollups


class Command(BaseCommand):
    help = (
        "Bring the KPI rollups up to date: recompute the hour buckets that changed since the "
        "last fill (--full: every bucket, e.g. after editing SLA policies)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="recompute every bucket")

    def handle(self, *args: Any, **options: Any) -> None:
        result = do_fill_rollups(full=options["full"])
        self.stdout.write(
            f"recomputed {result.recomputed['orders']:,} order and {result.recomputed['hops']:,} "
            f"hop hour buckets in {result.chunks} chunk{'s' if result.chunks != 1 else ''}; "
            f"{result.remaining:,} still queued"
        )
