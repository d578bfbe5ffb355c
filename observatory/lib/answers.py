"""The JSON API's error answers, so that every status an operation can give is in its
OpenAPI document (``answers``) with the shape it has.

* ``ErrorOut`` ``{"detail": "..."}``: 400 (a body that is not JSON), 401, 403, 404, 409,
  503 (the database is unavailable; with ``Retry-After``).
* ``ValidationErrorOut`` ``{"detail": [{"type", "loc", "msg"}]}``: 422, a parameter or
  body field that cannot be used, ``loc`` naming it (``["query", "since"]``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from ninja import Schema
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import ConfigDict


class ErrorOut(Schema):
    detail: str


class FieldErrorOut(Schema):
    model_config = ConfigDict(extra="allow")

    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorOut(Schema):
    detail: list[FieldErrorOut]


#: What any operation can answer besides its own: no or a bad credential (401), a
#: credential that may not do this (403), a parameter it cannot use (422), an outage (503).
COMMON: dict[int, Any] = {401: ErrorOut, 403: ErrorOut, 422: ValidationErrorOut, 503: ErrorOut}


def answers(ok: dict[int, Any], *errors: int, body: bool = False) -> dict[int, Any]:
    """``ok`` (``{200: SomeOut}``), the ``COMMON`` errors, ``errors`` (404, 409 ...) as
    ``ErrorOut``, and 400 for an unreadable body when the operation takes one."""
    out: dict[int, Any] = {**ok, **COMMON}
    for status in errors:
        out.setdefault(status, ErrorOut)
    if body:
        out[400] = ErrorOut
    return dict(sorted(out.items()))


def field_error(
    location: str, name: str, message: str, kind: str = "value_error"
) -> dict[str, Any]:
    """One entry of a 422's ``detail``, in pydantic's (and ninja's) shape."""
    return {"type": kind, "loc": [location, name], "msg": message}


def invalid_body(exc: DjangoValidationError) -> NinjaValidationError:
    """A model's validation error (``full_clean``) in the shape of ninja's own 422
    answers, each message naming its body field."""
    errors = []
    if hasattr(exc, "error_dict"):
        for name, problems in exc.message_dict.items():
            for msg in problems:
                errors.append({"loc": ["body", name], "msg": msg, "type": "value_error"})
    else:
        for msg in exc.messages:
            errors.append({"loc": ["body"], "msg": msg, "type": "value_error"})
    return NinjaValidationError(errors)


def bad_body(field: str, msg: str) -> NinjaValidationError:
    """A 422 naming one body field."""
    return NinjaValidationError([{"loc": ["body", field], "msg": msg, "type": "value_error"}])
