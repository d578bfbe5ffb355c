"""What the product's default reconciliation rules should find in a run, from the ground
truth: the ``reconciliation`` section of the truth file (:mod:`.truth`).

The rules are mirrored here (the simulator talks to Observatory over HTTP only, as
:mod:`.slas` mirrors the SLA policies), with the time zones of the simulated retailer:
the shop's business day runs on US Eastern standard time (a fixed UTC-5, as the whole
simulation does), each store's on its own offset (``Etc/GMT+N`` names them; the server's
rules must be set to the same zones, ``zones()``). Like the product, an item is judged
from what was delivered to it by the end of the run, as of that end: a side not reached
(or not delivered) yet is waited for the rule's grace period before it counts.

The judgement is the product's (docs/reconciliation.md, "How an item is judged"): per
side, the documents (values of the side's document key: a sales order, a refund, a
batch, a tracking number; one when the side names none) and the first amount each
reported, summed; a side missing; more target documents than source documents (posted
twice) or fewer (missing in the target); amounts further apart than the tolerance; else
matched. A batch posting (one ERP hop naming many POS receipts) carries the batch's
total: it is judged as a whole against the receipts it names, and counted once, on the
day of its earliest receipt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from observatory.simulator import catalog as cat

MATCHED: Final = "matched"
MISSING_IN_TARGET: Final = "missing_in_target"
MISSING_IN_SOURCE: Final = "missing_in_source"
AMOUNT_MISMATCH: Final = "amount_mismatch"
POSTED_TWICE: Final = "posted_twice"
ZERO: Final = Decimal("0")
CENT: Final = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Rule:
    """A default rule of the product, mirrored (``reconciliation/migrations/0002``)."""

    name: str
    source: tuple[str, str]
    target: tuple[str, str]
    source_key: str = ""
    target_key: str = ""
    kind: str = ""
    channels: tuple[str, ...] = ()
    by_store: bool = False
    grace_s: int = 3600
    tolerance: Decimal = CENT
    exempt_cancelled: bool = True


RULES: Final = (
    Rule(
        "shopify-orders",
        ("shopify", "captured"),
        ("erp", "posted"),
        target_key="erp_sales_order",
        kind="order",
        channels=("web",),
    ),
    Rule(
        "shopify-refunds",
        ("shopify", "refunded"),
        ("erp", "refund_settled"),
        source_key="refund_id",
        target_key="refund_id",
        grace_s=86_400,
        exempt_cancelled=False,
    ),
    Rule(
        "pos-cash-sales",
        ("pos", "captured"),
        ("erp", "posted"),
        target_key="batch_id",
        kind="order",
        channels=("pos",),
        by_store=True,
        grace_s=2 * 3600,
    ),
    Rule(
        "wms-carrier-scans",
        ("wms", "shipped"),
        ("carrier", "shipped"),
        source_key="tracking_number",
        target_key="tracking_number",
        kind="order",
        grace_s=86_400,
    ),
    Rule(
        "marketplace-orders",
        ("marketplace", "captured"),
        ("erp", "posted"),
        target_key="erp_sales_order",
        kind="order",
        channels=("marketplace",),
    ),
)
#: the key kinds naming a document on some side of some rule
DOC_KINDS: Final = frozenset(k for r in RULES for k in (r.source_key, r.target_key) if k)


def zone_name(offset_h: int) -> str:
    """The IANA name of a fixed offset: ``Etc/GMT+5`` is UTC-5 (the sign is POSIX's)."""
    return "Etc/UTC" if offset_h == 0 else f"Etc/GMT{-offset_h:+d}"


def zones() -> dict[str, Any]:
    """The zones the server's rules must use to agree with this file: the shop's, for
    every rule, and each store's, for the rules that read stores' zones."""
    return {
        "shop": zone_name(cat.SHOP_UTC_OFFSET_H),
        "stores": {s.store_id: zone_name(s.utc_offset_h) for s in cat.STORES},
    }


@dataclass(slots=True)
class Posting:
    """One hop that reached a stage a rule reads: who, what, when, for how much, which
    documents it names, whether it was delivered (``mark``), and whether it reached the
    transaction through a batch posting naming many."""

    stage: str
    system: str
    at: datetime
    #: order of planning, a stand-in for the product's hop id in ties
    seq: int
    amount: Decimal | None
    currency: str
    docs: dict[str, str]
    batch: bool
    delivered: Any  # the truth's Mark: ``.delivered`` is read when the file is written


@dataclass(slots=True)
class Batch:
    """A batch posting: the receipts it names, its total."""

    batch_id: str
    posting: Posting
    receipts: list[str]
    store_id: str


@dataclass(slots=True)
class Txn:
    """What reconciliation needs of one transaction of the truth."""

    ref: str
    kind: str
    channel: str
    store_id: str
    keys: dict[str, str | list[str]]
    postings: list[Posting] = field(default_factory=list)


@dataclass(slots=True)
class _Side:
    first: datetime
    last: datetime
    docs: int
    amount: Decimal | None
    currencies: set[str]
    batch_currency: str


def _side(postings: list[Posting], key: str) -> _Side | None:
    if not postings:
        return None
    named = {p.docs.get(key, "") for p in postings if key and p.docs.get(key)}
    first_of: dict[str, Posting] = {}
    for p in sorted(postings, key=lambda p: (p.batch or p.amount is None, p.at, p.seq)):
        doc = p.docs.get(key, "") if key else ""
        if named and not doc:
            continue
        first_of.setdefault(doc, p)
    priced = [p for p in first_of.values() if not p.batch and p.amount is not None]
    return _Side(
        first=min(p.at for p in postings),
        last=max(p.at for p in postings),
        docs=len(named) or 1,
        amount=sum((p.amount for p in priced if p.amount is not None), ZERO) if priced else None,
        currencies={p.currency for p in priced},
        batch_currency=next((p.currency for p in postings if p.batch and p.currency), ""),
    )


def _status(rule: Rule, src: _Side | None, tgt: _Side | None) -> tuple[str, datetime | None]:
    """The status and, for a missing side, since when it is waited for."""
    if src is None:
        assert tgt is not None
        return MISSING_IN_SOURCE, tgt.first
    if tgt is None:
        return MISSING_IN_TARGET, src.last
    if tgt.docs > src.docs:
        return POSTED_TWICE, None
    if tgt.docs < src.docs:
        return MISSING_IN_TARGET, src.last
    if (
        src.amount is not None
        and tgt.amount is not None
        and (
            len(src.currencies | tgt.currencies) > 1
            or abs(src.amount - tgt.amount) > rule.tolerance
        )
    ):
        return AMOUNT_MISMATCH, None
    return MATCHED, None


def _stamped(p: Posting, stamp: Callable[[datetime], datetime]) -> Posting:
    return Posting(
        p.stage, p.system, stamp(p.at), p.seq, p.amount, p.currency, p.docs, p.batch, p.delivered
    )


def _day(at: datetime, offset_h: int) -> date:
    return at.astimezone(timezone(timedelta(hours=offset_h))).date()


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


@dataclass(slots=True)
class _Group:
    source_count: int = 0
    source_total: Decimal = ZERO
    target_count: int = 0
    target_total: Decimal = ZERO
    matched: int = 0
    missing_in_target: int = 0
    missing_in_source: int = 0
    amount_mismatch: int = 0
    posted_twice: int = 0
    pending: int = 0
    mismatched_amount: Decimal = ZERO
    value_at_risk: Decimal = ZERO


def results(
    txns: Iterable[Txn],
    batches: Iterable[Batch],
    end: datetime,
    stamp: Callable[[datetime], datetime] = lambda moment: moment,
) -> dict[str, Any]:
    """The ``reconciliation`` section as of ``end``: per rule, business day, currency
    (and store), the figures the product's API answers; and every unmatched item and
    batch. Simulated times become the business times on the hops through ``stamp``."""
    now = stamp(end)
    txns = [
        Txn(
            t.ref,
            t.kind,
            t.channel,
            t.store_id,
            t.keys,
            [_stamped(p, stamp) for p in t.postings if p.delivered.delivered and p.at <= end],
        )
        for t in txns
    ]
    end_sim, end = end, now
    batches = list(batches)
    offsets = {s.store_id: s.utc_offset_h for s in cat.STORES}
    rows: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    for rule in RULES:
        groups: dict[tuple[str, str, str], _Group] = defaultdict(_Group)
        item_of: dict[str, tuple[date, str, str, Decimal | None]] = {}
        for t in txns:
            if rule.kind and t.kind != rule.kind:
                continue
            if rule.channels and t.channel not in rule.channels:
                continue
            seen = t.postings
            src = _side([p for p in seen if (p.system, p.stage) == rule.source], rule.source_key)
            tgt = _side([p for p in seen if (p.system, p.stage) == rule.target], rule.target_key)
            if src is None and tgt is None:
                continue
            cancelled = any(p.stage == "cancelled" for p in seen)
            if rule.exempt_cancelled and tgt is None and cancelled:
                continue
            status, waits = _status(rule, src, tgt)
            counted = waits is None or waits + timedelta(seconds=rule.grace_s) <= end
            anchor = (src or tgt).first  # type: ignore[union-attr]
            offset = (
                offsets.get(t.store_id, cat.SHOP_UTC_OFFSET_H)
                if rule.by_store
                else (cat.SHOP_UTC_OFFSET_H)
            )
            day = _day(anchor, offset)
            currency = ""
            if src is not None and src.currencies:
                currency = min(src.currencies)
            elif tgt is not None and tgt.currencies:
                currency = min(tgt.currencies)
            elif tgt is not None:
                currency = tgt.batch_currency
            store = t.store_id if rule.by_store else ""
            g = groups[(day.isoformat(), currency, store)]
            s_amount = src.amount if src else None
            t_amount = tgt.amount if tgt else None
            if src is not None:
                g.source_count += 1
                g.source_total += s_amount or ZERO
            if tgt is not None:
                g.target_count += 1
                g.target_total += t_amount or ZERO
            if not counted:
                g.pending += 1
            elif status == MATCHED:
                g.matched += 1
            else:
                setattr(g, status, getattr(g, status) + 1)
                gap = abs((s_amount or ZERO) - (t_amount or ZERO))
                g.value_at_risk += gap
                if status == AMOUNT_MISMATCH:
                    g.mismatched_amount += gap
            if status != MATCHED:
                unmatched.append(
                    {
                        "rule": rule.name,
                        "day": day.isoformat(),
                        "ref": t.ref,
                        "status": status,
                        "counted": counted,
                    }
                )
            item_of[t.ref] = (day, currency, store, s_amount if src else None)
        if rule.name == "pos-cash-sales":
            for b in batches:
                if not (b.posting.delivered.delivered and b.posting.at <= end_sim):
                    continue
                items = [item_of[r] for r in b.receipts if r in item_of]
                if not items:
                    continue
                day, _, store, _ = min(items, key=lambda i: i[0])
                total = sum((i[3] or ZERO for i in items), ZERO)
                amount = b.posting.amount or ZERO
                currency = b.posting.currency
                g = groups[(day.isoformat(), currency, store)]
                g.target_total += amount
                if abs(amount - total) > rule.tolerance:
                    g.amount_mismatch += 1
                    g.mismatched_amount += abs(amount - total)
                    g.value_at_risk += abs(amount - total)
                    unmatched.append(
                        {
                            "rule": rule.name,
                            "day": day.isoformat(),
                            "batch": b.batch_id,
                            "status": AMOUNT_MISMATCH,
                            "counted": True,
                        }
                    )
        for (day_, currency, store), g in sorted(groups.items()):
            rows.append(
                {
                    "rule": rule.name,
                    "day": day_,
                    "currency": currency,
                    "store_id": store,
                    "source_count": g.source_count,
                    "source_total": _money(g.source_total),
                    "target_count": g.target_count,
                    "target_total": _money(g.target_total),
                    "matched": g.matched,
                    "missing_in_target": g.missing_in_target,
                    "missing_in_source": g.missing_in_source,
                    "amount_mismatch": g.amount_mismatch,
                    "posted_twice": g.posted_twice,
                    "pending": g.pending,
                    "mismatched_amount": _money(g.mismatched_amount),
                    "value_at_risk": _money(g.value_at_risk),
                }
            )
    return {
        "time_zones": zones(),
        "rules": [
            {
                "name": r.name,
                "source": list(r.source),
                "target": list(r.target),
                "grace_s": r.grace_s,
                "tolerance": _money(r.tolerance),
            }
            for r in RULES
        ],
        "results": rows,
        "unmatched": unmatched,
    }
