"""What triage's writes share: the live topic of the queue, the sweep's result, and
writing exceptions in batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from observatory.triage.models import RESOLVED, SYSTEM_ACTOR, Issue

#: live topic for every change of the queue (payload: counts, or one issue's id and state)
LIVE_TOPIC = "exceptions.changed"
_BATCH = 1000


@dataclass
class SweepResult:
    stuck_opened: int = 0
    stuck_closed: int = 0
    failed_opened: int = 0
    failed_closed: int = 0
    duplicates_opened: int = 0
    conflicts_opened: int = 0
    #: stuck exceptions whose stage turned out to have come in time
    withdrawn: int = 0
    silences_opened: int = 0
    #: inventory drift exceptions (actions/drift.py)
    drift_opened: int = 0
    drift_closed: int = 0
    #: unresolved issues moved onto the transaction theirs was merged into
    moved: int = 0
    #: another sweep held the lock; this one did nothing
    skipped: bool = False

    @property
    def changed(self) -> bool:
        return any(v for k, v in asdict(self).items() if k != "skipped")


def _insert(rows: list[Issue]) -> int:
    """Insert new issues; a key already unresolved (a racing sweep) is skipped."""
    for i in range(0, len(rows), _BATCH):
        Issue.objects.bulk_create(rows[i : i + _BATCH], ignore_conflicts=True)
    return len(rows)


def _resolve(qs: Any, at: datetime, why: str) -> int:
    return int(
        qs.update(state=RESOLVED, resolved_at=at, resolved_by=SYSTEM_ACTOR, resolution=why[:255])
    )
