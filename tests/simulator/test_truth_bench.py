"""``bench/truth.py``, smaller: the chaos scenario driven by the simulator beside the real
Celery worker and web server (as ``make run`` starts them), scored against the ground
truth the simulator wrote. Every kind of exception must match what really happened, no
alert may fire that the truth does not support, and the KPIs must equal the truth's own.

It runs on the database the suite runs on: SQLite in a scratch folder, or a scratch
database on the PostgreSQL server of ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import os

import pytest

from bench.truth import report, run_scenario

pytestmark = pytest.mark.slow


def test_chaos_against_its_ground_truth() -> None:
    url = os.environ.get("DATABASE_URL", "")
    database = "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"
    args = argparse.Namespace(
        seed=12, backfill_days=0.1, rate=1.0, speed=10.0, duration=150.0, settle=100.0, margin=15.0
    )
    r = run_scenario("chaos", args, database)
    print(report("chaos", r))  # shown when an assertion fails
    for kind, k in r["kinds"].items():
        assert k["precision"] >= 0.99 and k["recall"] >= 0.99, (kind, k)
    # the run is big enough to hold lost orders and conflicting ids (one in 150 orders)
    assert r["kinds"]["stuck"]["truth"] > 0 and r["kinds"]["conflict"]["truth"] > 0
    assert r["alerts"]["unsupported"] == [], r["alerts"]
    for name, k in r["kpis"].items():
        if k["truth"]:
            assert k["error"] is not None and k["error"] <= 0.01, (name, k)
