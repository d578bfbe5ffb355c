"""The corpus through ``POST /api/v1/events``: CloudEvents structured, binary and batch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from django.test import Client

from observatory.hops.models import Hop
from tests.ingest.fuzz.expect import (
    LONG,
    Expect,
    Reject,
    Store,
    assert_amount,
    assert_stored_rows_fit,
    assert_year,
    attribute,
    check,
    clean_attributes,
    cut,
    equals,
    nested,
    no_nul,
    no_server_error,
    truncated_attribute,
)

ERP = "https://erp.example.com/netsuite"


@dataclass(frozen=True)
class EventCase:
    name: str
    expect: Expect
    context: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def event(event_id: str, case: EventCase | None = None) -> CloudEvent:
    context = {
        "id": event_id,
        "source": ERP,
        "type": "com.acme.erp.salesorder.posted",
        "time": "2026-11-20T10:15:00Z",
    }
    data: dict[str, Any] = {
        "system": "erp",
        "keys": {"order_number": f"#{event_id[:40]}"},
        "platform_status": "Pending Fulfillment",
    }
    if case is not None:
        context.update(case.context)
        data.update(case.data)
    return CloudEvent(context, data)


def _event_uid(ev: CloudEvent) -> str:
    return f"event:{ev.data['system']}:{ev['source'].strip()}:{ev['id'].strip()}"


EVENT_CASES = [
    EventCase("id-nul", Reject("id"), {"id": "e-\x001"}),
    EventCase("id-1025", Reject("id"), {"id": "i" * 1025}),
    EventCase("id-1024", Store(), {"id": "i" * 1024}),
    EventCase("id-600", Store(), {"id": "i" * 600}),
    EventCase("source-513", Reject("source"), {"source": "urn:" + "s" * 509}),
    EventCase("source-512", Store(), {"source": "urn:" + "s" * 508}),
    EventCase("source-nul", Reject("source"), {"source": "urn:erp\x00"}),
    EventCase(
        "subject-nul",
        Store(lambda hop: attribute("subject", lambda v: "\x00" not in v)(hop)),
        {"subject": "SO-\x0048213"},
    ),
    EventCase("subject-long", Store(truncated_attribute("subject")), {"subject": "s" * LONG}),
    EventCase(
        "extension-nul",
        Store(lambda hop: _clean_extension(hop, "acmeext")),
        {"acmeext": "v\x00w"},
    ),
    EventCase("time-year-1-shifted", Reject("time"), {"time": "0001-01-01T00:00:00+01:00"}),
    EventCase("time-year-9999-shifted", Reject("time"), {"time": "9999-12-31T23:59:59-01:00"}),
    EventCase("time-1969", Reject("time"), {"time": "1969-12-31T23:59:59Z"}),
    EventCase("time-2201", Reject("time"), {"time": "2201-01-01T00:00:00Z"}),
    EventCase(
        "time-2200", Store(lambda hop: assert_year(hop, 2200)), {"time": "2200-12-31T23:59:59Z"}
    ),
    EventCase(
        "time-1970", Store(lambda hop: assert_year(hop, 1970)), {"time": "1970-01-01T00:00:00Z"}
    ),
    EventCase("duration-past-2200", Reject("data.duration_ms"), data={"duration_ms": 1e16}),
    EventCase("error-long", Store(cut("status_message")), data={"error": "x" * 120_000}),
    EventCase("error-nul", Store(no_nul("status_message")), data={"error": "ERP\x00 503"}),
    EventCase("system-65", Reject("data.system"), data={"system": "s" + "x" * 64}),
    EventCase("system-slash", Reject("data.system"), data={"system": "erp/eu"}),
    EventCase("channel-40", Reject("data.channel"), data={"channel": "c" * 40}),
    EventCase("channel-32", Store(equals("channel", "c" * 32)), data={"channel": "c" * 32}),
    EventCase("store-70", Reject("data.store_id"), data={"store_id": "s" * 70}),
    EventCase("store-64", Store(equals("store_id", "s" * 64)), data={"store_id": "s" * 64}),
    EventCase("store-nul", Reject("data.store_id"), data={"store_id": "ST\x0012"}),
    EventCase(
        "platform-status-200", Store(cut("platform_status")), data={"platform_status": "p" * 200}
    ),
    EventCase("operation-300", Store(cut("operation")), data={"operation": "o" * 300}),
    EventCase(
        "operation-255", Store(equals("operation", "o" * 255)), data={"operation": "o" * 255}
    ),
    EventCase("currency-7", Reject("data.currency"), data={"currency": "EURO123"}),
    EventCase("amount-1e15", Reject("data.amount"), data={"amount": 1e15}),
    EventCase("amount--1e20", Reject("data.amount"), data={"amount": -1e20}),
    EventCase("amount-1E+1000", Reject("data.amount"), data={"amount": "1E+1000"}),
    EventCase(
        "amount-max",
        Store(lambda hop: assert_amount(hop, "999999999999.99")),
        data={"amount": "999999999999.99"},
    ),
    EventCase("retry-2^31", Reject("data.retry_attempt"), data={"retry_attempt": 2**31}),
    EventCase("retry-2^64", Reject("data.retry_attempt"), data={"retry_attempt": 2**64 - 1}),
    EventCase(
        "retry-2^31-1",
        Store(equals("retry_attempt", 2**31 - 1)),
        data={"retry_attempt": 2**31 - 1},
    ),
    EventCase("attribute-nested-300", Reject("deep"), data={"attributes": {"deep": nested(300)}}),
    EventCase("attribute-nested-30", Reject("deep"), data={"attributes": {"deep": nested(30)}}),
    EventCase("attribute-nested-16", Store(), data={"attributes": {"deep": nested(16)}}),
    EventCase(
        "attribute-value-long",
        Store(truncated_attribute("note")),
        data={"attributes": {"note": "v" * LONG}},
    ),
    EventCase("attribute-nul", Store(clean_attributes), data={"attributes": {"n\x00te": "a\x00b"}}),
    EventCase(
        "key-nul", Reject("data.keys.order_number"), data={"keys": {"order_number": "#1\x00"}}
    ),
]


def _clean_extension(hop: Hop, name: str) -> None:
    value = hop.extra["extensions"][name]
    assert "\x00" not in value and "\ufffd" in value


def _event_cases(mode: str) -> list[Any]:
    out = []
    for case in EVENT_CASES:
        # HTTP header values cannot carry a JSON object: such events go structured only
        if mode == "binary" and any(not isinstance(v, str) for v in case.context.values()):
            continue
        out.append(pytest.param(case, id=case.name))
    return out


def _post_event(client: Client, ev: CloudEvent, binary: bool) -> Any:
    headers, body = (to_binary if binary else to_structured)(ev)
    headers = dict(headers)
    ctype = headers.pop("content-type", headers.pop("Content-Type", "application/json"))
    return client.post("/api/v1/events", body, content_type=ctype, headers=headers)


def _single_event(client: Client, case: EventCase, binary: bool) -> None:
    good, bad = event("good-1"), event("bad-2", case)
    answer = _post_event(client, good, binary)
    assert answer.status_code == 200, answer.content
    response = _post_event(client, bad, binary)
    no_server_error(response)
    if isinstance(case.expect, Reject):
        assert response.status_code == 400, response.content
        (rejection,) = orjson.loads(response.content)["rejected"]
        assert case.expect.word in rejection["reason"], rejection["reason"]
    else:
        assert response.status_code == 200, response.content[:300]
    stored = set(Hop.objects.values_list("uid", flat=True))
    check(case.expect, stored, _event_uid(bad), _event_uid(good))
    assert_stored_rows_fit()


@pytest.mark.django_db
@pytest.mark.parametrize("case", _event_cases("structured"))
def test_cloudevents_structured(client: Client, case: EventCase) -> None:
    _single_event(client, case, binary=False)


@pytest.mark.django_db
@pytest.mark.parametrize("case", _event_cases("binary"))
def test_cloudevents_binary(client: Client, case: EventCase) -> None:
    _single_event(client, case, binary=True)


@pytest.mark.django_db
@pytest.mark.parametrize("case", _event_cases("batch"))
def test_cloudevents_batch(client: Client, case: EventCase) -> None:
    good, bad = event("good-1"), event("bad-2", case)
    batch = [json.loads(to_structured(ev)[1]) for ev in (good, bad)]
    body = json.dumps(batch).encode()  # orjson stops at 255 levels: the corpus goes past
    response = client.post(
        "/api/v1/events", body, content_type="application/cloudevents-batch+json"
    )
    no_server_error(response)
    assert response.status_code == 200, response.content[:300]
    answer = orjson.loads(response.content)
    if isinstance(case.expect, Reject):
        (rejection,) = answer["rejected"]
        assert rejection["index"] == 1
        assert case.expect.word in rejection["reason"], rejection["reason"]
    else:
        assert answer["rejected"] == []
    stored = set(Hop.objects.values_list("uid", flat=True))
    check(case.expect, stored, _event_uid(bad), _event_uid(good))
    assert_stored_rows_fit()
