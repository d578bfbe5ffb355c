"""Writes for reconciliation: the incremental run (``run``), its parts (``items``,
``days``, ``issues``, ``sql``), and the configuration (``rules``)."""

from observatory.reconciliation.actions.run import (
    CONSUMER,
    LIVE_TOPIC,
    RuleRun,
    RunResult,
    do_reconcile,
)

__all__ = ["CONSUMER", "LIVE_TOPIC", "RuleRun", "RunResult", "do_reconcile"]
