"""The hop tables' columns are the sizes the decoders hold values to (tracing/limits.py)."""

from __future__ import annotations

from observatory.hops.models import Hop, HopKey
from tracing import limits


def test_hop_columns_agree_with_the_limits() -> None:
    for column, size in limits.column_sizes().items():
        assert Hop._meta.get_field(column).max_length == size, column
    amount = Hop._meta.get_field("amount")
    assert (amount.max_digits, amount.decimal_places) == (
        limits.AMOUNT_DIGITS,
        limits.AMOUNT_PLACES,
    )


def test_key_columns_agree_with_the_limits() -> None:
    assert HopKey._meta.get_field("kind").max_length == limits.KEY_KIND
    assert HopKey._meta.get_field("value").max_length == limits.KEY_VALUE


def test_every_bounded_text_column_of_a_hop_has_a_limit() -> None:
    # a new CharField needs a rule at the edge: add it to limits.column_sizes()
    fixed = {"via", "outcome", "trace_id", "span_id", "parent_span_id"}  # set by decoders
    char_fields = {
        f.name for f in Hop._meta.concrete_fields if f.get_internal_type() == "CharField"
    }
    assert char_fields - fixed == set(limits.column_sizes())
