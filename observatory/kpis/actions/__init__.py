"""Writes for KPIs: the incremental, resumable rollup fill, and retention.

``do_fill_rollups`` does three things, each in its own database transaction(s):

1. **Collect** (one transaction): find the hour buckets that changes since the last
   collection touched, and queue them as ``DirtyHour`` rows. The stages below hand their
   changes over in queues the fill claims (``lib.queues``: no wall-clock mark):

   * transactions the stitcher touched (``transactions.Touched``): the hour of their
     anchor time now and the hour ``TxBucket`` says they were counted in before (a merge
     empties the loser; a late capture moves the anchor); when their channel or store
     changed, or they won a merge, the hours of all their hops too (hops are counted
     under their channel);
   * the business hours of hops stitched, or delivered again (``hops.TouchedHour``);
   * exceptions opened, or moved to another transaction by a merge, which ``IssueSeen``
     has not counted where they now are: their transactions' hours (``IssueSeen`` also
     keeps each exception's channel and store, which follow its transaction's);
   * the SLA policies, when they changed since the last collection (a digest in
     ``FillState``): every order hour (within-deadline counts), and the late stages
     (``OpenStage``) of every transaction are rebuilt.

   The first collection (or ``full=True``) queues every hour that has data or rollups.
2. **Work off** the queue in chunks, each its own transaction: recompute every queued
   hour from the source rows (minute rows too, for recent hours), replace its rows, and
   rebuild the day rows of its days from their hours. Recomputing is idempotent, so a
   crash mid-way loses nothing: the rows stay queued and the next fill takes them.
3. **Sample** the reconciliation backlog once an hour (a gauge, for the trend chart).

Fills are serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite's write
lock is taken at BEGIN), so two workers never rebuild one day from half-written hours.

The parts: ``fill`` (``do_fill_rollups``, and step 3), ``collect`` (step 1),
``open_stages`` (the late stages behind the live backlog), ``rollups`` (step 2) and
``rows`` (what they share to write rows).
"""

from observatory.kpis.actions.fill import LIVE_TOPIC, FillResult, do_fill_rollups

__all__ = ["LIVE_TOPIC", "FillResult", "do_fill_rollups"]
