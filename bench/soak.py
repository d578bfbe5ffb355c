"""A soak: sustained mixed traffic against the whole product for a while, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory SECRET_KEY=x \\
        python bench/soak.py [--minutes 10] [--rate 25] [--webs 2] [--workers 1]

Makes the scratch database ``observatory_soak`` on ``DATABASE_URL``'s server
(``bench/scratch.py``), starts ``--webs`` web processes and ``--workers`` Celery workers on
it (``bench/stack.py``: uvicorn, the worker with beat; the broker is Redis database
``--broker``, emptied first), with ``DATABASE_REPLICA_URL`` at the same database (the
router's path, though not a second server), then for ``--minutes``:

* ingest: ``--rate`` orders a second, five hops each (``bench/orders.py``), dealt out over
  the web processes and posted as OTLP protobuf batches of up to ``--batch`` spans by two
  exporters per process (a batch goes when full or half a second old), retried on 429/503;
* page reads: ``--reads`` a second of a signed-in user's pages (the ops dashboard, order
  search leading to the order page, the executive page) and ``GET /api/v1/kpis``;
* stitch lag: every ``--sample``-th order is looked up by its last key
  (``GET /api/v1/orders/<tracking number>``) every quarter second until all five hops
  show; the lag counts from the 200 that acknowledged its last hop;
* every 10 s: the resident memory of each process (workers with their pool children), CPU
  seconds of each (PostgreSQL: the backends serving the scratch database), hops stored
  and hops waiting for the stitcher.

At the end it waits for the stitcher to drain, counts the live transactions by their
number of hops (every order should be one transaction of five), then measures every table (partitions
summed into their parent) and its indexes, less what the empty migrated database held:
bytes per hop and MB per million hops. The report goes to standard output and, as JSON,
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import secrets
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.orders import HOPS, Poster, build, sign_in  # noqa: E402
from bench.scratch import create_database, scratch_url  # noqa: E402
from bench.stack import Stack  # noqa: E402

SCRATCH = "observatory_soak"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: How often a sampled order is looked up while its hops are being stitched.
POLL_S = 0.25


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def ms(values: list[float]) -> dict[str, float | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "n": len(values),
        "p50_ms": r(quantile(values, 0.5)),
        "p95_ms": r(quantile(values, 0.95)),
        "p99_ms": r(quantile(values, 0.99)),
        "max_ms": r(max(values) if values else None),
    }


# --- processes: memory and CPU from /proc --------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _rss(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE_SIZE


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                out[st[0]].append(int(entry.name))
    return out


@dataclass
class Sampler:
    """Every ``every`` seconds: RSS and CPU of each stack process (with its children),
    of the PostgreSQL backends on the scratch database, and the hop counts."""

    stack: Stack
    url: str
    every: float = 10.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    backend_cpu: dict[int, tuple[float, float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def roles(self) -> dict[str, int]:
        out, webs, workers = {}, 0, 0
        for p in self.stack.procs:
            if "uvicorn" in str(p.args[0]):
                webs += 1
                out[f"web{webs}"] = p.pid
            elif "celery" in str(p.args[0]):
                workers += 1
                out[f"worker{workers}"] = p.pid
        return out

    def sample(self, conn: Any, started: float) -> dict[str, Any]:
        kids = _children()
        procs: dict[str, dict[str, Any]] = {}
        for role, pid in self.roles().items():
            tree = [pid, *kids.get(pid, [])]
            st = [_stat(p) for p in tree]
            procs[role] = {
                "rss_mb": round(_rss(pid) / 2**20, 1),
                "children_rss_mb": [round(_rss(p) / 2**20, 1) for p in tree[1:]],
                "cpu_s": round(sum(s[1] for s in st if s), 2),
            }
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
        for pid in pids:
            st = _stat(pid)
            if st is None:
                continue
            first = self.backend_cpu.get(pid, (st[1], st[1]))[0]
            if pid not in self.backend_cpu and time.time() - started < self.every:
                first = st[1]  # already running at the start: count from here
            elif pid not in self.backend_cpu:
                first = 0.0  # started during the soak: all of it is ours
            self.backend_cpu[pid] = (first, st[1])
        hops, waiting = conn.execute(
            "SELECT (SELECT COUNT(*) FROM hops_hop), (SELECT COUNT(*) FROM hops_waiting)"
        ).fetchone()
        return {
            "t_s": round(time.time() - started, 1),
            "processes": procs,
            "postgres_cpu_s": round(sum(b - a for a, b in self.backend_cpu.values()), 2),
            "postgres_backends": len(pids),
            "hops": hops,
            "waiting": waiting,
        }

    def run(self, started: float) -> None:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1)) as conn:
            conn.autocommit = True
            while True:
                try:
                    self.samples.append(self.sample(conn, started))
                except Exception as exc:  # a sample missed is no reason to stop the soak
                    print(f"sample failed: {exc}", file=sys.stderr)
                if self.stop.wait(self.every):
                    self.samples.append(self.sample(conn, started))
                    return


# --- the traffic ------------------------------------------------------------------------------


@dataclass
class Load:
    stack: Stack
    run: str
    rate: float
    batch: int
    sample: int
    reads: float
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    queues: list[queue.Queue[tuple[int, int]]] = field(default_factory=list)
    ingest_s: list[float] = field(default_factory=list)
    acked_spans: int = 0
    failed_requests: int = 0
    retries: int = 0
    acks: dict[int, tuple[int, float]] = field(default_factory=dict)
    probes: queue.Queue[tuple[int, float]] = field(default_factory=queue.Queue)
    lag_s: list[float] = field(default_factory=list)
    lost_probes: int = 0
    pages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    page_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    orders: int = 0

    def generate(self) -> None:
        """``rate`` orders a second, each hop to the queue of web ``(order + hop) % webs``."""
        webs = len(self.queues)
        start = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.orders < due:
                for hop in range(len(HOPS)):
                    self.queues[(self.orders + hop) % webs].put((self.orders, hop))
                self.orders += 1
            time.sleep(0.01)

    def export(self, web: int) -> None:
        """One exporter: a batch when full or half a second old."""
        poster = Poster(self.stack.bases[web], self.stack.token)
        q = self.queues[web]
        while not (self.stop.is_set() and q.empty()):
            hops: list[tuple[int, int]] = []
            deadline = time.monotonic() + 0.5
            while len(hops) < self.batch:
                try:
                    hops.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            if not hops:
                continue
            random.shuffle(hops)
            status, took = poster.post(build(self.run, hops))
            at = time.monotonic()
            with self.lock:
                if status != 200:
                    self.failed_requests += 1
                    continue
                self.ingest_s.append(took)
                self.acked_spans += len(hops)
                for order, _ in hops:
                    n, _last = self.acks.get(order, (0, 0.0))
                    self.acks[order] = (n + 1, at)
                    if n + 1 == len(HOPS):
                        del self.acks[order]
                        if order % self.sample == 0:
                            self.probes.put((order, at))
        with self.lock:
            self.retries += poster.retries
        poster.close()

    def probe(self) -> None:
        """Look each sampled order up every ``POLL_S`` seconds, each in a thread of its own
        (a slow answer for one must not delay the next), until its five hops show: the
        stitch lag, to within ``POLL_S`` and one lookup."""
        from concurrent.futures import ThreadPoolExecutor

        api = {"Authorization": f"Bearer {self.stack.api_token}"}
        local = threading.local()

        def one(order: int, acked: float, base: str) -> None:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            url = f"{base}/api/v1/orders/1Z{self.run}{order:010d}"
            while time.monotonic() - acked < 300:
                try:
                    r = session.get(url, headers=api, timeout=30)
                    whole = r.status_code == 200 and len(r.json()["hops"]) == len(HOPS)
                except requests.RequestException:
                    whole = False
                if whole:
                    with self.lock:
                        self.lag_s.append(time.monotonic() - acked)
                    return
                time.sleep(POLL_S)
            with self.lock:
                self.lost_probes += 1

        with ThreadPoolExecutor(16) as pool:
            i = 0
            while not (self.stop.is_set() and self.probes.empty()):
                try:
                    order, acked = self.probes.get(timeout=0.2)
                except queue.Empty:
                    continue
                pool.submit(one, order, acked, self.stack.bases[i % len(self.stack.bases)])
                i += 1

    def read_pages(self, user: str, password: str) -> None:
        """A signed-in user on every web process in turn: the pages operators keep open."""
        sessions = []
        for base in self.stack.bases:
            s = requests.Session()
            sign_in(base, s, user, password)
            sessions.append((base, s))
        api = {"Authorization": f"Bearer {self.stack.api_token}"}
        kinds = ["ops", "order", "executive", "kpis_api", "ops_live"]
        n = 0
        while not self.stop.is_set():
            base, s = sessions[n % len(sessions)]
            kind = kinds[n % len(kinds)]
            order = max(0, self.orders - 200 - random.randrange(100))
            path, headers = {
                "ops": ("/", None),
                "ops_live": ("/ops/live/", None),
                "order": (f"/orders/?q=SO-{self.run}-{order}", None),
                "executive": ("/executive/", None),
                "kpis_api": ("/api/v1/kpis", api),
            }[kind]
            started = time.monotonic()
            try:
                r = s.get(base + path, headers=headers, timeout=60)
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            took = time.monotonic() - started
            with self.lock:
                if ok:
                    self.pages[kind].append(took)
                else:
                    self.page_errors[kind] += 1
            n += 1
            time.sleep(max(0.0, 1.0 / self.reads - took))


# --- sizes -----------------------------------------------------------------------------------

SIZES_SQL = """
SELECT COALESCE(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
       SUM(pg_table_size(c.oid)) AS heap, SUM(pg_indexes_size(c.oid)) AS indexes,
       SUM(c.reltuples) FILTER (WHERE c.reltuples > 0) AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r'
GROUP BY 1
"""


def sizes(url: str) -> dict[str, dict[str, int]]:
    """Every table (partitions summed into their parent): heap with TOAST, and indexes."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        c.execute("ANALYZE")
        rows = c.execute(SIZES_SQL).fetchall()
        total = c.execute("SELECT pg_database_size(current_database())").fetchone()
    out = {
        name: {"heap": int(heap), "indexes": int(idx), "rows": int(n or 0)}
        for name, heap, idx, n in rows
    }
    out["(all tables)"] = {
        "heap": sum(v["heap"] for v in out.values()),
        "indexes": sum(v["indexes"] for v in out.values()),
        "rows": 0,
    }
    out["(database files)"] = {"heap": int(total[0]) if total else 0, "indexes": 0, "rows": 0}
    return out


def per_hop(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], hops: int
) -> list[dict[str, Any]]:
    """Marginal bytes per hop of each table that grew, largest first."""
    out = []
    for name, a in after.items():
        b = before.get(name, {"heap": 0, "indexes": 0})
        heap, idx = a["heap"] - b["heap"], a["indexes"] - b["indexes"]
        if heap + idx <= 0:
            continue
        out.append(
            {
                "table": name,
                "rows": a["rows"],
                "heap_bytes": heap,
                "index_bytes": idx,
                "bytes_per_hop": round((heap + idx) / hops, 1),
                "mb_per_million_hops": round((heap + idx) / hops * 1e6 / 2**20, 1),
            }
        )
    return sorted(out, key=lambda r: -r["bytes_per_hop"])


def cpu_per_hop(samples: list[dict[str, Any]], hops: int) -> dict[str, float]:
    """CPU seconds each process (with its children) and PostgreSQL spent per 1,000 hops
    over the soak."""
    if len(samples) < 2 or not hops:
        return {}
    first, last = samples[0], samples[-1]
    out = {
        role: round(
            (p["cpu_s"] - first["processes"].get(role, {}).get("cpu_s", 0)) / hops * 1000, 3
        )
        for role, p in last["processes"].items()
    }
    out["postgres backends"] = round(last["postgres_cpu_s"] / hops * 1000, 3)
    return out


WHOLE_SQL = """
SELECT n, COUNT(*) FROM (
  SELECT t.id, COUNT(l.id) AS n FROM transactions_transaction t
  JOIN transactions_transactionhop l ON l.transaction_id = t.id
  WHERE t.merged_into_id IS NULL GROUP BY t.id) x
GROUP BY n ORDER BY n
"""


def wholeness(url: str) -> dict[str, int]:
    """Live transactions by their number of hops: every order should be one of five."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        return {str(n): int(k) for n, k in c.execute(WHOLE_SQL).fetchall()}


def wait_drained(url: str, started: float, timeout: float = 300.0) -> float | None:
    """Seconds from the start until no hop waits for the stitcher (None: not in time)."""
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = c.execute("SELECT COUNT(*) FROM hops_waiting").fetchone()
            if row and row[0] == 0:
                return round(time.time() - started, 1)
            time.sleep(0.5)
    return None


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=25.0, help="orders a second (5 hops each)")
    parser.add_argument("--batch", type=int, default=100, help="spans per OTLP request at most")
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reads", type=float, default=2.0, help="page reads a second")
    parser.add_argument("--sample", type=int, default=20, help="probe every n-th order's lag")
    parser.add_argument(
        "--broker", default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--no-replica", action="store_true", help="no DATABASE_REPLICA_URL")
    parser.add_argument("--out", default=str(ROOT / ".data" / "soak.json"))
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at a PostgreSQL server (the scratch db is made there)")
    import redis

    redis.Redis.from_url(args.broker).flushdb()
    os.environ["BENCH_BROKER_URL"] = args.broker
    create_database(base, SCRATCH)
    url = scratch_url(base, SCRATCH)
    env = {"SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(40)}
    if not args.no_replica:
        env["DATABASE_REPLICA_URL"] = url
    stack = Stack(database_url=url, env=env, webs=args.webs, workers=args.workers)
    result: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count()}
    try:
        stack.start()
        stack.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            "get_user_model().objects.create_user('soak', password='soak-pages-reader')",
        )
        before = sizes(url)
        load = Load(
            stack, secrets.token_hex(3).upper(), args.rate, args.batch, args.sample, args.reads
        )
        load.queues = [queue.Queue() for _ in stack.bases]
        sampler = Sampler(stack, url)
        started = time.time()
        threads = [threading.Thread(target=sampler.run, args=(started,), daemon=True)]
        threads += [threading.Thread(target=load.generate, daemon=True)]
        threads += [
            threading.Thread(target=load.export, args=(w,), daemon=True)
            for w in range(len(stack.bases))
            for _ in range(2)
        ]
        threads += [threading.Thread(target=load.probe, daemon=True)]
        if args.reads > 0:
            threads += [
                threading.Thread(
                    target=load.read_pages, args=("soak", "soak-pages-reader"), daemon=True
                )
            ]
        for t in threads:
            t.start()
        print(f"soaking for {args.minutes} min at {args.rate} orders/s ...", file=sys.stderr)
        time.sleep(args.minutes * 60)
        load.stop.set()
        for t in threads[1:]:
            t.join(120)
        elapsed = time.time() - started
        drained_at = wait_drained(url, started)
        sampler.stop.set()
        threads[0].join(30)
        after = sizes(url)
        # let the last ticks finish what they claimed before judging the orders
        time.sleep(10)
        whole = wholeness(url)
        hops = sampler.samples[-1]["hops"]
        result.update(
            {
                "seconds": round(elapsed, 1),
                "orders": load.orders,
                "spans_acked": load.acked_spans,
                "spans_per_s": round(load.acked_spans / elapsed, 1),
                "failed_requests": load.failed_requests,
                "retried_requests": load.retries,
                "ingest_latency": ms(load.ingest_s),
                "stitch_lag": ms(load.lag_s) | {"lost": load.lost_probes},
                "pages": {k: ms(v) for k, v in load.pages.items()},
                "page_errors": dict(load.page_errors),
                "pages_per_s": round(sum(len(v) for v in load.pages.values()) / elapsed, 2),
                "drained_after_s": drained_at,
                "hops_stored": hops,
                "transactions_by_hops": whole,
                "orders_split": sum(k for n, k in whole.items() if n != str(len(HOPS))),
                "samples": sampler.samples,
                "sizes": per_hop(before, after, max(1, hops)),
                "cpu_per_1000_hops": cpu_per_hop(sampler.samples, hops)
                | {"load generator (this process)": round(time.process_time() / hops * 1000, 3)},
            }
        )
    finally:
        stack.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print(report(result))


def report(r: dict[str, Any]) -> str:
    lines = [
        f"soak: {r['seconds']} s, {r['orders']} orders, {r['spans_acked']} spans acknowledged "
        f"({r['spans_per_s']}/s); requests retried (429/503) {r['retried_requests']}, "
        f"failed after retries {r['failed_requests']}",
        f"ingest latency (per request of up to {r['args']['batch']} spans): {r['ingest_latency']}",
        f"stitch lag (last hop acknowledged -> order whole in the API): {r['stitch_lag']}",
        f"pages ({r['pages_per_s']}/s): "
        + "; ".join(f"{k} p50 {v['p50_ms']} p95 {v['p95_ms']} ms" for k, v in r["pages"].items())
        + f"; errors {r['page_errors']}",
        f"stitcher drained {r['drained_after_s']} s after the start; {r['hops_stored']} hops",
        f"live transactions by hop count (every order should be one of {len(HOPS)}): "
        f"{r['transactions_by_hops']}; fragments of split orders: {r['orders_split']}",
        "",
        "memory (RSS MB, children in brackets) and CPU seconds over time:",
    ]
    samples = r["samples"]
    shown = samples[:: max(1, len(samples) // 12)]
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    for s in shown:
        procs = ", ".join(
            f"{k} {v['rss_mb']}{v['children_rss_mb'] or ''} cpu {v['cpu_s']}"
            for k, v in s["processes"].items()
        )
        lines.append(
            f"  t={s['t_s']:>6}s hops {s['hops']:>8} waiting {s['waiting']:>6} | {procs} "
            f"| postgres cpu {s['postgres_cpu_s']} ({s['postgres_backends']} backends)"
        )
    lines += ["", "CPU seconds per 1,000 hops stored (pages and the beat's work included):"]
    lines += [f"  {k}: {v}" for k, v in r["cpu_per_1000_hops"].items()]
    lines += ["", "disk per hop (marginal over the empty database, indexes included):"]
    lines.append(
        f"  {'table':40} {'heap B/hop':>10} {'index B/hop':>11} {'total':>8} {'MB/1M hops':>10}"
    )
    hops = max(1, r["hops_stored"])
    for row in r["sizes"]:
        lines.append(
            f"  {row['table']:40} {row['heap_bytes'] / hops:>10.1f} "
            f"{row['index_bytes'] / hops:>11.1f} {row['bytes_per_hop']:>8} "
            f"{row['mb_per_million_hops']:>10}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
