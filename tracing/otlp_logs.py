"""OTLP/HTTP log bodies -> hop records, and the answers (docs/ingest.md, "OTLP/HTTP logs").

A log record that carries business keys (``retail.key.*`` on the record, its scope or its
resource, or an attribute named by the key rules) is one hop, read exactly as a span is:
``tracing.otlp_common.hop_record`` builds it, from the same attributes, so the two signals
cannot drift apart. What a span says with its fields a log record says with its own:

* the outcome: ``severity_number`` ERROR (17) or above is an error (when the number is
  unspecified, a ``severity_text`` such as ``ERROR`` or ``FATAL``);
* the status message: the body (a string; any other value as JSON), kept for any outcome;
* the business time: ``time_unix_nano``, else ``observed_time_unix_nano``, else arrival;
* the operation: ``event_name``, else the ``event.name`` attribute, else the scope's name
  (a logger's name), else ``log``;
* trace and span ids, when the record has them.

A record without keys is not stored: it is counted in ``DecodeResult.dropped`` (by system)
and the server says so in its answer. A record has no id of its own, so its delivery
identity is its trace id and a digest of all it says, its time included
(``log:<trace id>:<digest>``; without a trace id, ``log:<time in hex ns>:<digest>``): the
same record sent again, in either encoding, is a duplicate.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

import orjson
import xxhash
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from tracing import conventions, limits
from tracing.keys import DEFAULT_RULES, KeyRules
from tracing.otlp_common import (
    NO_ITEMS,
    STATUS_CODE_ERROR,
    Resource,
    as_text,
    count_truncated,
    hop_record,
    j_attrs,
    j_enum,
    j_str,
    j_uint64,
    json_items,
    pb_attrs,
    pb_split,
    pb_value,
    read_resource,
    scope_name,
    scoped,
    split_attrs,
)
from tracing.records import DecodeError, DecodeResult, Rejection

__all__ = [
    "SEVERITY_ERROR",
    "decode_json",
    "decode_protobuf",
    "dropped_message",
    "encode_response",
    "severity_name",
]

#: ``SEVERITY_NUMBER_ERROR``: this and above (ERROR2.., FATAL..) make the hop a failure.
SEVERITY_ERROR: Final = 17
#: ``severity_text`` words that mean an error when ``severity_number`` is unspecified (0).
ERROR_TEXTS: Final = frozenset(
    {"ERROR", "ERR", "FATAL", "CRITICAL", "CRIT", "ALERT", "EMERG", "EMERGENCY", "PANIC", "SEVERE"}
)
#: The operation of a record that names none.
DEFAULT_OPERATION: Final = "log"
EVENT_NAME: Final = "event.name"

_VIA = conventions.VIA_OTLP_LOG
_xxh64_hex = xxhash.xxh64_hexdigest
#: The second seed of a record without a trace id (its 128 bits are two XXH64 digests).
_SECOND_SEED: Final = 0x9E3779B97F4A7C15
_SYSTEM = conventions.SYSTEM
_SYSTEM_RE = re.compile(conventions.SYSTEM_PATTERN)
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
#: Proto3 JSON may name an enum: SEVERITY_NUMBER_TRACE (1) .. SEVERITY_NUMBER_FATAL4 (24).
_SEVERITIES = {
    f"SEVERITY_NUMBER_{name}": number
    for number, name in enumerate(
        ["UNSPECIFIED", *(f"{level}{n}" for level in _LEVELS for n in ("", "2", "3", "4"))]
    )
}


#: Severity number -> its short name (9 ``INFO``, 10 ``INFO2``, 17 ``ERROR``).
_SEVERITY_NAMES = {
    number: name.removeprefix("SEVERITY_NUMBER_") for name, number in _SEVERITIES.items() if number
}


def severity_name(number: int) -> str:
    """The short name of a severity number, or "" outside 1..24."""
    return _SEVERITY_NAMES.get(number, "")


def _resource_id(res: Resource) -> int:
    """What the digest of each record of ``res`` starts from: its seed, a digest of the
    resource's attributes."""
    return xxhash.xxh64_intdigest(orjson.dumps(res.attrs, option=orjson.OPT_SORT_KEYS, default=str))


def _body_text(body: Any) -> str:
    if isinstance(body, str):
        return body.strip()
    if isinstance(body, dict | list):
        return orjson.dumps(body, default=str).decode()
    return as_text(body)


def _is_error(severity_number: int, severity_text: str) -> bool:
    if severity_number:
        return severity_number >= SEVERITY_ERROR
    return severity_text.strip().upper() in ERROR_TEXTS


def _keyless(res: Resource, free: dict[str, Any], hop: dict[str, Any], rules: KeyRules) -> bool:
    """True when no layer can give the record a key: it is dropped without building a hop."""
    if res.keys or res.key_error:
        return False
    for name in rules.attribute_kinds:
        if name in free or name in hop or name in res.attrs:
            return False
    return True


def _system_of(res: Resource, hop: dict[str, Any]) -> str:
    """The system a dropped record is counted under (``unknown`` for no system name)."""
    value = hop.get(_SYSTEM)
    system = (as_text(value).lower() if value is not None else "") or res.system
    return system if _SYSTEM_RE.fullmatch(system) else "unknown"


class _Reader:
    """The records of one request as they are decoded, into one ``DecodeResult``."""

    def __init__(self, rules: KeyRules, received_at: datetime | None) -> None:
        self.rules = rules
        self.received_at = received_at
        self.result = DecodeResult()
        self.index = -1

    def reject(self, reason: str) -> None:
        self.result.rejected.append(
            Rejection(index=self.index, reason=f"log record {self.index}: {reason}")
        )

    def drop(self, system: str) -> None:
        dropped = self.result.dropped
        dropped[system] = dropped.get(system, 0) + 1

    def record(
        self,
        res: Resource,
        res_id: int,
        scope: str,
        trace_hex: str,
        span_hex: str,
        event_name: str,
        time_ns: int,
        observed_ns: int,
        severity_number: int,
        severity_text: str,
        body: Any,
        attrs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    ) -> None:
        """One log record: a hop when it has keys, else counted as dropped."""
        free, hop, key_attrs = attrs
        if not key_attrs and _keyless(res, free, hop, self.rules):
            self.drop(_system_of(res, hop))
            return
        # (the common cases inline: this runs for every record)
        message = body.strip() if type(body) is str else "" if body is None else _body_text(body)
        at = time_ns or observed_ns
        name = event_name or free.get(EVENT_NAME) or scope or DEFAULT_OPERATION
        if type(name) is not str:
            name = as_text(name) or DEFAULT_OPERATION
        if len(name) > limits.OPERATION:  # the column's size: cut, as any free text
            name = limits.fit(name, limits.OPERATION)
        # The identity: everything the record says, in a form both encodings give alike
        # (attributes in the order sent: a sender's retry sends them in the same order).
        said = [at, scope, span_hex, name, severity_number, severity_text, message, free, hop,
                key_attrs]  # fmt: skip
        try:  # without ``default`` unless a value needs it (the same bytes, a third cheaper)
            text = orjson.dumps(said)
        except orjson.JSONEncodeError:
            text = orjson.dumps(said, default=str)
        # The digest tells deliveries apart, nothing more: XXH64, scalar code (the xxhash
        # package's XXH3 runs AVX-512 on inputs over 240 bytes where the CPU has it, which
        # cost 1.6 µs a record in the server: docs/performance.md). Led by the trace id, as
        # a span's identity is (the receipts' unique index then takes a request's records
        # in a few places, not one a record), 64 bits tell the records of one trace apart;
        # a record without a trace is led by its time, and told apart from the records of
        # that time by 128 bits (two digests under different seeds).
        uid = (
            f"log:{trace_hex}:{_xxh64_hex(text, res_id)}"
            if trace_hex
            else f"log:{at:x}:{_xxh64_hex(text, res_id)}{_xxh64_hex(text, res_id ^ _SECOND_SEED)}"
        )
        try:
            record = hop_record(
                res,
                scope,
                trace_hex,
                span_hex,
                "",  # parent span id
                name,
                0,  # span kind
                at,
                0,  # no end time: the hop ends as it starts (one datetime, not two alike)
                STATUS_CODE_ERROR
                if severity_number >= SEVERITY_ERROR
                or (not severity_number and _is_error(0, severity_text))
                else 0,
                message,
                free,
                hop,
                key_attrs,
                NO_ITEMS,
                NO_ITEMS,
                self.rules,
                self.received_at,
                uid,
                _VIA,
            )
        except ValueError as exc:
            self.reject(str(exc))
            return
        if not record.keys:  # the rules found an attribute, but it held no key
            self.drop(record.system)
            return
        # the severity, shown with the hop: two scalars, which masking passes at no cost
        extra = record.extra
        if severity_number:
            extra["severity_number"] = severity_number
        if severity_text:
            extra["severity_text"] = (
                severity_text
                if len(severity_text) <= limits.CHANNEL
                else limits.fit(severity_text, limits.CHANNEL)
            )
        result = self.result
        result.records.append(record)
        result.positions.append(self.index)


# --- protobuf ----------------------------------------------------------------------------


def _pb_ids_error(reader: _Reader, trace_id: bytes, span_id: bytes) -> None:
    if trace_id and len(trace_id) != 16:
        reader.reject(f"traceId must be 16 bytes or empty, got {len(trace_id)}")
    else:
        reader.reject(f"spanId must be 8 bytes or empty, got {len(span_id)}")


def decode_protobuf(
    body: bytes, rules: KeyRules = DEFAULT_RULES, received_at: datetime | None = None
) -> DecodeResult:
    """Decode an ``application/x-protobuf`` ExportLogsServiceRequest.

    Raises ``DecodeError`` when the body is not a parseable request; refused records are
    listed in ``rejected`` with their position across the whole request, records without
    keys counted in ``dropped``.
    """
    try:
        request = ExportLogsServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"body is not an OTLP ExportLogsServiceRequest: {exc}") from None
    reader = _Reader(rules, received_at)
    for resource_logs in request.resource_logs:
        attrs = pb_attrs(resource_logs.resource.attributes)
        base = read_resource(attrs, rules)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_name(scope_logs.scope.name)
            res = scoped(base, attrs, pb_attrs(scope_logs.scope.attributes), rules)
            res_id = _resource_id(res)
            for log in scope_logs.log_records:
                reader.index += 1
                trace_id = log.trace_id
                span_id = log.span_id
                if (trace_id and len(trace_id) != 16) or (span_id and len(span_id) != 8):
                    _pb_ids_error(reader, trace_id, span_id)
                    continue
                value = log.body
                reader.record(
                    res,
                    res_id,
                    scope,
                    trace_id.hex() if trace_id and trace_id != _ZERO_TRACE else "",
                    span_id.hex() if span_id and span_id != _ZERO_SPAN else "",
                    log.event_name,
                    log.time_unix_nano,
                    log.observed_time_unix_nano,
                    log.severity_number,
                    log.severity_text,
                    # a string body answers without the WhichOneof call (as attributes do),
                    # an absent one (an event's) without a call into Python
                    value.string_value or (pb_value(value) if log.HasField("body") else None),
                    pb_split(log.attributes),
                )
    result = reader.result
    result.truncated = count_truncated(result.records)
    return result


# --- JSON --------------------------------------------------------------------------------


def _j_log_id(value: Any, size: int, what: str) -> str:
    """A hex id of ``size`` bytes, optional on a log record: absent or all zeros is ""."""
    if not value:
        return ""
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) == size:
            return "" if raw == bytes(size) else raw.hex()
    raise ValueError(f"{what} must be {2 * size} hex characters ({size} bytes) or empty")


def _j_record(reader: _Reader, log: Any, res: Resource, res_id: int, scope: str) -> None:
    if not isinstance(log, dict):
        raise ValueError("log record must be an object")
    body = log.get("body")
    reader.record(
        res,
        res_id,
        scope,
        _j_log_id(log.get("traceId"), 16, "traceId"),
        _j_log_id(log.get("spanId"), 8, "spanId"),
        j_str(log.get("eventName"), "eventName"),
        j_uint64(log.get("timeUnixNano"), "timeUnixNano"),
        j_uint64(log.get("observedTimeUnixNano"), "observedTimeUnixNano"),
        j_enum(log.get("severityNumber"), _SEVERITIES, "severityNumber"),
        j_str(log.get("severityText"), "severityText"),
        None if body is None else j_attrs([{"key": "body", "value": body}])["body"],
        split_attrs(j_attrs(log.get("attributes"))),
    )


def decode_json(
    body: bytes, rules: KeyRules = DEFAULT_RULES, received_at: datetime | None = None
) -> DecodeResult:
    """Decode an ``application/json`` ExportLogsServiceRequest (the OTLP JSON encoding, as
    for traces: hex ids, lowerCamelCase names, integer enums, 64-bit integers as strings).

    Raises ``DecodeError`` for a body that is not JSON or whose structure above the records
    is wrong; a record that is malformed in itself is refused alone.
    """
    reader = _Reader(rules, received_at)
    seen: Resource | None = None
    res_id = 0
    for scope, res, log in json_items(
        body, "ExportLogsServiceRequest", "Logs", "logRecords", rules
    ):
        if res is not seen:  # one resource per scope: its digest once
            seen, res_id = res, _resource_id(res)
        reader.index += 1
        try:
            _j_record(reader, log, res, res_id, scope)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            reader.reject(str(exc))
    result = reader.result
    result.truncated = count_truncated(result.records)
    return result


# --- answers -----------------------------------------------------------------------------


def dropped_message(dropped: int) -> str:
    """The answer's word on records without keys (not an error: ``rejected`` stays 0)."""
    return (
        f"{dropped} log record(s) without business keys (retail.key.*) were not stored"
        if dropped
        else ""
    )


def encode_response(rejected: int, message: str, *, json: bool) -> bytes:
    """The body of a 200 answer: an ExportLogsServiceResponse in the request's encoding,
    ``partial_success`` as ``tracing.otlp.encode_response`` fills it for spans."""
    if json:
        if not rejected and not message:
            return b"{}"
        partial: dict[str, str] = {}
        if rejected:
            partial["rejectedLogRecords"] = str(rejected)
        if message:
            partial["errorMessage"] = message
        return orjson.dumps({"partialSuccess": partial})
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())
