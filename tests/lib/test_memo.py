"""Reads made once per page (``lib.memo``): read once inside a block, afresh outside one
(the executive page's reads: tests/dashboards/test_executive.py)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from observatory.lib import memo
from observatory.transactions.models import SlaPolicy
from observatory.triage import queries as triage_queries

pytestmark = pytest.mark.django_db

POSTING = {"transaction_kind": "order", "from_stage": "captured", "to_stage": "posted"}


def test_inside_a_block_a_key_is_read_once_and_outside_afresh() -> None:
    with CaptureQueriesContext(connection) as inside, memo.reads_once():
        first = triage_queries.policies()
        again = triage_queries.policies()
        with memo.reads_once():  # a nested block shares the outer one
            nested = triage_queries.policies()
    assert first == again == nested and first
    assert len(inside.captured_queries) == 1

    SlaPolicy.objects.filter(**POSTING, active=True).update(deadline_s=7200)
    fresh = triage_queries.policies()  # outside a block: the rows as they are now
    assert fresh != first
    assert {
        p.deadline_s for p in fresh if (p.from_stage, p.to_stage) == ("captured", "posted")
    } == {7200}
