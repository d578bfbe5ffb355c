"""Business-key and system extraction from span and resource attributes (docs/ingest.md).

Keys come from three layers, in this order:

1. ``retail.key.<kind>`` attributes of the span (W3C baggage entries copied onto the span
   by a span processor arrive here too, as ordinary span attributes);
2. ``retail.key.<kind>`` attributes of the resource, for kinds the span did not carry;
3. the configurable extra rules (attribute name -> kind), for kinds neither layer above
   carried; a rule reads the span attribute of that name, else the resource attribute.

An explicit ``retail.key.*`` therefore always wins over a guess from a rule, and a span can
override what its resource says. An array value yields one key per element, marked
``fanout`` (docs/ingest.md, "Business keys": a batch hop joins each order named in
the array without linking those orders together).

These functions are pure and never import Django.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tracing import conventions, limits
from tracing.records import Key

_KIND_RE = re.compile(conventions.KEY_KIND_PATTERN)
_SYSTEM_RE = re.compile(conventions.SYSTEM_PATTERN)
#: What a service name loses to become a system name (docs/architecture.md, "Bounds").
_NOT_SYSTEM = re.compile(r"[^a-z0-9_\-]+")
_PREFIX = conventions.KEY_PREFIX
_PREFIX_LEN = len(_PREFIX)
_MAX_LEN = conventions.MAX_KEY_VALUE_LENGTH
# Kinds already seen valid, so the regex runs once per kind; bounded against junk senders.
_valid_kinds: set[str] = set()
_VALID_KINDS_CACHE = 4096
#: ``retail.key.<kind>`` attribute name -> its kind, for the names seen (kinds valid)
_kind_of: dict[str, str] = {}
# Key(...) runs a Python-level __new__; tuple.__new__ builds the same NamedTuple in a third
# of the time, which counts on the OTLP hot path.
_new_key = tuple.__new__


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class KeyRules:
    """Server-configurable extraction rules.

    ``attribute_kinds`` maps extra attribute names to key kinds, for teams that already tag
    ``order_id`` or ``shopify.order.id``: ``{"order_id": "order_number"}``.
    ``service_systems`` maps a resource ``service.name`` to a system:
    ``{"shopify-bridge": "shopify"}``, matched case-insensitively. Both are copied into
    read-only mappings; a kind that is not lower_snake_case raises ``ValueError`` at
    construction.
    """

    attribute_kinds: Mapping[str, str] = field(default_factory=dict)
    service_systems: Mapping[str, str] = field(default_factory=dict)
    #: whether a rule reads a ``retail.*`` attribute (set from ``attribute_kinds``): the
    #: decoders file every other attribute with the span's free ones
    retail_names: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        for name, kind in self.attribute_kinds.items():
            if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
                raise ValueError(f"rule for attribute {name!r}: key kind must be lower_snake_case")
        for service, system in self.service_systems.items():
            if not isinstance(system, str) or not _SYSTEM_RE.fullmatch(system.strip().lower()):
                raise ValueError(
                    f"rule for service {service!r}: system must be one lower-case word of "
                    "letters, digits, '_' or '-'"
                )
        # Frozen dataclass: bypass __setattr__ once, to freeze the caller's dicts.
        object.__setattr__(
            self, "retail_names", any(n.startswith("retail.") for n in self.attribute_kinds)
        )
        object.__setattr__(self, "attribute_kinds", _frozen(self.attribute_kinds))
        object.__setattr__(
            self,
            "service_systems",
            _frozen(
                {k.strip().lower(): v.strip().lower() for k, v in self.service_systems.items()}
            ),
        )


DEFAULT_RULES = KeyRules()


def _bad_value(attribute: str) -> ValueError:
    return ValueError(f"attribute {attribute!r}: key value must be a string or an integer")


def _too_long(attribute: str) -> ValueError:
    return ValueError(
        f"attribute {attribute!r}: key value longer than "
        f"{conventions.MAX_KEY_VALUE_LENGTH} characters"
    )


def _nul(attribute: str) -> ValueError:
    return ValueError(f"attribute {attribute!r}: key value must not contain a NUL byte")


def _key_value(attribute: str, value: Any) -> str:
    """One scalar attribute value as a key value ("" means: skip it)."""
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, bool):
        raise _bad_value(attribute)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"attribute {attribute!r}: key value must be a finite number")
        text = str(int(value)) if value.is_integer() else repr(value)
    elif value is None:
        return ""
    else:
        raise _bad_value(attribute)
    if len(text) > _MAX_LEN:
        raise _too_long(attribute)
    if "\x00" in text:
        raise _nul(attribute)
    return text


def _append(out: list[Key], attribute: str, kind: str, value: Any) -> None:
    """Append the key(s) one attribute carries, one per array element (fanout)."""
    if type(value) is str:  # the common case, kept free of calls
        text = value.strip()
        if len(text) > _MAX_LEN:
            raise _too_long(attribute)
        if "\x00" in text:
            raise _nul(attribute)
        if text:
            out.append(_new_key(Key, (kind, text, False)))
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, list | tuple | dict):
                raise ValueError(f"attribute {attribute!r}: nested arrays are not key values")
            text = _key_value(attribute, item)
            if text:
                out.append(_new_key(Key, (kind, text, True)))
    else:
        text = _key_value(attribute, value)
        if text:
            out.append(_new_key(Key, (kind, text, False)))


def _check_kind(attribute: str, kind: str) -> None:
    if kind not in _valid_kinds:
        if not _KIND_RE.fullmatch(kind):  # not match: "$" would let a final "\n" through
            raise ValueError(f"attribute {attribute!r}: key kind must be lower_snake_case")
        if len(_valid_kinds) < _VALID_KINDS_CACHE:
            _valid_kinds.add(kind)


def prefixed_keys(attrs: Mapping[str, Any]) -> list[Key]:
    """The keys of the ``retail.key.<kind>`` attributes of one attribute set, unmerged."""
    return named_keys({k: v for k, v in attrs.items() if k.startswith(_PREFIX)})


def named_keys(key_attrs: Mapping[str, Any]) -> list[Key]:
    """``prefixed_keys`` of attributes already known to be named ``retail.key.<kind>``
    (the OTLP decoder sorts them out while it reads a span's attributes)."""
    out: list[Key] = []
    kinds = _kind_of
    for name, value in key_attrs.items():
        kind = kinds.get(name)  # a name seen before: its kind, known valid
        if kind is None:
            kind = name[_PREFIX_LEN:]
            if kind not in _valid_kinds:
                _check_kind(name, kind)
            if len(kinds) < _VALID_KINDS_CACHE:
                kinds[name] = kind
        # The common cases of _append, inlined: a string, or an integer id.
        if type(value) is str and len(value) <= _MAX_LEN and "\x00" not in value:
            value = value.strip()
            if value:
                out.append(_new_key(Key, (kind, value, False)))
        elif type(value) is int:
            out.append(_new_key(Key, (kind, str(value), False)))
        else:
            _append(out, name, kind, value)
    return out


def merge_keys(
    span_keys: list[Key],
    span_attrs: Mapping[str, Any],
    resource_attrs: Mapping[str, Any],
    resource_keys: list[Key],
    rules: KeyRules,
) -> list[Key]:
    """``extract_keys`` from the layers' ``prefixed_keys``, each computed once by the caller
    (the OTLP decoder reads a resource once for all its spans). Extends ``span_keys``.

    ``span_attrs`` is only read by the extra rules.
    """
    keys = span_keys
    if resource_keys:
        if keys:
            found = {k.kind for k in keys}
            keys.extend(k for k in resource_keys if k.kind not in found)
        else:
            keys.extend(resource_keys)
    if rules.attribute_kinds:
        # the kinds found before any rule, worked out once a rule's attribute is present
        before: set[str] | None = None
        for name, kind in rules.attribute_kinds.items():
            if name in span_attrs:
                value = span_attrs[name]
            elif name in resource_attrs:
                value = resource_attrs[name]
            else:
                continue
            if before is None:
                before = {k[0] for k in keys}
            if kind not in before:
                _append(keys, name, kind, value)
    if len(keys) < 2:
        return keys
    # keys of distinct kinds cannot repeat a (kind, value) pair: the usual case, and the
    # cheaper set (a Key's fields by index: kind, value)
    if len({k[0] for k in keys}) == len(keys) or len({k[:2] for k in keys}) == len(keys):
        return keys
    return dedupe(keys)


def dedupe(keys: list[Key]) -> list[Key]:
    """Keys without repeated (kind, value) pairs, first occurrence kept; where one is a
    fanout key and the other not, the direct (non-fanout) one is kept."""
    if len(keys) < 2:
        return keys
    seen: dict[tuple[str, str], int] = {}
    out: list[Key] = []
    for key in keys:
        at = seen.get((key.kind, key.value))
        if at is None:
            seen[key.kind, key.value] = len(out)
            out.append(key)
        elif out[at].fanout and not key.fanout:
            # Named on its own as well as in an array: the direct link wins.
            out[at] = key
    return out


def extract_keys(
    span_attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any], rules: KeyRules
) -> list[Key]:
    """The business keys of one span, in precedence order, without duplicates.

    Values are stringified (ints -> str) and stripped; empty values are skipped. A kind
    that is not lower_snake_case, a value longer than ``MAX_KEY_VALUE_LENGTH`` or a value
    that cannot be a key (bool, map, nested array) raises ``ValueError`` naming the
    attribute: the caller rejects the span.
    """
    return merge_keys(
        prefixed_keys(span_attrs), span_attrs, resource_attrs, prefixed_keys(resource_attrs), rules
    )


def _system_value(value: Any) -> str:
    if value is None or isinstance(value, list | tuple | dict):
        return ""
    return str(value).strip().lower()


def system_from_service(service: str) -> str:
    """A service name made a system name: lower-cased, each run of other characters than
    letters, digits, '_' and '-' made one '-', at most 64 characters; "unknown" when that
    leaves no name starting with a letter. ``Order Service`` is ``order-service``."""
    name = _NOT_SYSTEM.sub("-", service.strip().lower()[:1024]).strip("-_")
    name = name[: limits.SYSTEM].rstrip("-_")
    return name if _SYSTEM_RE.fullmatch(name) else "unknown"


def resource_system(resource_attrs: Mapping[str, Any], rules: KeyRules) -> str:
    """The system a resource's spans belong to when a span does not name its own.

    An explicit ``retail.system`` comes back as sent (lower-cased): the decoder refuses it
    if it is no system name. A ``service.name`` is mapped by the rules, else made a
    system name (:func:`system_from_service`).
    """
    system = _system_value(resource_attrs.get(conventions.SYSTEM))
    if system:
        return system
    service = resource_attrs.get(conventions.SERVICE_NAME)
    if isinstance(service, str) and service.strip():
        mapped = rules.service_systems.get(service.strip().lower())
        if mapped:
            return mapped
        return system_from_service(service)
    return "unknown"


def system_for(
    span_attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any], rules: KeyRules
) -> str:
    """``retail.system`` of the span, else of the resource, else the rules' map of the
    resource ``service.name``, else ``service.name`` lower-cased; ``"unknown"`` if none.
    """
    system = _system_value(span_attrs.get(conventions.SYSTEM))
    return system or resource_system(resource_attrs, rules)
