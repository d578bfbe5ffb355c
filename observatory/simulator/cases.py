"""The business cases the KPIs of docs/kpis.md judge, and their ground truth: reroutes,
cancellations that work or fail, and inventory drift between the warehouse and Shopify.

Each case draws from a random stream of its own (``reroute``, ``cancel``, ``snapshot``
and the entity's index), so adding them changes no other plan of the run.

reroutes
    :data:`REROUTE_RATE` of the orders the warehouse releases move to another warehouse
    after release: the release names the first one (``retail.location_id``), every later
    warehouse hop the second.
cancellations
    Of the orders cancelled after posting, :data:`ERP_NEVER_RATE` are never cancelled by
    the ERP, and :data:`SHIPPED_ANYWAY_RATE` were already released: the warehouse never
    cancels and ships them anyway. The rest the ERP cancels before the warehouse has them.
inventory drift
    Every stock move the warehouse makes is followed by an ``inventory.snapshot`` of the
    sku and location from the warehouse (the source of truth), and one from Shopify when
    the sync published it; :data:`DRIFT_RATE` of Shopify's are a few units off.

The truth (``simulate --truth``) gains ``reroutes``, ``cancellations`` and
``inventory``: see :meth:`Cases.document`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from observatory.simulator import catalog as cat
from observatory.simulator.truth import SNAPSHOT, Mark, iso

if TYPE_CHECKING:
    from observatory.simulator.entities import Step

REROUTE_RATE: Final = 0.08
ERP_NEVER_RATE: Final = 0.15
SHIPPED_ANYWAY_RATE: Final = 0.15
DRIFT_RATE: Final = 0.2
#: the product's defaults (docs/configuration.md): the source of truth, units a channel
#: may be off, seconds apart two snapshots may be and still be compared
SOURCE_OF_TRUTH: Final = "wms"
DRIFT_UNITS: Final = 0
DRIFT_WINDOW_S: Final = 900
SKU: Final = "retail.inventory.sku"
LOCATION: Final = "retail.inventory.location"
QUANTITY: Final = "inventory.quantity"

#: cancellation outcomes
CANCELLED: Final = "cancelled"
ERP_NEVER: Final = "erp_never_cancelled"
SHIPPED_ANYWAY: Final = "shipped_anyway"


def rng_of(seed: int, case: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{case}/{index}")


def reroute_to(seed: int, index: int, warehouse: cat.Warehouse) -> cat.Warehouse | None:
    """The warehouse order ``index`` moves to after release, or None."""
    rng = rng_of(seed, "reroute", index)
    if rng.random() >= REROUTE_RATE:
        return None
    return rng.choice([w for w in cat.WAREHOUSES if w.code != warehouse.code])


def cancellation(seed: int, index: int) -> str:
    """How the cancellation of order ``index`` goes."""
    draw = rng_of(seed, "cancel", index).random()
    if draw < ERP_NEVER_RATE:
        return ERP_NEVER
    if draw < ERP_NEVER_RATE + SHIPPED_ANYWAY_RATE:
        return SHIPPED_ANYWAY
    return CANCELLED


@dataclass
class _Cancel:
    ref: str
    outcome: str
    requested: Step
    erp: Step | None
    #: the warehouse's first hop, when it had the order
    held: Step | None


@dataclass
class Cases:
    """What the cases did, for the truth."""

    reroutes: list[tuple[str, str, str, Step]] = field(default_factory=list)
    cancels: list[_Cancel] = field(default_factory=list)
    snapshots: list[Step] = field(default_factory=list)

    def rerouted(self, ref: str, old: str, new: str, first_hop: Step) -> None:
        self.reroutes.append((ref, old, new, first_hop))

    def cancelled(
        self, ref: str, outcome: str, requested: Step, erp: Step | None, held: Step | None
    ) -> None:
        self.cancels.append(_Cancel(ref, outcome, requested, erp, held))

    def snapshot_steps(
        self,
        seed: int,
        index: int,
        *,
        sku: str,
        location: str,
        at: datetime,
        published: datetime,
        make: Callable[..., Step],
    ) -> list[Step]:
        """The warehouse's snapshot at ``at`` and Shopify's at ``published``."""
        rng = rng_of(seed, "snapshot", index)
        quantity = rng.randint(0, 240)
        shown = quantity
        if rng.random() < DRIFT_RATE:
            shown = max(0, quantity + rng.choice((-6, -3, -2, -1, 1, 2, 4, 9)))
            shown = shown if shown != quantity else quantity + 1
        steps = []
        for system, source, when, qty in (
            ("wms", cat.SOURCE_WMS, at, quantity),
            ("shopify", "shopify/inventory", published, shown),
        ):
            step = make(
                rng,
                f"snapshot:{system}:{sku}@{location}",
                when,
                system,
                "inventory.snapshot",
                source=source,
                event_type=SNAPSHOT,
                keys={},
                attributes={SKU: sku, LOCATION: location, QUANTITY: qty},
            )
            step.mark = Mark(step)
            steps.append(step)
        self.snapshots += steps
        return steps

    # --- the truth --------------------------------------------------------------------

    def document(self, end: datetime, stamp: Callable[[datetime], datetime]) -> dict[str, Any]:
        """``reroutes``: ``ref``, ``at`` (the first hop at the new warehouse), ``from``,
        ``to``, ``delivered``. ``cancellations``: ``ref``, ``at``, ``outcome``
        (``cancelled``, ``erp_never_cancelled``, ``shipped_anyway``), ``requested`` (the
        Shopify cancellation sent) and ``succeeded`` (as of ``end``: the ERP's
        cancellation sent, and the warehouse never had the order). ``inventory``: ``snapshots`` (``system``,
        ``sku``, ``location``, ``quantity``, ``as_of``, ``delivered``) and, from the latest
        delivered snapshot of each system, sku and location, ``pairs`` (each ``sku``,
        ``location``, ``source_quantity``, ``channel_quantity``, ``as_of``, ``off``),
        ``off`` and ``units_off``, judged as the product does by default."""

        def sent(step: Step | None) -> bool:
            return (
                step is not None
                and step.at <= end
                and step.mark is not None
                and step.mark.delivered
            )

        reroutes = [
            {
                "ref": ref,
                "at": iso(stamp(step.at)),
                "from": old,
                "to": new,
                "delivered": sent(step),
            }
            for ref, old, new, step in self.reroutes
            if step.at <= end
        ]
        cancellations = [
            {
                "ref": c.ref,
                "at": iso(stamp(c.requested.at)),
                "outcome": c.outcome,
                "requested": sent(c.requested),
                # as of end: the ERP cancelled, and the warehouse never had it (it
                # never cancels what it has)
                "succeeded": sent(c.erp) and not sent(c.held),
            }
            for c in self.cancels
            if c.requested.at <= end
        ]
        latest: dict[tuple[str, str, str], tuple[datetime, int]] = {}
        shown = []
        for step in self.snapshots:
            a = step.attributes
            key = (step.system, str(a[SKU]), str(a[LOCATION]))
            if step.at > end:
                continue
            shown.append(
                {
                    "system": key[0],
                    "sku": key[1],
                    "location": key[2],
                    "quantity": a[QUANTITY],
                    "as_of": iso(stamp(step.at)),
                    "delivered": sent(step),
                }
            )
            if sent(step) and (key not in latest or step.at > latest[key][0]):
                latest[key] = (step.at, int(a[QUANTITY]))
        pairs: list[dict[str, Any]] = []
        units_off = 0
        window = timedelta(seconds=DRIFT_WINDOW_S)
        for (system, sku, location), (at, qty) in sorted(latest.items()):
            truth = latest.get((SOURCE_OF_TRUTH, sku, location))
            if system == SOURCE_OF_TRUTH or truth is None:
                continue
            if abs(stamp(truth[0]) - stamp(at)) > window:
                continue
            pairs.append(
                {
                    "system": system,
                    "sku": sku,
                    "location": location,
                    "source_quantity": truth[1],
                    "channel_quantity": qty,
                    "as_of": iso(stamp(at)),
                    "off": abs(qty - truth[1]) > DRIFT_UNITS,
                }
            )
            if pairs[-1]["off"]:
                units_off += abs(qty - truth[1])
        off = [p for p in pairs if p["off"]]
        return {
            "reroutes": reroutes,
            "cancellations": cancellations,
            "inventory": {
                "snapshots": shown,
                "pairs": pairs,
                "off": len(off),
                "units_off": units_off,
            },
        }
