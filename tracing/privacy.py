"""Masking customer PII out of hops before anything is stored (docs/architecture.md, "Privacy").

Two deny-lists replace what they find with :data:`MASK`:

* **by attribute name** (:data:`DEFAULT_KEY_PATTERNS`): ``customer.email``,
  ``shipping_address.city``, ``buyer``, ``payment.card`` ... Each dotted segment of a name is
  tried whole, and so are the last two joined by ``_``. Names of OpenTelemetry semantic
  conventions for hosts, URLs and network peers (:data:`DEFAULT_SPARE_KEY_PATTERNS`:
  ``server.address``, ``url.full``, ``network.peer.address`` ...) are spared: an address
  there is a machine's, not a customer's. Their values still go through the list below.
* **by value** (:data:`DEFAULT_VALUE_PATTERNS`), inside any free text: e-mail addresses,
  phone numbers (international, and the US forms ``(555) 867-5309``, ``555-867-5309``,
  ``5558675309``), card numbers (Luhn-checked), street addresses, US state and ZIP, UK
  postcodes, and names after a word that announces one (``customer``, ``ship to``, ``Dear``,
  ``Mr`` ...). A string holding a JSON object or array is masked as the structure it is.

Every pattern runs in linear time: each one starts only where its first token starts (a
look-behind refuses the middle of a run), runs use possessive quantifiers, and repetitions
are bounded, so a 1 MB value costs a few milliseconds, never the square of its length.
Lengths are also capped before any pattern runs (:data:`tracing.limits.TEXT` per string,
:data:`tracing.limits.ATTRIBUTE_NAME` per name), which bounds configured patterns too.

What is masked: attributes, extra detail, the status message, the operation, the platform
status, the store id and the source (a CloudEvents source with PII in it is replaced in the
delivery identity by a keyed digest, so re-deliveries still match). Business keys are
identifiers chosen by the sender and are not masked, except that a key whose kind names
PII (``retail.key.customer_email``) is dropped, and its attribute kept as :data:`MASK`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Final

import orjson

from tracing import conventions, limits
from tracing.records import HopRecord, Key

MASK: Final = "[masked]"
#: Marks a value pattern whose matches are masked only when their digits pass the Luhn
#: check (card numbers): write it first in the pattern.
LUHN: Final = "(?#luhn)"

#: Attribute-name segments that carry customer PII (matched whole, case-insensitively).
DEFAULT_KEY_PATTERNS: Final = (
    r".*e_?mail.*",
    r".*phone.*",
    r"(mobile|telephone|fax)",
    r"(first|last|full|middle|customer|client|billing|shipping|contact|recipient|buyer)_?name",
    r"name_on_card",
    r".*address.*",
    r"(street|street_?\d|city|zip|zip_?code|postal_?code|postcode)",
    r"(birth_?date|date_?of_?birth|ssn|tax_?id|card_?number|iban)",
    r"(customer|buyer|recipient|contact|destination|consignee|cardholder|card|pan|cvv|cvc)",
)

#: Semantic-convention names of hosts, URLs and network peers: never masked by name.
DEFAULT_SPARE_KEY_PATTERNS: Final = (
    r"(server|url|network|net)\..*",
    r"client\.(address|port|socket\..*)",  # client.name or client.email is a person
    r"messaging\.destination(_publish)?\..*",  # a queue, not a shipping destination
)

_WORD: Final = r"A-Za-z0-9_"
_UPPER: Final = r"A-ZÀ-ÖØ-Þ"
_LETTER: Final = r"A-Za-zÀ-ÖØ-öø-ÿ"
#: How a capitalised name word starts: "Ja" of "Jane", "O'B" of "O'Brien" (not "ID").
_NAME_HEAD: Final = rf"[{_UPPER}](?:[a-zß-öø-ÿ]|['\u2019][{_UPPER}])"
#: A capitalised name word: "Jane", "McDonald", "O'Brien", "Núñez" (not "ID" or "SKU").
_NAME_WORD: Final = rf"{_NAME_HEAD}[{_LETTER}'\u2019\-]*+"
_STREET_SUFFIX: Final = (
    r"street|st|road|rd|avenue|ave|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|square"
    r"|sq|terrace|way|parkway|pkwy|highway|hwy|close|crescent|gardens|row|mews|walk|circle"
    r"|cir|trail|alley"
)
_US_STATES: Final = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH"
    "|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC"
)
_NAME_CUES: Final = (
    r"customer|client|buyer|recipient|consignee|card ?holder|contact|attn|attention|dear"
    r"|(?:customer|buyer|recipient|contact|first|last|full|billing|shipping)[ _]?name"
    r"|(?:ship(?:ped)?|deliver(?:ed)?|bill(?:ed)?|sold|sen[dt]|mail(?:ed)?|addressed)[ \t]+to"
    r"|mrs?|ms|miss|mx|dr"
)

#: Values masked wherever they appear in free text, whatever the field is called. Each
#: pattern opens with a look-ahead at its first character, then a look-behind that refuses
#: the middle of a run: most positions are passed over in two cheap steps.
DEFAULT_VALUE_PATTERNS: Final = (
    # e-mail: starts only where the run of local-part characters starts
    r"(?=[A-Za-z0-9._%+\-])(?<![A-Za-z0-9._%+\-])"
    r"[A-Za-z0-9._%+\-]++@(?:[A-Za-z0-9\-]++\.)+[A-Za-z]{2,}+",
    # international phone numbers (+44 20 7946 0958)
    r"(?=\+)(?<![\w+])\+\d{1,3}[\s.\-]?\(?\d{1,4}\)?(?:[\s.\-]?\d{2,4}){2,4}",
    # US phone numbers: (555) 867-5309, 555-867-5309, 555.867.5309, 5558675309, 1-555-...
    r"(?=[(\d])(?<![\w+])(?:1[\s.\-]?)?(?:\([2-9]\d\d\)[\s.\-]?|[2-9]\d\d[\s.\-]?)"
    r"[2-9]\d\d[\s.\-]?\d{4}(?!\w)",
    # card numbers of 13 to 19 digits, grouped or not, whose digits pass the Luhn check
    LUHN + r"(?=[2-6])(?<!\w)[2-6](?:[ \-]?\d){12,18}(?!\w)",
    # street addresses: a house number, up to four words, a street type
    rf"(?=\d)(?<!\w)\d{{1,5}}[A-Za-z]?,?(?:[ \t]+[{_UPPER}][{_LETTER}'\u2019\-]*+){{1,4}}?[ \t]+"
    rf"(?i:{_STREET_SUFFIX})\b\.?",
    # US state and ZIP code: "IL 62704", "CA 94103-1234"
    rf"(?=[A-Z])(?<!\w)(?:{_US_STATES})[ \t]+\d{{5}}(?:-\d{{4}})?(?!\w)",
    # UK postcodes: SW1A 1AA, NW1 6XE, M1 1AE
    r"(?=[A-Z])(?<![A-Za-z0-9])(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)[ \t]?\d[A-Z]{2}(?![A-Za-z0-9])",
    # a name announced by the word before it: "customer Jane Doe", "Ship to: Jane Doe"
    rf"(?=[A-Za-z])(?<![A-Za-z])(?i:{_NAME_CUES})\.?[\"']?[ \t]*[:=]?[ \t]*[\"']?[ \t]*"
    rf"{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,3}}",
)

#: What a default pattern needs in a string to match at all: a string without it is not
#: searched (most strings have no "@", no "+", many no digit, many no capitalised word).
_DIGIT = "0123456789"
#: the name pattern's need: the start of a capitalised word (its cue words may be in any
#: case, the name may not). The costliest pattern (1.5 µs on a short line, every line): a
#: lowercase log line now skips it.
_NAME = "a capitalised word"
_NAME_START = re.compile(_NAME_HEAD).search
_NEEDS: Final = dict(
    zip(
        DEFAULT_VALUE_PATTERNS,
        ("@", "+", _DIGIT, _DIGIT, _DIGIT, _DIGIT, _DIGIT, _NAME),
        strict=True,
    )
)

_SPLIT = re.compile(r"[.\-/\s]")
_HAS_DIGIT = re.compile(r"\d").search
_JSON_START = ("{", "[")
#: Decisions per attribute name are cached (names repeat), up to this many names.
_DECIDED_MAX = 10_000
#: Masked short strings are remembered (resource attributes, methods, URLs repeat on every
#: span of a batch), up to this many; the memory starts over when full.
_MEMO_MAX = 8192
_MEMO_LEN = 256


def luhn(digits: str) -> bool:
    """True when ``digits`` (separators ignored) pass the Luhn check."""
    total = 0
    numbers = [int(c) for c in digits if c.isdigit()]
    for i, n in enumerate(reversed(numbers)):
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


class MaskPolicy:
    """Compiled deny-lists, ready to mask a record, an attribute map or a string."""

    def __init__(
        self,
        key_patterns: Iterable[str] = DEFAULT_KEY_PATTERNS,
        value_patterns: Iterable[str] = DEFAULT_VALUE_PATTERNS,
        spare_key_patterns: Iterable[str] = DEFAULT_SPARE_KEY_PATTERNS,
        *,
        max_text: int | None = limits.TEXT,
        digest_key: bytes = b"",
    ) -> None:
        keys = [p for p in key_patterns if p]
        values = [p for p in value_patterns if p]
        spares = [p for p in spare_key_patterns if p]
        self._key_re = re.compile("|".join(f"(?:{p})" for p in keys)) if keys else None
        self._spare_re = re.compile("|".join(f"(?:{p})" for p in spares)) if spares else None
        # One after the other: a single alternation of them all costs more than the sum
        # (every alternative is tried at every position).
        self._value_res = [(re.compile(p), p.startswith(LUHN), _NEEDS.get(p, "")) for p in values]
        self._memo: dict[str, str] = {}
        self._max_text = max_text
        self._digest_key = hashlib.sha256(digest_key).digest()
        self._decided: dict[str, bool] = {}

    # --- names -----------------------------------------------------------------------------

    def is_pii_key(self, name: str) -> bool:
        """True if an attribute called ``name`` holds PII.

        Each dotted segment is tried whole, and so are the last two joined by ``_``, so
        ``customer.email``, ``shipping_address.zip`` and ``customer.name`` are caught while
        ``service.name`` is not; spared semantic-convention names never are.
        """
        hit = self._decided.get(name)
        if hit is None:
            hit = self._decide(name[: limits.ATTRIBUTE_NAME].lower())
            if len(self._decided) < _DECIDED_MAX:
                self._decided[name] = hit
        return hit

    def _decide(self, name: str) -> bool:
        if self._key_re is None:
            return False
        if self._spare_re is not None and self._spare_re.fullmatch(name):
            return False
        parts = [p for p in _SPLIT.split(name) if p]
        if len(parts) >= 2:
            parts.append(parts[-2] + "_" + parts[-1])
        return any(self._key_re.fullmatch(p) for p in parts)

    # --- values ----------------------------------------------------------------------------

    @staticmethod
    def _luhn_mask(match: re.Match[str]) -> str:
        return MASK if luhn(match.group()) else match.group()

    def mask_text(self, text: str) -> str:
        """``text`` with every value pattern's match replaced by :data:`MASK`.

        A string past the length cap is cut first (nothing reads beyond it); one that was
        cut loses its last word as well, since a pattern cannot see a value that the cut
        split in two. A JSON object or array in a string is masked as a structure.
        """
        if not text:
            return text
        short = len(text) <= _MEMO_LEN
        if short:
            known = self._memo.get(text)
            if known is not None:
                return known
        masked = self._mask_text(text)
        if short:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[text] = masked
        return masked

    def _mask_text(self, text: str) -> str:
        if self._max_text is not None and len(text) > self._max_text:
            text = limits.fit(text, self._max_text)
        if text[0] in _JSON_START and text[-1] in "}]":
            structured = self._mask_json_text(text)
            if structured is not None:
                return structured
        digits = None
        for pattern, checked, needs in self._value_res:
            if needs:
                if needs is _DIGIT:
                    if digits is None:
                        digits = _HAS_DIGIT(text) is not None
                    if not digits:
                        continue
                elif needs is _NAME:
                    if _NAME_START(text) is None:
                        continue
                elif needs not in text:
                    continue
            text = pattern.sub(self._luhn_mask if checked else MASK, text)
        if text.endswith(limits.TRUNCATED):
            text = _drop_last_word(text)
        return text

    def _mask_json_text(self, text: str) -> str | None:
        try:
            parsed = orjson.loads(text)
            if not isinstance(parsed, dict | list):
                return None
            masked = self.mask_value(parsed)
            return orjson.dumps(masked).decode() if masked != parsed else text
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
            return None

    def mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return self.mask_attributes(value)
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        return value

    def mask_attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # This runs for every attribute of every record: names and short strings seen
        # before are answered from the caches of is_pii_key and mask_text without calling
        # them, and numbers, booleans and None pass as they are (what mask_value does).
        decided = self._decided
        memo = self._memo
        out: dict[str, Any] = {}
        for k, v in attrs.items():
            hit = decided.get(k)
            if hit is None:
                hit = self.is_pii_key(k)
            if hit:
                out[k] = MASK
                continue
            kind = type(v)
            if kind is str:
                known = memo.get(v)
                out[k] = known if known is not None else self.mask_text(v)
            elif kind is int or kind is float or kind is bool or v is None:
                out[k] = v
            else:
                out[k] = self.mask_value(v)
        return out

    # --- records ---------------------------------------------------------------------------

    def mask_record(self, record: HopRecord) -> None:
        """Mask a record in place (see the module docstring for what is masked).

        Masked columns are cut to their sizes again: a mask can be longer than what it hid.
        """
        if record.attributes:
            record.attributes = self.mask_attributes(record.attributes)
        if record.extra:
            record.extra = self.mask_attributes(record.extra)
        if record.status_message:
            record.status_message = self.mask_text(record.status_message)
        memo = self._memo
        for name, size in _MASKED_COLUMNS:
            value = getattr(record, name)
            if value:
                masked = memo.get(value)  # a text seen before, unchanged: the common case
                if masked is None:
                    masked = self.mask_text(value)
                if masked is not value and masked != value:
                    setattr(record, name, limits.fit(masked, size))
        source = record.source
        if source and memo.get(source) != source:
            self._mask_source(record)
        if record.keys and self._any_pii_kind(record.keys):
            kept = [k for k in record.keys if not self.is_pii_key(k.kind)]
            for kind in {k.kind for k in record.keys if self.is_pii_key(k.kind)}:
                record.attributes = {**record.attributes, f"retail.key.{kind}": MASK}
            record.keys = kept

    def _any_pii_kind(self, keys: list[Key]) -> bool:
        decided = self._decided
        for kind, _, _ in keys:
            hit = decided.get(kind)
            if hit is None:
                hit = self.is_pii_key(kind)
            if hit:
                return True
        return False

    def _mask_source(self, record: HopRecord) -> None:
        source = record.source
        masked = self.mask_text(source)
        if masked == source:
            return
        digest = hashlib.blake2b(
            source.encode("utf-8", "surrogatepass"), key=self._digest_key, digest_size=8
        ).hexdigest()
        token = f"{MASK[:-1]}:{digest}]"
        # the uid is ``<via>:<source>:...``; an event's is ``event:<system>:<source>:<id>``
        if record.via == conventions.VIA_EVENT:
            head = f"event:{record.system}:"
        else:
            head = record.uid.partition(":")[0] + ":"
        if record.uid.startswith(head + source + ":"):
            record.uid = f"{head}{token}:{record.uid[len(head) + len(source) + 1 :]}"
        record.source = limits.fit(masked, limits.SOURCE)


#: Hop columns of free text that are masked, and their sizes.
_MASKED_COLUMNS: Final = (
    ("operation", limits.OPERATION),
    ("platform_status", limits.PLATFORM_STATUS),
    ("store_id", limits.STORE_ID),
)


def _drop_last_word(text: str) -> str:
    """A cut value without the word the cut split (it may be half of an e-mail address)."""
    body = text[: -len(limits.TRUNCATED)]
    cut_at = max(body.rfind(" "), body.rfind("\n"), body.rfind("\t"))
    tail = body[cut_at + 1 :]
    if not tail or tail == MASK:
        return text
    return body[: cut_at + 1] + MASK + limits.TRUNCATED
