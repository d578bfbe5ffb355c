"""Business-key and system extraction (docs/ingest.md, "Business keys")."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracing import conventions
from tracing.keys import DEFAULT_RULES, KeyRules, dedupe, extract_keys, system_for
from tracing.records import Key

NO_RULES = DEFAULT_RULES


def pairs(keys: list[Key]) -> list[tuple[str, str, bool]]:
    return [(k.kind, k.value, k.fanout) for k in keys]


# --- the retail.key.* layers ----------------------------------------------------------------


def test_span_keys_link_several_kinds() -> None:
    span = {
        "retail.key.order_number": "#1001",
        "retail.key.shopify_order_id": 820982911946154508,
        "http.route": "/orders",
    }
    assert pairs(extract_keys(span, {}, NO_RULES)) == [
        ("order_number", "#1001", False),
        ("shopify_order_id", "820982911946154508", False),
    ]


def test_keys_are_namedtuples_with_fields() -> None:
    (key,) = extract_keys({"retail.key.order_number": "#1"}, {}, NO_RULES)
    assert isinstance(key, Key)
    assert (key.kind, key.value, key.fanout) == ("order_number", "#1", False)
    assert key == Key("order_number", "#1")


def test_resource_keys_fill_in_kinds_the_span_lacks() -> None:
    span = {"retail.key.order_number": "#1001"}
    resource = {
        "retail.key.order_number": "#9999",  # the span already says which order
        "retail.key.batch_id": "B-7",
        "service.name": "erp-connector",
    }
    assert pairs(extract_keys(span, resource, NO_RULES)) == [
        ("order_number", "#1001", False),
        ("batch_id", "B-7", False),
    ]


def test_resource_keys_alone() -> None:
    keys = extract_keys({}, {"retail.key.store_id": "ST12"}, NO_RULES)
    assert pairs(keys) == [("store_id", "ST12", False)]


def test_array_values_fan_out_one_key_per_element() -> None:
    span = {"retail.key.order_number": ["#1001", " #1002 ", "", "#1001", 1003]}
    assert pairs(extract_keys(span, {}, NO_RULES)) == [
        ("order_number", "#1001", True),
        ("order_number", "#1002", True),
        ("order_number", "1003", True),
    ]
    assert pairs(extract_keys({"retail.key.sku": ("A", "B")}, {}, NO_RULES)) == [
        ("sku", "A", True),
        ("sku", "B", True),
    ]


def test_values_are_stripped_stringified_and_empty_ones_skipped() -> None:
    span = {
        "retail.key.order_number": "  #1001\t",
        "retail.key.erp_sales_order": "   ",
        "retail.key.tracking_number": "",
        "retail.key.pos_receipt": None,
        "retail.key.shopify_order_id": 42.0,
    }
    assert pairs(extract_keys(span, {}, NO_RULES)) == [
        ("order_number", "#1001", False),
        ("shopify_order_id", "42", False),
    ]


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("retail.key.Order Number", "#1", "key kind must be lower_snake_case"),
        ("retail.key.", "#1", "key kind must be lower_snake_case"),
        ("retail.key.1st", "#1", "key kind must be lower_snake_case"),
        ("retail.key.order-number", "#1", "key kind must be lower_snake_case"),
        ("retail.key.order\n", "#1", "key kind must be lower_snake_case"),
        ("retail.key." + "k" * 65, "#1", "key kind must be lower_snake_case"),
        ("retail.key.order_number", "x" * 257, "longer than 256"),
        ("retail.key.order_number", ["ok", "x" * 257], "longer than 256"),
        ("retail.key.order_number", True, "string or an integer"),
        ("retail.key.order_number", {"a": "b"}, "string or an integer"),
        ("retail.key.order_number", [["#1"]], "nested arrays"),
        ("retail.key.order_number", float("nan"), "finite"),
    ],
)
def test_bad_keys_raise_value_error_naming_the_attribute(
    attribute: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        extract_keys({attribute: value}, {}, NO_RULES)
    assert f"attribute {attribute!r}" in str(caught.value)
    assert not isinstance(caught.value, KeyError)


def test_the_contract_example_message() -> None:
    with pytest.raises(ValueError) as caught:
        extract_keys({"retail.key.Order Number": "#1"}, {}, NO_RULES)
    assert str(caught.value) == (
        "attribute 'retail.key.Order Number': key kind must be lower_snake_case"
    )


def test_a_value_of_exactly_the_maximum_length_is_a_key() -> None:
    value = "x" * conventions.MAX_KEY_VALUE_LENGTH
    assert extract_keys({"retail.key.file": value}, {}, NO_RULES)[0].value == value


def test_bad_resource_keys_raise_too() -> None:
    with pytest.raises(ValueError, match=re.escape("'retail.key.BAD'")):
        extract_keys({}, {"retail.key.BAD": "1"}, NO_RULES)


# --- extra rules -------------------------------------------------------------------------------

RULES = KeyRules(
    attribute_kinds={
        "order_id": "order_number",
        "shopify.order.id": "shopify_order_id",
        "order.ids": "order_number",
    },
    service_systems={"shopify-bridge": "shopify", "erp-connector": "ERP"},
)


def test_extra_rules_read_attributes_teams_already_tag() -> None:
    span = {"order_id": "#1001", "shopify.order.id": 820982911946154508}
    assert pairs(extract_keys(span, {}, RULES)) == [
        ("order_number", "#1001", False),
        ("shopify_order_id", "820982911946154508", False),
    ]


def test_retail_key_attributes_win_over_rules() -> None:
    span = {"retail.key.order_number": "#1001", "order_id": "#2002"}
    assert pairs(extract_keys(span, {}, RULES)) == [("order_number", "#1001", False)]
    resource = {"retail.key.shopify_order_id": "77"}
    keys = extract_keys({"shopify.order.id": "88"}, resource, RULES)
    assert pairs(keys) == [("shopify_order_id", "77", False)]


def test_rules_read_the_span_then_the_resource() -> None:
    keys = extract_keys({}, {"order_id": "#5"}, RULES)
    assert pairs(keys) == [("order_number", "#5", False)]
    keys = extract_keys({"order_id": "#6"}, {"order_id": "#5"}, RULES)
    assert pairs(keys) == [("order_number", "#6", False)]


def test_rule_arrays_fan_out_and_a_direct_key_wins_over_its_fanout_twin() -> None:
    span = {"order.ids": ["#1", "#2"], "order_id": "#2"}
    assert pairs(extract_keys(span, {}, RULES)) == [
        ("order_number", "#2", False),
        ("order_number", "#1", True),
    ]


def test_rules_do_not_apply_without_configuration() -> None:
    assert extract_keys({"order_id": "#1001"}, {}, NO_RULES) == []


def test_rule_with_a_bad_kind_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="'order_id'"):
        KeyRules(attribute_kinds={"order_id": "Order Number"})


def test_rules_are_immutable_copies() -> None:
    source = {"order_id": "order_number"}
    rules = KeyRules(attribute_kinds=source)
    source["other"] = "sku"
    assert dict(rules.attribute_kinds) == {"order_id": "order_number"}
    with pytest.raises(TypeError):
        rules.attribute_kinds["x"] = "y"  # type: ignore[index]


def test_dedupe_keeps_first_and_prefers_direct_keys() -> None:
    keys = [Key("sku", "A", True), Key("sku", "B"), Key("sku", "A"), Key("sku", "B", True)]
    assert dedupe(keys) == [Key("sku", "A"), Key("sku", "B")]


# --- the system ------------------------------------------------------------------------------


def test_system_from_the_span_first() -> None:
    resource = {"retail.system": "middleware", "service.name": "shopify-bridge"}
    assert system_for({"retail.system": " ERP "}, resource, RULES) == "erp"


def test_system_from_the_resource_next() -> None:
    resource = {"retail.system": "middleware", "service.name": "shopify-bridge"}
    assert system_for({}, resource, RULES) == "middleware"


def test_system_from_the_service_map_then_the_service_name() -> None:
    assert system_for({}, {"service.name": "shopify-bridge"}, RULES) == "shopify"
    assert system_for({}, {"service.name": "erp-connector"}, RULES) == "erp"
    assert system_for({}, {"service.name": "Shopify-Bridge "}, RULES) == "shopify"
    assert system_for({}, {"service.name": "WMS"}, RULES) == "wms"
    assert system_for({}, {"service.name": "shopify-bridge"}, NO_RULES) == "shopify-bridge"


def test_service_names_become_system_names() -> None:
    assert system_for({}, {"service.name": "Order Service"}, NO_RULES) == "order-service"
    assert system_for({}, {"service.name": "erp/eu"}, NO_RULES) == "erp-eu"
    assert system_for({}, {"service.name": "wms\x00bridge"}, NO_RULES) == "wms-bridge"
    assert system_for({}, {"service.name": "A" * 100_000}, NO_RULES) == "a" * 64
    assert system_for({}, {"service.name": "1password"}, NO_RULES) == "unknown"
    assert system_for({}, {"service.name": "../"}, NO_RULES) == "unknown"


def test_an_explicit_system_is_returned_as_sent_for_the_decoder_to_judge() -> None:
    # the decoders refuse a span whose retail.system is no system name (tracing/limits.py)
    assert system_for({"retail.system": "ERP/EU"}, {}, NO_RULES) == "erp/eu"


def test_a_service_rule_naming_no_system_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="'erp-connector'"):
        KeyRules(service_systems={"erp-connector": "erp/eu"})


def test_a_nul_byte_in_a_key_value_is_refused() -> None:
    for value in ("#1\x00", ["#1", "#2\x00"]):
        with pytest.raises(ValueError, match="NUL"):
            extract_keys({"retail.key.order_number": value}, {}, NO_RULES)


def test_system_unknown_when_nothing_names_it() -> None:
    assert system_for({}, {}, RULES) == "unknown"
    assert system_for({"retail.system": ""}, {"service.name": "  "}, RULES) == "unknown"


# --- properties ------------------------------------------------------------------------------

kinds = st.from_regex(re.compile(r"[a-z][a-z0-9_]{0,20}"), fullmatch=True)
no_nul = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00"
)  # a NUL refuses the span: tested apart
values = st.one_of(
    st.text(no_nul, max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.lists(st.text(no_nul, max_size=20), max_size=4),
)


@given(
    span=st.dictionaries(kinds, values, max_size=5),
    resource=st.dictionaries(kinds, values, max_size=5),
)
def test_precedence_and_uniqueness(span: dict[str, Any], resource: dict[str, Any]) -> None:
    span_attrs = {conventions.KEY_PREFIX + k: v for k, v in span.items()}
    resource_attrs = {conventions.KEY_PREFIX + k: v for k, v in resource.items()}
    keys = extract_keys(span_attrs, resource_attrs, NO_RULES)

    assert len({(k.kind, k.value) for k in keys}) == len(keys)
    # kinds the span really carries: an empty value (or empty list) is no key at all
    span_kinds = {k for k, v in span.items() if extract_keys({"retail.key." + k: v}, {}, NO_RULES)}
    for key in keys:
        assert key.value and key.value == key.value.strip()
        # Taken from the resource only for a kind the span carried no value of.
        source = span if key.kind in span_kinds else resource
        raw = source[key.kind]
        assert key.fanout == isinstance(raw, list)
        elements = raw if isinstance(raw, list) else [raw]
        assert key.value in [str(v).strip() for v in elements]
    for kind in span_kinds:
        assert all(k.kind != kind or k.value in _values(span[kind]) for k in keys)


def _values(raw: Any) -> list[str]:
    return [str(v).strip() for v in (raw if isinstance(raw, list) else [raw])]
