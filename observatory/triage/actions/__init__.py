"""Writes for triage: the sweep that opens and closes exceptions, and people's verbs.

``do_sweep`` reads what the stitcher wrote (stage columns, memberships, conflicts) and
keeps the queue true, with set-based queries: a fixed number of statements per SLA policy
and per stage, never one per transaction or hop.

* ``stuck``: a transaction past an SLA deadline (``sla.py`` rules, on business time) opens
  one, owned by the team of the system expected to act (``erp`` for ``posted``); it closes
  by itself when the stage (or a later one) arrives, or the transaction is cancelled. A
  transaction that was overdue while no sweep looked (history sent in bulk, a stopped
  worker, a stage arriving between two sweeps) gets one all the same, opened and resolved
  on business time: the exceptions do not depend on when the sweeps ran.
* ``failed_hop``: failed hops attached to a transaction open one per (transaction, system,
  operation), counting repeats; it closes when a later hop of the same system and
  operation on that transaction succeeds. Hops are claimed in ``TriagedHop`` so each is
  looked at once; only the failed hops of transactions the stitcher touched are scanned,
  through a partial index on failed hops that triage's migration adds to the hop table.
* ``duplicate``: the stitcher refuses to give a transaction two ERP sales orders; such a
  ``Conflict`` means the order was posted twice. Two ``captured`` stages from hops with
  different channel order ids mean it was captured twice.
* ``conflict``: every other refused link, naming both sides.

Exceptions on transactions that were merged away follow the merge.

Sweeps are idempotent (dedupe keys are unique among unresolved issues) and serialised
(an advisory lock on PostgreSQL; SQLite's write lock is taken at BEGIN).

The parts: ``verbs`` (people's: acknowledge, resolve, assign, notes, one or many at once,
each kept in the exception's history), ``sweep`` (``do_sweep``, and following merges),
``failed`` (failed hops), ``conflicts`` (duplicates and conflicts), and ``common``.
"""

from observatory.triage.actions.common import LIVE_TOPIC, SweepResult
from observatory.triage.actions.sweep import do_sweep
from observatory.triage.actions.verbs import (
    BULK_VERBS,
    NOBODY,
    BulkResult,
    InvalidTransition,
    IssueNotFound,
    do_acknowledge,
    do_add_note,
    do_bulk,
    do_resolve,
)

__all__ = [
    "BULK_VERBS",
    "LIVE_TOPIC",
    "NOBODY",
    "BulkResult",
    "InvalidTransition",
    "IssueNotFound",
    "SweepResult",
    "do_acknowledge",
    "do_add_note",
    "do_bulk",
    "do_resolve",
    "do_sweep",
]
