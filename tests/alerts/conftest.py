"""Fixtures for the alerting tests: a scripted HTTP receiver on 127.0.0.1 (Slack's stand-in),
an SMTP server on 127.0.0.1, write-scoped API clients, and helpers that build alerts."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from observatory.access.actions import do_create_api_token


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


#: a scripted answer: (status, headers, body), or a function of the request giving one
Answer = tuple[int, dict[str, str], bytes] | Callable[[Received], tuple[int, dict[str, str], bytes]]


@dataclass
class Receiver:
    """An HTTP server on loopback that records every request and answers from a script
    (then with ``default``)."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)
    default: Answer = (200, {"Content-Type": "text/plain"}, b"ok")
    delay_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def posts(self, path: str = "") -> list[Received]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith(path)]


def _start(receiver: Receiver) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Received(self.command, self.path, dict(self.headers.items()), body, time.time())
            receiver.requests.append(req)
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            answer = receiver.script.popleft() if receiver.script else receiver.default
            status, headers, payload = answer(req) if callable(answer) else answer
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((receiver.host, 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    server, thread = _start(r)
    try:
        yield r
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def allow_private(settings: Any) -> None:
    """ALERTS_ALLOW_PRIVATE_URLS=1: channels may post to the loopback receiver."""
    settings.ALERTS_ALLOW_PRIVATE_URLS = True


def slack_api(receiver: Receiver) -> Callable[[Received], tuple[int, dict[str, str], bytes]]:
    """A Slack Web API stand-in: chat.postMessage gives a new ts, chat.update echoes it."""
    counter = iter(range(1, 10**6))

    def answer(req: Received) -> tuple[int, dict[str, str], bytes]:
        body = req.json()
        if req.path.endswith("/chat.postMessage"):
            out = {"ok": True, "channel": "C0ALERTS", "ts": f"1700000000.{next(counter):06d}"}
        elif req.path.endswith("/chat.update"):
            out = {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        else:
            out = {"ok": False, "error": "unknown_method"}
        return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()

    return answer


@pytest.fixture
def write_client(db: None) -> Client:
    _, plain = do_create_api_token("alerts-writer", "write")
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


@pytest.fixture
def read_client(db: None) -> Client:
    _, plain = do_create_api_token("alerts-reader", "read")
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
