"""Sign-in throttling: after ``LOGIN_MAX_FAILURES`` failed sign-ins for one username, or
``LOGIN_MAX_FAILURES_PER_ADDRESS`` from one client address, within
``LOGIN_FAILURE_WINDOW_S``, sign-ins for that username (or from that address) are
refused for ``LOGIN_LOCKOUT_S`` seconds, with a message saying so.

The counts live in Django's default cache (per process with the default local-memory
cache: several web processes each count on their own, which only loosens the limit by
that factor; point ``CACHES`` at Redis to share them). The client address is
``REMOTE_ADDR``: behind a proxy, run uvicorn with ``--proxy-headers`` so it is the
caller's, not the proxy's.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

_PREFIX = "login-throttle"


def _key(kind: str, value: str) -> str:
    # digests: usernames may hold any character, cache keys may not
    return f"{_PREFIX}:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _limits() -> tuple[int, int, float, float]:
    return (
        int(settings.LOGIN_MAX_FAILURES),
        int(settings.LOGIN_MAX_FAILURES_PER_ADDRESS),
        float(settings.LOGIN_FAILURE_WINDOW_S),
        float(settings.LOGIN_LOCKOUT_S),
    )


def _subjects(username: str, address: str) -> list[tuple[str, int]]:
    per_user, per_address, _, _ = _limits()
    return [
        (_key("user", username.strip().lower()), per_user),
        (_key("addr", address), per_address),
    ]


def locked_for(username: str, address: str) -> float:
    """Seconds left before ``username`` may try again from ``address`` (0: it may now)."""
    now = time.time()
    left = 0.0
    for key, _ in _subjects(username, address):
        state = cache.get(key)
        if state and state.get("until", 0) > now:
            left = max(left, state["until"] - now)
    return left


def record_failure(username: str, address: str) -> None:
    """Count a failed sign-in against the username and the address; lock either that
    reaches its limit within the window."""
    _, _, window, lockout = _limits()
    now = time.time()
    for key, limit in _subjects(username, address):
        state = cache.get(key) or {"since": now, "count": 0, "until": 0}
        if now - state["since"] > window:
            state = {"since": now, "count": 0, "until": 0}
        state["count"] += 1
        if state["count"] >= limit:
            state["until"] = now + lockout
        cache.set(key, state, timeout=math.ceil(max(window, lockout)) + 1)


def record_success(username: str) -> None:
    """A good sign-in clears its username's count (never the address's: one good account
    must not reset an address that is guessing others)."""
    cache.delete(_subjects(username, "")[0][0])


def refusal(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (
        "Too many failed sign-ins for this account or from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
