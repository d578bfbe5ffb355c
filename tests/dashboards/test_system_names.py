"""Pages survive any stored system name, even one ingest refuses today.

Hops stored before system names were checked at every ingest path can hold names no URL
carries as one segment ("erp/eu"), or none at all; the pages that link each system
(``/``, ``/ops/live/``, ``/systems/``) must still render.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from observatory.hops.store import store_records
from observatory.kpis import actions
from observatory.lib.clock import now
from tests.dashboards import seed
from tracing.records import HopRecord, Key

pytestmark = pytest.mark.django_db

ODD = ("erp/eu", "a b?c#d", "../..", "erp\nsecond line", "")


def test_pages_render_with_odd_stored_system_names(ops_client: Client) -> None:
    at = now() - timedelta(minutes=2)
    store_records(
        [
            HopRecord(
                uid=f"event:legacy:{i}",
                via="event",
                system=system,
                operation="post",
                start_time=at,
                end_time=at,
                outcome="error",
                status_message="failed",
                keys=[Key("order_number", f"#L{i}")],
            )
            for i, system in enumerate(ODD)
        ],
        at,
    )
    seed.stitch()
    actions.do_fill_rollups()
    for url in ("/", "/ops/live/", "/systems/", "/systems/?period=1h"):
        response = ops_client.get(url)
        assert response.status_code == 200, url
    html = ops_client.get("/ops/live/").content.decode()
    assert 'href="/systems/erp/eu/"' in html  # a "/" in a name still links its page
    assert ops_client.get("/systems/erp/eu/").status_code == 200


def test_system_url_falls_back_to_the_index() -> None:
    from observatory.dashboards.templatetags.kpi_tags import system_url

    assert system_url("erp") == "/systems/erp/"
    assert system_url("erp/eu") == "/systems/erp/eu/"
    assert system_url("a b?c") == "/systems/a%20b%3Fc/"
    assert system_url("") == "/systems/"
    assert system_url("erp\nx") == "/systems/"
