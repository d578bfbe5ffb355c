"""``manage.py pipeline``: one pass of everything the worker's schedule does, in order."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from observatory.lib.clock import now
from tests.triage.helpers import ev, send

pytestmark = pytest.mark.django_db


def test_one_pass_stitches_sweeps_fills_and_evaluates(
    ingest_client: Client, api_client: Client
) -> None:
    t = now() - timedelta(minutes=10)
    send(
        ingest_client,
        ev("shopify", {"order_number": "#P1"}, t, stage="captured", channel="web"),
        ev("erp", {"order_number": "#P1", "erp_sales_order": "SO-P1"}, t + timedelta(seconds=20),
           stage="posted"),
    )  # fmt: skip
    out = StringIO()
    call_command("pipeline", stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("stitched 2 hops (1 transactions created, 1 touched, 0 merged)")
    assert "alerts:" in last
    # the KPIs read the figures at once: no wait for the worker's fill
    kpis = api_client.get("/api/v1/kpis", {"since": (t - timedelta(hours=1)).isoformat()})
    a2p = kpis.json()["kpis"]["acceptance_to_posting"]
    assert a2p["count"] == 1 and a2p["p50_s"] == pytest.approx(20, rel=0.01)


def _footprint() -> dict[str, tuple[int, object]]:
    """Every table's row count and highest primary key."""
    from django.apps import apps
    from django.db.models import Max

    out = {}
    for model in apps.get_models():
        pk = model._meta.pk.name
        agg = model.objects.aggregate(top=Max(pk))
        out[model._meta.db_table] = (model.objects.count(), agg["top"])
    return out


def test_one_pass_leaves_the_worker_schedule_nothing_to_do(
    ingest_client: Client, api_client: Client, settings: Any
) -> None:
    """After ``manage.py pipeline``, every task of the worker's beat schedule (but the
    hourly prune, which is ``manage.py prune``) finds nothing left to do: a task added to
    the schedule that the pass leaves out fails here."""
    from celery import current_app
    from django.core import mail

    from observatory.alerts.models import Channel

    # (a rule without channels of its own notifies every active channel)
    Channel.objects.create(name="ops mail", kind="email", to=["ops@example.com"])
    t = now() - timedelta(seconds=90)  # within the ERP error-rate rule's 5 minutes
    failed = [
        ev("erp", {"order_number": f"#F{i}"}, t + timedelta(seconds=i), operation="post",
           outcome="error")
        for i in range(30)
    ]  # fmt: skip
    send(ingest_client, *failed)
    send(
        ingest_client,
        ev("shopify", {"order_number": "#P2"}, t, stage="captured", channel="web"),
        ev("erp", {"order_number": "#P2"}, t + timedelta(seconds=20), stage="posted"),
    )
    call_command("pipeline", stdout=StringIO())
    assert Channel.objects.get().notifications.filter(status="sent").exists()
    assert mail.outbox, "the pass delivered what the evaluation queued"

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "observatory.pipeline.tasks.prune" in tasks
    current_app.loader.import_default_modules()
    before = _footprint()
    for name in sorted(tasks - {"observatory.pipeline.tasks.prune"}):
        current_app.tasks[name].apply().get()
        assert _footprint() == before, name
