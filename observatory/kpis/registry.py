"""Every KPI of docs/kpis.md, as data: id, fields, plain-words meaning, and where the
figure comes from.

Sources:

``orders``
    time-bucketed ``OrderRollup`` rows. A transaction counts in the bucket of its anchor
    time: ``captured`` for orders, ``inventory_adjusted`` for inventory updates.
``hops``
    time-bucketed ``HopRollup`` rows, per system and operation. A hop counts in the bucket
    of its business start time, and so do its duplicate deliveries.
``inventory``
    one statement over the latest inventory snapshots (the store filter is the location,
    the system filter the channel's system; the channel filter does not apply).
``exceptions``, ``backlog``, ``alerts``
    small snapshot or aggregate queries over the exception queue, the stage columns
    (partial indexes) and the alerts: no scan of hops.

Filters: ``channel`` and ``store`` apply to every KPI (a hop takes the channel and store
it carries, else those of its transaction); ``system`` applies where a system is part of
the fact (hops, exceptions, the system a late stage waits for, alerts labelled with it)
and is ignored by the per-order figures, whose orders cross every system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ORDERS: Final = "orders"
HOPS: Final = "hops"
EXCEPTIONS: Final = "exceptions"
BACKLOG: Final = "backlog"
MIXED: Final = "orders+hops"
RESOLUTION: Final = "exceptions+alerts"
INVENTORY: Final = "inventory"

#: a sending system counts for ``duplicate_rate.worst_source_rate`` from this many
#: deliveries in the window (one duplicate in three deliveries is not a trend)
MIN_SOURCE_DELIVERIES: Final = 20

CHANNEL: Final = "channel"
STORE: Final = "store"
SYSTEM: Final = "system"


@dataclass(frozen=True)
class Field:
    name: str
    meaning: str
    unit: str = ""  # "s", "ms", "rate" (0..1), "" (a count or a structure)


@dataclass(frozen=True)
class Kpi:
    id: str
    title: str
    meaning: str
    fields: tuple[Field, ...]
    source: str
    filters: frozenset[str]
    #: the field a card shows, and whether smaller is better
    headline: str = ""
    lower_is_better: bool = True

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


_ALL = frozenset({CHANNEL, STORE, SYSTEM})
_NO_SYSTEM = frozenset({CHANNEL, STORE})

KPIS: Final[dict[str, Kpi]] = {
    k.id: k
    for k in (
        Kpi(
            "acceptance_to_posting",
            "Time from order to ERP",
            "How long after a channel accepted an order the ERP held it as a sales order.",
            (
                Field("count", "orders accepted in the window and posted since"),
                Field("p50_s", "median time to posting", "s"),
                Field("p95_s", "95th percentile time to posting", "s"),
                Field("p99_s", "99th percentile time to posting", "s"),
                Field("within_sla", "share of those orders posted within their deadline", "rate"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="p95_s",
        ),
        Kpi(
            "inventory_sync_lag",
            "Stock update delay",
            "How long a stock change at the source of truth took to show in a selling channel.",
            (
                Field("count", "stock updates in the window that were published"),
                Field("p50_s", "median delay", "s"),
                Field("p95_s", "95th percentile delay", "s"),
                Field("max_s", "longest delay", "s"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="p95_s",
        ),
        Kpi(
            "fulfillment_propagation",
            "Shipment to Shopify delay",
            "How long after the warehouse or a carrier first shipped an order Shopify showed "
            "it (a fulfillment made in Shopify alone is not counted).",
            (
                Field(
                    "count",
                    "orders of the window shipped by a warehouse or carrier and seen by Shopify",
                ),
                Field("p50_s", "median delay", "s"),
                Field("p95_s", "95th percentile delay", "s"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="p95_s",
        ),
        Kpi(
            "exception_rate",
            "Orders with a problem",
            "Share of orders with at least one failed step or a real exception (one "
            "withdrawn because its stage came in time is not a problem).",
            (
                Field("orders", "orders accepted in the window"),
                Field("with_exception", "of those, orders with a failed step or exception"),
                Field("rate", "with_exception / orders", "rate"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="rate",
        ),
        Kpi(
            "duplicate_rate",
            "Repeated messages",
            "Share of messages that arrived more than once, and orders posted to the ERP twice.",
            (
                Field("deliveries", "every delivery of the window's hops, repeats included"),
                Field("duplicates", "deliveries that repeated an earlier one"),
                Field("rate", "duplicates / deliveries", "rate"),
                Field("posted_twice", "orders of the window posted to the ERP more than once"),
                Field(
                    "by_source",
                    "per sending system: deliveries, duplicates and their rate",
                ),
                Field(
                    "worst_source_rate",
                    "the highest duplicate rate of a system with at least "
                    f"{MIN_SOURCE_DELIVERIES} deliveries in the window",
                    "rate",
                ),
                Field("worst_source", "the system with that rate"),
            ),
            MIXED,
            _ALL,
            headline="rate",
        ),
        Kpi(
            "reconciliation_backlog",
            "Orders past their deadline",
            "Transactions of the window past a stage deadline and still missing that stage.",
            (
                Field("total", "transactions past a deadline"),
                Field("by_stage", "stage still missing -> transactions"),
            ),
            BACKLOG,
            _ALL,
            headline="total",
        ),
        Kpi(
            "exception_aging",
            "Open exceptions by age",
            "Exceptions nobody has resolved yet, by how long they have been open.",
            (
                Field("open", "unresolved exceptions"),
                Field("under_1h", "open for under an hour"),
                Field("h1_to_4", "open for 1 to 4 hours"),
                Field("h4_to_24", "open for 4 to 24 hours"),
                Field("over_24h", "open for over a day"),
                Field("oldest_s", "age of the oldest", "s"),
            ),
            EXCEPTIONS,
            _ALL,
            headline="open",
        ),
        Kpi(
            "refund_reconciliation",
            "Refunds settled in time",
            "Of the refunds whose settlement is due, the share the ERP settled (a credit "
            "memo) within the SLA.",
            (
                Field("refunds", "refunds of the window, settled or past their deadline"),
                Field("settled_within_sla", "of those, settled within their deadline"),
                Field("rate", "settled_within_sla / refunds", "rate"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="rate",
            lower_is_better=False,
        ),
        Kpi(
            "cancellation_success",
            "Cancellations that worked",
            "Of the orders cancelled in the window, the share the ERP and the warehouse "
            "cancelled too (each where it held the order) and that never shipped.",
            (
                Field("requested", "orders whose cancellation came in the window"),
                Field("succeeded", "of those, cancelled downstream and never shipped"),
                Field("rate", "succeeded / requested", "rate"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="rate",
            lower_is_better=False,
        ),
        Kpi(
            "posting_completeness",
            "Orders posted the same day",
            "Of the captured orders whose business day is over (in their store's time "
            "zone), the share the ERP posted before that day ended, and what they were "
            "worth per currency.",
            (
                Field(
                    "orders",
                    "orders captured in the window, posted by the end of their business "
                    "day or whose day has ended",
                ),
                Field("posted", "of those, posted to the ERP before their business day ended"),
                Field("rate", "posted / orders", "rate"),
                Field(
                    "by_currency",
                    "currency -> value (those orders' summed amount) and value_posted "
                    "(the posted ones')",
                ),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="rate",
            lower_is_better=False,
        ),
        Kpi(
            "reroute_rate",
            "Reroutes",
            "Of the orders shipped in the window, the share whose fulfilling location "
            "changed after release (a reroute said so, or the warehouse reported another "
            "location).",
            (
                Field("shipments", "orders first shipped in the window"),
                Field("rerouted", "of those, the ones whose fulfilling location changed"),
                Field("rate", "rerouted / shipments", "rate"),
            ),
            ORDERS,
            _NO_SYSTEM,
            headline="rate",
        ),
        Kpi(
            "inventory_drift",
            "Inventory drift",
            "Of the sku-locations a channel reported in the window, the share whose "
            "quantity differs from the source of truth's at a comparable time, and the "
            "units off.",
            (
                Field(
                    "pairs",
                    "channel, sku and location reported in the window and comparable with "
                    "the source of truth",
                ),
                Field("off", "of those, the ones differing by more than the threshold"),
                Field("rate", "off / pairs", "rate"),
                Field("units_off", "summed units by which those differ"),
            ),
            INVENTORY,
            frozenset({STORE, SYSTEM}),
            headline="rate",
        ),
        Kpi(
            "value_at_risk",
            "Value at risk",
            "The summed amount of the orders that have an exception open, per currency "
            "(never added across currencies), and per system and stage it waits on.",
            (
                Field("orders", "transactions with an open exception"),
                Field("by_currency", "currency -> summed amount of those transactions"),
                Field(
                    "by_system",
                    "system -> currency -> amount of the transactions with an open "
                    "exception about that system",
                ),
                Field(
                    "by_stage",
                    "stage still awaited (or the exception's kind) -> currency -> amount",
                ),
            ),
            EXCEPTIONS,
            _ALL,
            headline="orders",
        ),
        Kpi(
            "retries",
            "Retries and replays",
            "Steps that were a retry of a failed attempt, and messages sent again on purpose.",
            (
                Field("retries", "hops with a retry attempt above 0"),
                Field("replays", "hops that replayed an earlier message"),
            ),
            HOPS,
            _ALL,
            headline="retries",
        ),
        Kpi(
            "hop_health",
            "Health of each step",
            "Per system and operation: how many steps ran, how many failed, how long they took.",
            (
                Field(
                    "rows",
                    "list of {system, operation, count, error_rate, p50_ms, p95_ms}",
                ),
            ),
            HOPS,
            _ALL,
        ),
        Kpi(
            "resolution_time",
            "Time to fix",
            "Mean time from an alert firing to its resolution, and from an exception opening "
            "to its resolution.",
            (
                Field("alerts_mean_s", "mean alert fired -> resolved", "s"),
                Field("exceptions_mean_s", "mean exception opened -> resolved", "s"),
            ),
            RESOLUTION,
            _ALL,
            headline="exceptions_mean_s",
        ),
    )
}

#: hop_health row fields, in order.
HOP_HEALTH_ROW: Final = ("system", "operation", "count", "error_rate", "p50_ms", "p95_ms")


def ids() -> tuple[str, ...]:
    return tuple(KPIS)


def get(kpi_id: str) -> Kpi:
    return KPIS[kpi_id]
