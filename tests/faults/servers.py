"""Servers the fault tests start, stop and kill themselves, never the shared ones: a
throwaway PostgreSQL cluster and Redis on free loopback ports, and the product as
``make run`` starts it (uvicorn on the ASGI app, the Celery worker with beat), each a
subprocess in a session of its own so that a signal reaches all of its processes.

A missing binary (``initdb``, ``redis-server``) skips the test that needs it, saying so.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serving import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable

BIN = Path(PYTHON).parent


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def binary(name: str) -> str | None:
    """``name`` on PATH, else in the newest PostgreSQL's bin folder (Debian keeps the server
    programs there, off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()],
    )
    return candidates[-1] if candidates else None


def require(name: str, why: str) -> str:
    path = binary(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {why}")
    return path


def _alive(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- PostgreSQL ---------------------------------------------------------------------------------


class Postgres:
    """A PostgreSQL cluster of its own (initdb in a temporary folder, trust on loopback,
    superuser ``postgres``) on a free port. initdb refuses to run as root: as root, the
    cluster belongs to the ``postgres`` system user and its programs run as that user."""

    def __init__(self) -> None:
        self.initdb = require("initdb", "the PostgreSQL fault tests need a cluster of their own")
        self.pg_ctl = require("pg_ctl", "the PostgreSQL fault tests stop and start a cluster")
        self.as_user: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="observatory-faults-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres user: initdb refuses root")
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root without runuser: initdb refuses root")
            self.as_user = [runuser, "-u", "postgres", "--"]
            os.chown(self.tmp, owner.pw_uid, owner.pw_gid)
        self.data = self.tmp / "data"
        self.port = free_port()
        self._run(
            [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
             "--no-sync", "--no-instructions"]
        )  # fmt: skip

    def _run(self, argv: Sequence[str]) -> None:
        out = subprocess.run([*self.as_user, *argv], capture_output=True, cwd=self.tmp)
        if out.returncode:
            raise AssertionError(f"{argv[0]} failed: {out.stderr.decode()[-2000:]}")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.tmp} -c fsync=off "
            "-c max_connections=60"
        )
        self._run(
            [self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.tmp / "log"), "-w",
             "-t", "30", "start"]
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as clients can tell: every connection cut, no
        checkpoint (committed work survives in the WAL)."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"])

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop("immediate")
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    pg = Postgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


# --- Redis --------------------------------------------------------------------------------------


class Redis:
    """redis-server on a free port, keeping nothing on disk (``--save ""``): a restart
    loses whatever was queued, like a broker that failed over to an empty one."""

    def __init__(self) -> None:
        self.server = require("redis-server", "the Redis fault test needs a broker of its own")
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="observatory-faults-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.tmp / "log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        wait_for("redis-server", lambda: _alive(self.port), 15)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the product ----------------------------------------------------------------------------------

#: a migrated SQLite database, made by the first product of the run
_MIGRATED = Path(tempfile.gettempdir()) / f"observatory-faults-{os.getpid()}" / "migrated.sqlite3"
atexit.register(shutil.rmtree, _MIGRATED.parent, True)


def _copy_sqlite(source: Path, target: Path) -> None:
    """A closed SQLite database: its file, and its write-ahead log if one was left."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


class Product:
    """Observatory's web server and worker on a database and broker of the test's choosing
    (``database_url`` None: SQLite in the data folder; ``broker_url`` None: the embedded
    filesystem broker)."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="observatory-faults-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "OBSERVATORY_DATA_DIR": str(self.tmp),
            "OBSERVATORY_BASE_URL": self.base,
            "ALERTS_ALLOW_PRIVATE_URLS": "1",
            "DJANGO_SETTINGS_MODULE": "observatory.settings",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "faults-" + os.urandom(24).hex(),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        for name, value in (("DATABASE_URL", database_url), ("CELERY_BROKER_URL", broker_url)):
            if value:
                self.env[name] = value
            else:
                self.env.pop(name, None)
        self.env.pop("CHANNEL_LAYER_URL", None)
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.token = ""

    def manage(self, *argv: str) -> str:
        """``manage.py`` in the product's environment; its last line of output."""
        out = subprocess.run(
            [PYTHON, "manage.py", *argv], cwd=ROOT, env=self.env, capture_output=True, timeout=120
        )
        if out.returncode:
            raise AssertionError(f"manage.py {argv[0]} failed: {out.stderr.decode()[-3000:]}")
        lines = out.stdout.decode().strip().splitlines()
        return lines[-1] if lines else ""

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def setup(self, *, ingest: bool = True) -> None:
        sqlite = self.tmp / "observatory.sqlite3"
        if self.env.get("DATABASE_URL"):
            self.manage("migrate", "--noinput", "-v", "0")
        elif _MIGRATED.exists():
            _copy_sqlite(_MIGRATED, sqlite)
        else:
            # migrating SQLite is mostly waiting for the disk (some 20 s on a busy one):
            # once per run, then each product starts from a copy
            self.manage("migrate", "--noinput", "-v", "0")
            _MIGRATED.parent.mkdir(exist_ok=True)
            _copy_sqlite(sqlite, _MIGRATED)
        if ingest:
            self.token = self.manage("create_ingest_token", "faults")

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")  # noqa: SIM115
        return subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
        )

    def start_web(self) -> None:
        self.web = self._spawn(
            [str(BIN / "uvicorn"), "observatory.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--lifespan", "off"],
            "web.log",
        )  # fmt: skip

        def up() -> bool:
            try:
                return requests.get(self.base + "/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for("the web server", up, 30, every=0.2)

    def start_worker(self, *, concurrency: int = 2) -> None:
        self.worker = self._spawn(
            [str(BIN / "celery"), "-A", "observatory", "worker", "--beat", "--loglevel",
             "WARNING", "--concurrency", str(concurrency), "--schedule",
             str(self.tmp / "beat")],
            "worker.log",
        )  # fmt: skip

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process of the worker (the main one, its pool, the beat) at once."""
        if self.worker is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, sig)
        try:
            self.worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait(10)
        # the pool's processes outlive the main one for a moment: wait until every one is
        # gone (and with them their sockets), killing what a SIGTERM left behind
        group = self.worker.pid
        self.worker = None

        def gone() -> bool:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                return True
            return False

        wait_for("the worker's processes to end", gone, 15, every=0.05)

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        self.kill_worker()  # its database goes with it: no warm shutdown to wait for
        if self.web is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.web.pid, signal.SIGTERM)
            try:
                self.web.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)
            self.web = None
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def product(*, ingest: bool = True, **kwargs: Any) -> Iterator[Product]:
    p = Product(**kwargs)
    try:
        p.setup(ingest=ingest)
        yield p
    finally:
        p.close()


# --- a slow Slack -------------------------------------------------------------------------------


class SlowSlack:
    """A Slack incoming-webhook stand-in on loopback that holds each request open for
    ``hold_s`` seconds (the first one until ``release`` when ``hold_first``) before it
    answers 200. ``arrived`` counts the requests per path; ``answered`` those it answered
    to a client still waiting (a sender killed meanwhile never learns the answer)."""

    def __init__(self, *, hold_s: float = 0.0, hold_first: bool = False) -> None:
        self.hold_s = hold_s
        self.hold_first = hold_first
        self.arrived: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.first = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    first = not outer.first.is_set()
                    outer.arrived[self.path] += 1
                    outer.first.set()
                if first and outer.hold_first:
                    outer.release.wait(60)
                else:
                    outer.release.wait(outer.hold_s)
                if _gone(self.connection):
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                except OSError:
                    return
                with lock:
                    outer.answered[self.path] += 1

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _gone(sock: socket.socket) -> bool:
    """Whether the client closed its end (the request was read whole: anything readable
    now is the end of the stream)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# --- reading what the product stored ----------------------------------------------------------


def query(product: Product, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run on the product's database (read-only use)."""
    url = product.env.get("DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url) as conn:
            return list(conn.execute(sql).fetchall())
    import sqlite3

    lite = sqlite3.connect(product.tmp / "observatory.sqlite3", timeout=30)
    try:
        return list(lite.execute(sql).fetchall())
    finally:
        lite.close()


def stitching(product: Product) -> dict[str, int]:
    """How far stitching got, and whether any hop is stitched other than once."""
    from observatory.hops.models import Hop, Waiting
    from observatory.transactions.models import Transaction, TransactionHop

    hop, waiting = Hop._meta.db_table, Waiting._meta.db_table
    link, tx = TransactionHop._meta.db_table, Transaction._meta.db_table
    [(hops,)] = query(product, f"SELECT count(*) FROM {hop}")
    [(queued,)] = query(product, f"SELECT count(*) FROM {waiting}")
    [(twice,)] = query(
        product,
        f"SELECT count(*) FROM (SELECT hop_id FROM {link} GROUP BY hop_id HAVING count(*) > 1) t",
    )
    [(unlinked,)] = query(
        product,
        f"SELECT count(*) FROM {hop} h WHERE NOT EXISTS "
        f"(SELECT 1 FROM {link} l WHERE l.hop_id = h.id)",
    )
    [(live,)] = query(product, f"SELECT count(*) FROM {tx} WHERE merged_into_id IS NULL")
    return {
        "hops": hops,
        "waiting": queued,
        "stitched_twice": twice,
        "unstitched": unlinked,
        "transactions": live,
    }


def caught_up(product: Product, timeout: float) -> dict[str, int]:
    """Wait until no hop waits and every hop is stitched; :func:`stitching` then."""

    def done() -> bool:
        s = stitching(product)
        return s["waiting"] == 0 and s["unstitched"] == 0

    try:
        wait_for("stitching to catch up", done, timeout, every=0.5)
    except AssertionError:
        raise AssertionError(f"{stitching(product)}\n{product.log('worker.log')}") from None
    return stitching(product)


def stored_uids(product: Product) -> tuple[set[str], int]:
    """Every hop uid stored, and how many are stored more than once."""
    from observatory.hops.models import Hop

    rows = query(product, f"SELECT uid, count(*) FROM {Hop._meta.db_table} GROUP BY uid")
    return {r[0] for r in rows}, sum(1 for r in rows if r[1] > 1)


@contextlib.contextmanager
def database() -> Iterator[str | None]:
    """The database the product runs on: a throwaway PostgreSQL cluster when the suite
    runs on PostgreSQL (``DATABASE_URL``), else None (SQLite in the product's folder)."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        yield None
        return
    with postgres() as pg:
        yield pg.create_database("observatory")
