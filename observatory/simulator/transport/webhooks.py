"""Shopify webhook deliveries, as Shopify makes them.

:class:`WebhookSender` renders each delivery's body (:mod:`observatory.simulator.payloads`),
signs it with the app secret (``X-Shopify-Hmac-Sha256``: base64 of the HMAC-SHA256 of the
raw body, :func:`sign`) and posts it with Shopify's headers to
``{url}/webhooks/shopify?token=...`` from a thread pool on keep-alive sessions, at most
``max_in_flight`` at once. Answers in :data:`RETRY_STATUSES` (and connection errors) are
retried after ``Retry-After`` or a jittered backoff, never waiting more than
:data:`MAX_RETRY_WAIT_S`, up to ``max_retries`` times; anything else is final. Past
:meth:`WebhookSender.close`'s deadline a delivery is not retried again (a waiting retry
wakes and gives up), so the process exits without a pool thread still retrying against a
server that stopped too (docs/scaling.md, "Stopping"). Outcomes are counted in
:class:`~.shared.Stats` (``webhooks``), never raised.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Final
from urllib.parse import quote

import requests

from observatory.simulator import catalog as cat
from observatory.simulator.entities import Step
from observatory.simulator.payloads import render
from observatory.simulator.transport.shared import Stamp, Stats

log = logging.getLogger(__name__)

#: Answers worth another try; anything else is final.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: Never wait longer than this for one retry, whatever ``Retry-After`` says.
MAX_RETRY_WAIT_S: Final = 30.0


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` when the server named none: exponential from
    0.5 s up to 10 s, half of it jittered."""
    delay = min(10.0, 0.5 * 2.0**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def retry_after(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header, if it is a number."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def sign(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of the HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class WebhookSender:
    """Signed Shopify deliveries from a thread pool; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: str,
        secret: str,
        stats: Stats,
        *,
        workers: int = 8,
        max_in_flight: int = 64,
        timeout: float = 15.0,
        max_retries: int = 6,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/webhooks/shopify?token=" + quote(token, safe="")
        self.secret = secret
        self.stats = stats
        self.timeout = timeout
        self.max_retries = max_retries
        #: set at the close's deadline: no more retries, and waiting ones wake at once
        self._closing = threading.Event()
        self._sleep = sleep if sleep is not None else self._closing.wait
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim-webhook")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._in_flight = 0

    def backlog(self) -> int:
        return self._in_flight

    def request(self, step: Step, stamp: Stamp) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of one delivery (deterministic, for tests too)."""
        spec = step.webhook
        assert spec is not None
        triggered = stamp(step.at)
        body = json.dumps(
            render(spec, triggered, stamp), separators=(",", ":"), ensure_ascii=False
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": spec.topic,
            "X-Shopify-Hmac-Sha256": sign(body, self.secret),
            "X-Shopify-Shop-Domain": cat.SHOP_DOMAIN,
            "X-Shopify-API-Version": cat.SHOPIFY_API_VERSION,
            "X-Shopify-Webhook-Id": spec.webhook_id,
            "X-Shopify-Event-Id": spec.event_id,
            "X-Shopify-Triggered-At": triggered.astimezone(UTC).isoformat(),
            "User-Agent": "Shopify-Captain-Hook",
        }
        return body, headers

    def send(self, step: Step, stamp: Stamp) -> None:
        body, headers = self.request(step, stamp)
        self._slots.acquire()
        with self._count_lock:
            self._in_flight += 1
        future = self._pool.submit(self._deliver, body, headers)
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _deliver(self, body: bytes, headers: dict[str, str]) -> None:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                self.stats.add("requests", "webhooks")
                response = self._session().post(
                    self.endpoint, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self.stats.add("sent", "webhooks")
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {}
                    if isinstance(answer, dict) and answer.get("status") == "duplicate":
                        self.stats.add("duplicates", "webhooks")
                    return
                reason = f"HTTP {status}"
                if status not in RETRY_STATUSES:
                    self.stats.error("webhooks", 1, reason)
                    log.warning("webhook refused: %s %.200s", reason, response.text)
                    return
                wait = retry_after(response.headers.get("Retry-After"))
                log.info("webhook answered %s, will retry: %.200s", reason, response.text)
            if attempt >= self.max_retries or self._closing.is_set():
                self.stats.error("webhooks", 1, f"{reason} (gave up after {attempt + 1} tries)")
                return
            self._sleep(min(MAX_RETRY_WAIT_S, wait if wait is not None else backoff(attempt)))
            if self._closing.is_set():
                self.stats.error("webhooks", 1, f"{reason} (not retried before the end)")
                return
            attempt += 1

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closing.set()  # a delivery still retrying gives up now (no retry at exit)
        self._pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
