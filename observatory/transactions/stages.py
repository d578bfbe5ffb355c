"""Stages from statuses, transaction kinds and current stage, from plain values.

Pure: no ORM. The status maps are data (``StatusMap`` rows, seeded by migration 0002 and
editable in the admin); :class:`StatusMaps` is their in-memory form.

A hop's stage (:func:`derive`):

1. an explicit stage (``retail.stage`` / ``data.stage``) wins;
2. else its platform status looked up for its system, then for ``*`` (the vendor
   vocabularies: NetSuite, Dynamics, SAP, EasyPost, Shippo, AfterShip);
3. else, when the status is unknown or known to mean no stage, its operation (a Shopify
   topic such as ``orders/create``, a CloudEvents type) looked up the same way.

A platform status no map knows is *unknown*: the caller counts it (``UnknownStatus``) and
the hop keeps it beside its (blank) stage, so nothing is dropped.

Lookups ignore case, and a second, looser pass also ignores spaces, ``_`` and ``-``:
``Pending Fulfillment``, ``pending_fulfillment`` and NetSuite's SOAP ``_pendingFulfillment``
are one word, as are AfterShip's ``InTransit`` and EasyPost's ``in_transit``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from tracing import conventions as c

ANY_SYSTEM: Final = "*"
CANCELLED: Final = "cancelled"
SHIPPED: Final = "shipped"
#: Pseudo-stage: a ``shipped`` fact as seen by Shopify (end of fulfillment propagation).
FULFILLMENT_SYNCED: Final = "fulfillment_synced"
SHOPIFY: Final = "shopify"

ORDER: Final = "order"
RETURN: Final = "return"
INVENTORY_UPDATE: Final = "inventory_update"

#: The order of every stage (docs/stages.md), used for "furthest stage reached".
STAGE_RANK: Final = {stage: i for i, stage in enumerate(c.ALL_STAGES)}
#: Every stage a hop or a map may name, the pseudo-stage included.
KNOWN_STAGES: Final = frozenset((*c.ALL_STAGES, FULFILLMENT_SYNCED))

#: Key kinds that say "this is an order" (a refund on an order keeps it an order).
ORDER_KEY_KINDS: Final = frozenset(
    {
        c.ORDER_NUMBER,
        c.SHOPIFY_ORDER_ID,
        c.ERP_SALES_ORDER,
        c.POS_RECEIPT,
        c.MARKETPLACE_ORDER_ID,
    }
)
RETURN_KEY_KINDS: Final = frozenset({c.RETURN_ID})
INVENTORY_KEY_KINDS: Final = frozenset({c.INVENTORY_UPDATE_ID})
_ORDER_STAGES: Final = frozenset(c.ORDER_STAGES)
_RETURN_STAGES: Final = frozenset(c.RETURN_STAGES)
_INVENTORY_STAGES: Final = frozenset(c.INVENTORY_STAGES)

_LOOSE = re.compile(r"[\s_\-]+")


def exact_word(status: str) -> str:
    return status.strip().casefold()


def loose_word(status: str) -> str:
    return _LOOSE.sub("", status.casefold())


class Rule(NamedTuple):
    """What a status means: a stage (blank: known, no stage) and maybe a kind."""

    stage: str
    transaction_kind: str = ""


class StatusMaps:
    """In-memory status maps: (system, status) -> :class:`Rule`.

    Built from rows ``(system, status, stage, transaction_kind)``; with two rows for one
    word the first given wins (pass them ordered by id).
    """

    def __init__(self, rows: Iterable[tuple[str, str, str, str]] = ()) -> None:
        self._exact: dict[tuple[str, str], Rule] = {}
        self._loose: dict[tuple[str, str], Rule] = {}
        for system, status, stage, kind in rows:
            rule = Rule(stage or "", kind or "")
            system = system.strip().lower()
            self._exact.setdefault((system, exact_word(status)), rule)
            self._loose.setdefault((system, loose_word(status)), rule)

    def __len__(self) -> int:
        return len(self._exact)

    def lookup(self, system: str, status: str) -> Rule | None:
        """The rule for ``status`` said by ``system``: the system's own map first (exact,
        then loose), then the ``*`` vendor vocabularies (exact, then loose)."""
        if not status:
            return None
        exact, loose = exact_word(status), loose_word(status)
        for sys in (system, ANY_SYSTEM):
            rule = self._exact.get((sys, exact)) or self._loose.get((sys, loose))
            if rule is not None:
                return rule
        return None


class Derived(NamedTuple):
    """A hop's stages (in stage order, docs/stages.md), kind hint, and whether its status is unknown."""

    stages: tuple[str, ...]
    kind_hint: str
    unknown_status: bool


def derive(
    maps: StatusMaps, *, system: str, stage: str, platform_status: str, operation: str
) -> Derived:
    """The stage(s) one hop reached (see the module docstring for the order of rules).

    A ``shipped`` stage reached by system ``shopify`` also reaches the pseudo-stage
    ``fulfillment_synced``: Shopify has seen the shipment.
    """
    kind_hint = ""
    unknown = False
    found = stage if stage in KNOWN_STAGES else ""
    if not found:  # an explicit stage wins; one we do not know is ignored
        rule = maps.lookup(system, platform_status) if platform_status else None
        if platform_status and rule is None:
            unknown = True
        if rule is not None:
            found, kind_hint = rule.stage, rule.transaction_kind
        if not found and operation:
            by_op = maps.lookup(system, operation)
            if by_op is not None:
                found = by_op.stage
                kind_hint = kind_hint or by_op.transaction_kind
    if not found:
        return Derived((), kind_hint, unknown)
    if found == SHIPPED and system == SHOPIFY:
        return Derived((SHIPPED, FULFILLMENT_SYNCED), kind_hint, unknown)
    return Derived((found,), kind_hint, unknown)


def transaction_kind(key_kinds: Iterable[str], stages: Iterable[str], hints: Iterable[str]) -> str:
    """``order``, ``return`` or ``inventory_update`` from a transaction's keys and stages.

    Order evidence (an order key such as ``order_number``, or an order stage) wins: an
    order that is later refunded or returned stays an order, so it keeps counting in the
    order KPIs and SLAs. Without it, a ``return_id``, a return stage or a map's
    ``return`` hint makes a return; then ``inventory_update_id`` or an inventory stage
    makes an inventory update; anything else is an order.
    """
    kinds = set(key_kinds)
    reached = set(stages)
    hinted = set(hints)
    if kinds & ORDER_KEY_KINDS or reached & _ORDER_STAGES or ORDER in hinted:
        return ORDER
    if kinds & RETURN_KEY_KINDS or reached & _RETURN_STAGES or RETURN in hinted:
        return RETURN
    if kinds & INVENTORY_KEY_KINDS or reached & _INVENTORY_STAGES or INVENTORY_UPDATE in hinted:
        return INVENTORY_UPDATE
    return ORDER


def current_stage(stages: Iterable[str]) -> str:
    """The furthest stage reached in stage order (docs/stages.md); ``cancelled`` is terminal and wins.

    The pseudo-stage ``fulfillment_synced`` is never a current stage.
    """
    best = ""
    best_rank = -1
    for stage in stages:
        if stage == CANCELLED:
            return CANCELLED
        rank = STAGE_RANK.get(stage, -1)
        if rank > best_rank:
            best, best_rank = stage, rank
    return best
