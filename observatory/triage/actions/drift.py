"""Inventory drift exceptions (docs/kpis.md, "inventory_drift"): a channel whose latest
snapshot of a sku and location differs from the source of truth's, as of comparable
business times, by more than ``INVENTORY_DRIFT_UNITS`` opens a ``mismatch`` exception
(``detail.subkind`` ``amount_mismatch``, ``detail.rule`` ``inventory_drift``) owned by
that channel's team; it resolves by itself once a comparable pair agrees again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings

from observatory.hops.queries import inventory_pairs
from observatory.triage.actions.common import SweepResult, _insert, _resolve
from observatory.triage.models import MISMATCH, UNRESOLVED, Issue

#: what the exceptions of this pass have in ``detail``
RULE = "inventory_drift"
SUBKIND = "amount_mismatch"
_PREFIX = "drift:"


def drift_key(system: str, sku: str, location: str) -> str:
    return f"{_PREFIX}{system}:{sku}@{location}"[:255]


def _sweep_drift(at: datetime, owner: Callable[[str], str], result: SweepResult) -> None:
    """Compare every comparable pair (one statement), open what is off and not open yet,
    resolve what is open and agrees now (one statement each)."""
    threshold = settings.INVENTORY_DRIFT_UNITS
    truth = settings.INVENTORY_SOURCE_OF_TRUTH
    off: dict[str, dict[str, object]] = {}
    agree: set[str] = set()
    rows = inventory_pairs().values_list(  # type: ignore[misc]
        "system", "sku", "location", "quantity", "src_quantity", "as_of", "diff"
    )
    for system, sku, location, quantity, src_quantity, as_of, diff in rows:
        key = drift_key(system, sku, location)
        if diff > threshold:
            off[key] = {
                "system": system,
                "sku": sku,
                "location": location,
                "quantity": quantity,
                "src_quantity": src_quantity,
                "as_of": as_of,
                "diff": diff,
            }
        else:
            agree.add(key)
    open_keys = set(
        Issue.objects.filter(
            kind=MISMATCH, state__in=UNRESOLVED, dedupe_key__startswith=_PREFIX
        ).values_list("dedupe_key", flat=True)
    )
    new = []
    for key, p in off.items():
        if key in open_keys:
            continue
        system = str(p["system"])
        as_of = p["as_of"]
        assert isinstance(as_of, datetime)
        new.append(
            Issue(
                kind=MISMATCH,
                system=system,
                owner=owner(system),
                summary=f"{system} shows {p['quantity']} of {p['sku']} at {p['location']}, "
                f"{truth} {p['src_quantity']} ({p['diff']} units off)",
                detail={
                    "subkind": SUBKIND,
                    "rule": RULE,
                    "sku": p["sku"],
                    "location": p["location"],
                    "source_system": truth,
                    "source_quantity": p["src_quantity"],
                    "channel_quantity": p["quantity"],
                    "units_off": p["diff"],
                },
                dedupe_key=key,
                event_at=as_of,
                opened_at=as_of,
                detected_at=at,
            )
        )
    result.drift_opened += _insert(new)
    healed = open_keys & agree
    if healed:
        result.drift_closed += _resolve(
            Issue.objects.filter(kind=MISMATCH, state__in=UNRESOLVED, dedupe_key__in=healed),
            at,
            "the channel's quantity agrees with the source of truth again",
        )
