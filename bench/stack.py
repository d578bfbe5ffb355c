"""The whole product as ``make run`` starts it, for the end-to-end benches (shared).

    with Stack() as stack:            # a scratch data folder: SQLite, the filesystem broker
        stack.manage("simulate", ...)

``BENCH_DATABASE_URL`` names a PostgreSQL database to use instead (it must be empty: see
``scratch.create_database``; ``Stack(database_url="")`` keeps SQLite), ``BENCH_BROKER_URL``
a Redis broker (kombu's filesystem transport can crash the worker when ingest publishes
while it reads, celery/kombu#1551). On loopback ports it
starts the web server (uvicorn, as in ``make run``), the Celery worker with beat (as in the
Procfile), and a Slack stand-in that records every webhook request; one Slack webhook
channel points at it (ALERTS_ALLOW_PRIVATE_URLS=1), so every alert the shipped rules send
is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOOK = "/services/TBENCH/BBENCH/stack"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlackStandIn:
    """Records (arrival time, JSON body) of every POST; answers 200 ok."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((time.time(), json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(
        self, match: Callable[[str], bool], after: int, timeout: float
    ) -> tuple[float, str] | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, body in self.received[after:]:
                if match(body.get("text", "")):
                    return at, body["text"]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self.server.shutdown()


class Stack:
    """``webs`` web processes (``bases``: their addresses; ``base`` the first) and
    ``workers`` Celery workers (the first runs beat), as several machines would run them."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        webs: int = 1,
        workers: int = 1,
    ):
        self.tmp = Path(tempfile.mkdtemp(prefix="observatory-stack-"))
        self.ports = [free_port() for _ in range(webs)]
        self.bases = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.port, self.base = self.ports[0], self.bases[0]
        self.workers = workers
        self.slack = SlackStandIn()
        self.env = {
            **os.environ,
            "OBSERVATORY_DATA_DIR": str(self.tmp),
            "ALERTS_ALLOW_PRIVATE_URLS": "1",
            "OBSERVATORY_BASE_URL": self.base,
            "DJANGO_SETTINGS_MODULE": "observatory.settings",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        broker = os.environ.get("BENCH_BROKER_URL")
        if broker:
            self.env["CELERY_BROKER_URL"] = broker
        else:
            self.env.pop("CELERY_BROKER_URL", None)
        if database_url is None:  # ("": SQLite, whatever the environment says)
            database_url = os.environ.get("BENCH_DATABASE_URL")
        if database_url:
            self.env["DATABASE_URL"] = database_url
            # a deployment-like run: the settings want a key of its own
            self.env.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
        else:
            self.env.pop("DATABASE_URL", None)
        self.env.pop("CHANNEL_LAYER_URL", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.token = ""
        self.api_token = ""

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def manage(self, *argv: str, check: bool = True) -> str:
        """``manage.py`` in the stack's environment; its last line of output."""
        out = subprocess.run(
            [PYTHON, "manage.py", *argv], cwd=ROOT, env=self.env, capture_output=True
        )
        if out.returncode and check:
            sys.stderr.write(out.stderr.decode()[-3000:])
            raise SystemExit(f"manage.py {' '.join(argv)} failed")
        lines = out.stdout.decode().strip().splitlines()
        return lines[-1] if lines else ""

    def start(self, *, worker: bool = True) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        # pages name their static files by the manifest collectstatic writes (DEBUG is off)
        self.manage("collectstatic", "--noinput", "-v", "0")
        self.token = self.manage("create_ingest_token", "bench")
        self.api_token = self.manage("create_api_token", "bench-reader", "--scope", "read")
        self.manage(
            "shell",
            "-c",
            "from observatory.alerts.models import Channel; "
            f"Channel.objects.create(name='bench-slack', kind='slack', "
            f"webhook_url='http://127.0.0.1:{self.slack.port}{HOOK}'); print('ok')",
        )
        for port in self.ports:
            self._spawn(
                [str(BIN / "uvicorn"), "observatory.asgi:application", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log", "--lifespan", "off"]
            )  # fmt: skip
        if worker:
            self.start_worker()
        for base in self.bases:
            for _ in range(150):
                try:
                    if requests.get(base + "/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.2)

    def start_worker(self) -> None:
        """The Celery workers: the first with beat (one schedule for the whole stack)."""
        for i in range(self.workers):
            beat = ["--beat", "--schedule", str(self.tmp / "beat")] if i == 0 else []
            self._spawn(
                [str(BIN / "celery"), "-A", "observatory", "worker", "--loglevel", "WARNING",
                 "--concurrency", "2", "-n", f"worker{i + 1}@%h", *beat]
            )  # fmt: skip
        time.sleep(3)  # the worker's first beat

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.tmp / "processes.log", "ab")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        )

    def stop_worker(self) -> None:
        """Stop the Celery worker (the last process started with it), waiting for it."""
        worker = [p for p in self.procs if "celery" in " ".join(map(str, p.args))]
        for p in worker:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in worker:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
            self.procs.remove(p)

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []
        self.slack.close()

    def get(self, path: str, **params: Any) -> Any:
        r = requests.get(
            self.base + path,
            params=params,
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=60,
        )
        r.raise_for_status()
        return r.json()

    def send_events(self, *events: dict[str, Any]) -> None:
        r = requests.post(
            self.base + "/api/v1/events",
            data=json.dumps(list(events)),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/cloudevents-batch+json",
            },
            timeout=30,
        )
        r.raise_for_status()
