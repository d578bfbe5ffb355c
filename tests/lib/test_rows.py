"""``lib.rows.fetch`` gives what the ORM gives: the same instances with the same values,
converted the same way (JSON decoded, datetimes aware, decimals exact) on both backends."""

from __future__ import annotations

from django.test import Client

from observatory.hops.models import Hop
from observatory.lib.rows import fetch
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import Transaction
from tests.transactions.stitching import event, post_events


def _values(objs: list[Hop] | list[Transaction]) -> list[dict[str, object]]:
    return [{f.attname: getattr(o, f.attname) for f in o._meta.concrete_fields} for o in objs]


def test_fetch_matches_the_orm(ingest_client: Client) -> None:
    post_events(
        ingest_client,
        event("f1", {"order_number": "#9"}, amount="12.30", currency="EUR", channel="web"),
        event("f2", {"order_number": "#9", "erp_sales_order": "SO-9"}, t=5, stage="posted"),
        event("f3", {"order_number": "#10"}, t=9),
    )
    do_stitch()
    hops = fetch(Hop, "system = %s", ["erp"], "start_time DESC, id")
    orm = list(Hop.objects.filter(system="erp").order_by("-start_time", "id"))
    assert [h.pk for h in hops] == [h.pk for h in orm] and len(hops) == 3
    assert _values(hops) == _values(orm)
    assert all(h.start_time.tzinfo is not None and isinstance(h.attributes, dict) for h in hops)
    assert not any(h._state.adding for h in hops)  # loaded, as the ORM's are

    txs = fetch(Transaction, "id > %s", [0], "id")
    assert _values(txs) == _values(list(Transaction.objects.order_by("id")))
    assert [str(t.amount) for t in txs] == ["12.30", "None"]
