"""No token in any log line: a logging filter that replaces the value of ``token=`` in
what is logged.

Shopify cannot send headers, so its webhook subscription carries the ingest token in the
URL (``/webhooks/shopify?token=obs_in_...``), and uvicorn's access log, Django's request
log (``django.request``'s "Not Found: /webhooks/shopify?token=..." warnings) and gunicorn's
access log would write it down. ``RedactTokens`` is installed on the root handler and on
``uvicorn.access`` and ``gunicorn.access`` (settings.LOGGING), so every record passes it;
it also hides bearer tokens (``obs_in_...``, ``obs_api_...``) wherever they appear.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: ``token=<value>`` in a query string (any parameter whose name ends in ``token``), and
#: Observatory's own tokens anywhere.
_TOKEN_PARAM = re.compile(r"(?i)([?&;](?:[a-z_]*token|secret|signature)=)[^&;\s\"']*")
_OUR_TOKENS = re.compile(r"\bobs_(?:in|api)_[A-Za-z0-9_-]{8,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with token values replaced by ``[redacted]``."""
    lowered = text.lower()
    if not any(word in lowered for word in ("token", "obs_", "secret", "signature")):
        return text
    text = _TOKEN_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    return _OUR_TOKENS.sub(REDACTED, text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Redacts the record's message and its string arguments in place; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True
