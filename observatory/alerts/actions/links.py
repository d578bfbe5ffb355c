"""Links a notification carries: signed acknowledge tokens and the URLs they sit in, and
whether a webhook URL may be used.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

from observatory.lib import http

ACK_SALT = "observatory.alerts.ack"
#: how long a signed acknowledge link stays valid
ACK_LINK_MAX_AGE_S = 7 * 86400


def ack_token(alert_id: int) -> str:
    return signing.dumps({"a": alert_id}, salt=ACK_SALT, compress=True)


def ack_token_alert(token: str) -> int | None:
    """The alert a signed acknowledge link is for (None: forged or expired)."""
    try:
        data = signing.loads(token, salt=ACK_SALT, max_age=ACK_LINK_MAX_AGE_S)
    except signing.BadSignature:
        return None
    value = data.get("a") if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


def base_url() -> str:
    return str(settings.OBSERVATORY_BASE_URL).rstrip("/")


def ack_url(alert_id: int) -> str:
    return base_url() + reverse("alerts:ack-link", args=[alert_id, ack_token(alert_id)])


def alert_url(alert_id: int) -> str:
    return base_url() + reverse("alerts:alert", args=[alert_id])


def url_problem(url: str) -> str:
    """Why a webhook URL cannot be used ("" when it can): not http(s), or a private or
    loopback address while ALERTS_ALLOW_PRIVATE_URLS is off (judged without DNS; the
    resolved address is checked again on every delivery)."""
    try:
        http.check_url(url, resolve=False)
    except http.UnsafeURL as exc:
        return str(exc)
    return ""
