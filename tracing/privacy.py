"""Masking customer PII out of hop attributes before anything is stored.

A deny-list by attribute name (``customer.email``, ``shipping_address.city``) and by value
(an e-mail address or an international phone number inside any string) replaces the
value with ``MASK``. Business keys are identifiers chosen by the sender and are not
masked; everything free-form is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tracing.records import HopRecord

MASK = "[masked]"


class MaskPolicy:
    """Compiled deny-lists. Decisions per attribute name are cached: names repeat."""

    def __init__(self, key_patterns: Iterable[str], value_patterns: Iterable[str]) -> None:
        keys = [p for p in key_patterns if p]
        values = [p for p in value_patterns if p]
        self._key_re = re.compile("|".join(f"(?:{p})" for p in keys)) if keys else None
        self._value_re = re.compile("|".join(f"(?:{p})" for p in values)) if values else None
        self._decided: dict[str, bool] = {}

    def is_pii_key(self, name: str) -> bool:
        """True if an attribute called ``name`` holds PII.

        Each dotted segment is tried whole, and so are the last two joined by ``_``, so
        ``customer.email``, ``shipping_address.zip`` and ``customer.name`` are caught while
        ``service.name`` is not.
        """
        hit = self._decided.get(name)
        if hit is None:
            hit = False
            if self._key_re is not None:
                parts = [p for p in re.split(r"[.\-/\s]", name.lower()) if p]
                if len(parts) >= 2:
                    parts.append(parts[-2] + "_" + parts[-1])
                hit = any(self._key_re.fullmatch(p) for p in parts)
            if len(self._decided) < 10_000:
                self._decided[name] = hit
        return hit

    def mask_text(self, text: str) -> str:
        if self._value_re is None or not text:
            return text
        return self._value_re.sub(MASK, text)

    def mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return self.mask_attributes(value)
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        return value

    def mask_attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {k: (MASK if self.is_pii_key(k) else self.mask_value(v)) for k, v in attrs.items()}

    def mask_record(self, record: HopRecord) -> None:
        """Mask a record in place: its attributes, extra detail and status message."""
        if record.attributes:
            record.attributes = self.mask_attributes(record.attributes)
        if record.extra:
            record.extra = self.mask_attributes(record.extra)
        if record.status_message:
            record.status_message = self.mask_text(record.status_message)
