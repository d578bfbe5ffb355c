"""Ingest throughput on PostgreSQL: end to end over HTTP, against a bare COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        python bench/ingest.py [--seconds 20] [--clients 4] [--spans 512] [--repeat 1]
                               [--server gunicorn] [--workers 2] [--db observatory_bench_ingest]

Creates the scratch database ``--db`` on the PostgreSQL server of ``DATABASE_URL``,
migrates it, starts the server on a free loopback port, and then, ``--repeat`` times:

1. end to end: ``--clients`` processes post pre-encoded OTLP protobuf requests of
   ``--spans`` spans (8 keys and attributes each, every request a new trace) over
   keep-alive connections for ``--seconds`` (after two untimed requests each);
2. bare COPY: as many requests as went through (at most ``--copy-requests``) are turned
   into the exact rows the server writes (decoded with the server's key rules, masked, ids
   taken from the hop table's own id default) *before* the clock starts; then ``--workers``
   connections (the server's writers) COPY (binary) them into fresh clones of the four
   tables a request writes (receipts, hops, keys, the stitcher's queue; ``LIKE ...
   INCLUDING ALL``: same columns, defaults and indexes, partitioned by day as the tables
   are; empty, which made no difference to the COPY's cost when tried), one transaction
   per request as the server commits, and only that is timed.

Every round starts from empty tables on both sides: the tables a request writes are
emptied before its end to end (the clones are made anew before its bare COPY).

It prints both rates in spans/s and their ratio. The server's extra work per request is
what the ratio shows: HTTP, authentication, decoding, masking, row building, the receipt
savepoint, taking ids. Run it on an otherwise idle machine, or compare ratios within a run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PYTHON = sys.executable
#: the tables one request writes, in the order the server writes them (hops.store)
CLONE_PREFIX = "bench_clone_"
TICK = os.sysconf("SC_CLK_TCK")
WARMUP = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` still alive (Linux /proc)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def backends(db_url: str) -> list[int]:
    """The PostgreSQL server processes serving ``db_url``'s database (on this machine)."""
    import psycopg

    with psycopg.connect(db_url.replace("postgres://", "postgresql://", 1)) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [r[0] for r in rows]


def make_template(spans: int) -> tuple[bytes, bytes]:
    """One ExportTraceServiceRequest with a placeholder trace id, and that placeholder."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    placeholder = b"\xab\xcd" * 8
    now = time.time_ns()

    def kv(key: str, value: str | int) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    out = []
    for i in range(spans):
        n = 100000 + i
        out.append(
            Span(
                trace_id=placeholder,
                span_id=(i + 1).to_bytes(8, "big"),
                name="post sales order",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 35_000_000,
                attributes=[
                    kv("retail.key.order_number", f"#{n}"),
                    kv("retail.key.shopify_order_id", str(820982911946154508 + n)),
                    kv("retail.key.erp_sales_order", f"SO-{n}"),
                    kv("retail.key.correlation_id", f"c-{n:08x}"),
                    kv("retail.system", "erp"),
                    kv("retail.platform_status", "Pending Fulfillment"),
                    kv("retail.channel", "web"),
                    kv("http.response.status_code", 201),
                ],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv("service.name", "erp-connector")]),
                scope_spans=[ScopeSpans(spans=out)],
            )
        ]
    )
    return request.SerializeToString(), placeholder


# --- end to end ------------------------------------------------------------------------------


def client(
    port: int,
    token: str,
    template: bytes,
    placeholder: bytes,
    seconds: float,
    q: Any,
    path: str = "/v1/traces",
) -> None:
    """Post fresh requests to ``path`` as fast as the server answers; report latencies,
    failures and the timed window (monotonic clock, shared by the processes of one machine)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}

    def post() -> int:
        conn.request("POST", path, template.replace(placeholder, secrets.token_bytes(16)), headers)
        response = conn.getresponse()
        response.read()
        return response.status

    for _ in range(WARMUP):  # a worker's first request imports and connects: not timed
        post()
    latencies: list[float] = []
    failures = 0
    begun = time.monotonic()
    deadline = begun + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        if post() == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1
    q.put((latencies, failures, begun, time.monotonic()))
    conn.close()


def end_to_end(
    server: subprocess.Popen[bytes],
    db_url: str,
    port: int,
    token: str,
    template: bytes,
    placeholder: bytes,
    args: argparse.Namespace,
) -> dict[str, Any]:
    workers = children(server.pid)
    cpu_before = cpu_seconds(workers), cpu_seconds(backends(db_url))
    q: Any = mp.Queue()
    procs = [
        mp.Process(target=client, args=(port, token, template, placeholder, args.seconds, q))
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    server_cpu = spent(cpu_before[0], cpu_seconds(workers))
    db_cpu = spent(cpu_before[1], cpu_seconds(backends(db_url)))
    latencies = sorted(x for r in results for x in r[0])
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    served = (len(latencies) + sum(r[1] for r in results) + WARMUP * args.clients) * args.spans
    return {
        "client_cpu": server_cpu / served,
        "db_cpu": db_cpu / served,
        "requests": len(latencies),
        "failures": sum(r[1] for r in results),
        "elapsed": elapsed,
        "rate": len(latencies) * args.spans / elapsed,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else 0.0,
    }


# --- the bare COPY ---------------------------------------------------------------------------


def _tables() -> list[Any]:
    from observatory.hops import store

    return [store.RECEIPTS, store.HOPS, store.KEYS, store.WAITING]


def _prepare_rows(template: bytes, placeholder: bytes, requests: int) -> list[list[list[Any]]]:
    """Per request, per table (``_tables``), the rows the server writes for it."""
    from observatory.hops import store
    from observatory.hops.actions import mask_hops
    from observatory.ingest.views import key_rules
    from observatory.lib import bulk
    from observatory.lib.clock import now
    from tracing.otlp import decode_protobuf

    out = []
    for _ in range(requests):
        records = decode_protobuf(
            template.replace(placeholder, secrets.token_bytes(16)), key_rules()
        ).records
        mask_hops(records)
        received = now()
        pairs = list(zip(bulk.take_ids(store.HOP_TABLE, len(records)), records, strict=True))
        out.append(
            [
                [(i, r.uid) for i, r in pairs],
                [store._hop_row(i, r, received) for i, r in pairs],
                store._key_rows(pairs),
                [(i,) for i, _ in pairs],
            ]
        )
    return out


def copy_writer(
    db_url: str, template: bytes, placeholder: bytes, requests: int, barrier: Any, q: Any
) -> None:
    """One of the bare COPY's connections: prepare its rows, wait for the others, COPY."""
    os.environ["DATABASE_URL"] = db_url
    import django

    django.setup()
    import psycopg
    from django.db import connection

    batches = _prepare_rows(template, placeholder, requests)
    connection.close()
    statements = []
    for table in _tables():
        cols = ", ".join(table.names)
        types = [c.pg_type if c.pg_type != "jsonb" else "bytea" for c in table.columns]
        statements.append(
            (f"COPY {CLONE_PREFIX}{table.name} ({cols}) FROM STDIN (FORMAT BINARY)", types)
        )
    spans = sum(len(b[1]) for b in batches)
    with psycopg.connect(db_url.replace("postgres://", "postgresql://", 1)) as conn:
        cur = conn.cursor()
        backend = [conn.info.backend_pid]
        barrier.wait()
        cpu = time.process_time(), cpu_seconds(backend)
        begun = time.monotonic()
        for batch in batches:
            for (sql, types), rows in zip(statements, batch, strict=True):
                with cur.copy(sql) as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
            conn.commit()
        ended = time.monotonic()
        client_cpu = time.process_time() - cpu[0]
        db_cpu = spent(cpu[1], cpu_seconds(backend))
    q.put((spans, begun, ended, client_cpu, db_cpu))


def empty_tables(db_url: str) -> None:
    """Empty the tables a request writes (and what refers to them), so that every round's
    end to end starts from empty tables as its bare COPY does: a round then does not pay
    for the millions of rows the rounds before it left (their indexes grow past the
    database's buffers, and its CPU a span with them)."""
    import django
    import psycopg

    django.setup()
    with psycopg.connect(db_url.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        names = ", ".join(t.name for t in _tables())
        c.execute(f"TRUNCATE {names} CASCADE")


def make_clones(db_url: str) -> None:
    import django
    import psycopg

    django.setup()
    from django.db import connections

    with psycopg.connect(db_url.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        for table in _tables():
            clone = f"{CLONE_PREFIX}{table.name}"
            c.execute(f"DROP TABLE IF EXISTS {clone} CASCADE")
            # partitioned as the table is (hops and keys by day), with the same partitions
            key = c.execute("SELECT pg_get_partkeydef(%s::regclass)", [table.name]).fetchone()
            by = f" PARTITION BY {key[0]}" if key and key[0] else ""
            c.execute(f"CREATE TABLE {clone} (LIKE {table.name} INCLUDING ALL){by}")
            parts = c.execute(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                [table.name],
            ).fetchall()
            for name, bound in parts:
                c.execute(f"CREATE TABLE {CLONE_PREFIX}{name} PARTITION OF {clone} {bound}")
    connections.close_all()  # the writers fork from here


def bare_copy(
    db_url: str, template: bytes, placeholder: bytes, requests: int, writers: int
) -> dict[str, Any]:
    make_clones(db_url)
    barrier: Any = mp.Barrier(writers)
    q: Any = mp.Queue()
    share = [requests // writers + (1 if w < requests % writers else 0) for w in range(writers)]
    procs = [
        mp.Process(target=copy_writer, args=(db_url, template, placeholder, n, barrier, q))
        for n in share
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    spans = sum(r[0] for r in results)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return {
        "requests": requests,
        "spans": spans,
        "elapsed": elapsed,
        "rate": spans / elapsed,
        "client_cpu": sum(r[3] for r in results) / spans,
        "db_cpu": sum(r[4] for r in results) / spans,
    }


# --- the server ------------------------------------------------------------------------------


def start_server(
    kind: str, port: int, env: dict[str, str], workers: int, threads: int = 1
) -> subprocess.Popen[bytes]:
    bindir = Path(PYTHON).parent
    if kind == "gunicorn":
        # threads > 1: gunicorn's gthread worker, which also keeps connections alive (its
        # sync worker closes each one after its answer)
        cmd = [
            str(bindir / "gunicorn"),
            "-w",
            str(workers),
            *(["-k", "gthread", "--threads", str(threads)] if threads > 1 else []),
            "-b",
            f"127.0.0.1:{port}",
            "--keep-alive",
            "30",
            "observatory.wsgi:application",
        ]
    else:
        cmd = [
            str(bindir / "uvicorn"),
            "--workers",
            str(workers),
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
            "observatory.asgi:application",
        ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    for _ in range(150):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{kind} did not start on port {port}")


def prepare(db: str, prefix: str) -> tuple[str, str, dict[str, str], str]:
    """(the PostgreSQL server's url, the scratch database's, the server's environment, an
    ingest token) for a benchmark of the server on the scratch database ``db`` (shared with
    bench/logs.py): created anew on the server of ``DATABASE_URL`` and migrated, a token
    made, ``os.environ`` set alike (the clients' processes inherit it)."""
    from scratch import create_database, scratch_url

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at a PostgreSQL server (the scratch db is made there)")
    db_url = scratch_url(base, db)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "observatory.settings",
        "OBSERVATORY_DATA_DIR": tempfile.mkdtemp(prefix=prefix),
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(40),
    }
    env.pop("CELERY_BROKER_URL", None)  # the nudges go to a scratch filesystem broker
    os.environ.update(env)

    print(f"preparing {db} ...", flush=True)
    create_database(base, db)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    token = (
        subprocess.run(
            [PYTHON, "manage.py", "create_ingest_token", "bench"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return base, db_url, env, token


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1, help="end to end + bare COPY rounds")
    parser.add_argument("--copy-requests", type=int, default=200, help="at most, per round")
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="per gunicorn worker (gthread when over 1)"
    )
    parser.add_argument("--db", default="observatory_bench_ingest", help="scratch database")
    args = parser.parse_args()

    _, db_url, env, token = prepare(args.db, "observatory-bench-ingest-")
    template, placeholder = make_template(args.spans)
    port = free_port()
    server = start_server(args.server, port, env, args.workers, args.threads)
    print(
        f"server: {args.server} ({args.workers} workers, {args.threads} threads each), "
        f"{args.clients} clients, "
        f"{args.spans} spans/request, {args.seconds:g} s a round; bare COPY on "
        f"{args.workers} connections",
        flush=True,
    )
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    rates: list[tuple[float, float]] = []
    try:
        for round_ in range(1, args.repeat + 1):
            empty_tables(db_url)
            e2e = end_to_end(server, db_url, port, token, template, placeholder, args)
            copied = bare_copy(
                db_url, template, placeholder,
                max(2 * args.workers, min(e2e["requests"], args.copy_requests)), args.workers,
            )  # fmt: skip
            ratios.append(e2e["rate"] / copied["rate"])
            rates.append((e2e["rate"], copied["rate"]))
            e2e_cpu = e2e["client_cpu"] + e2e["db_cpu"]
            copy_cpu = copied["client_cpu"] + copied["db_cpu"]
            cpu_ratios.append(copy_cpu / e2e_cpu)
            print(
                f"round {round_}: end to end {e2e['rate']:,.0f} spans/s "
                f"({e2e['requests']} requests ok, {e2e['failures']} failed, in "
                f"{e2e['elapsed']:.1f} s; p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms); "
                f"bare COPY {copied['rate']:,.0f} spans/s ({copied['requests']} requests in "
                f"{copied['elapsed']:.2f} s); ratio {ratios[-1]:.0%}\n"
                f"  CPU per span: end to end {e2e_cpu * 1e6:.0f} µs (server "
                f"{e2e['client_cpu'] * 1e6:.0f}, database {e2e['db_cpu'] * 1e6:.0f}); bare COPY "
                f"{copy_cpu * 1e6:.0f} µs (client {copied['client_cpu'] * 1e6:.0f}, database "
                f"{copied['db_cpu'] * 1e6:.0f}); CPU ratio {cpu_ratios[-1]:.0%}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"end to end: {statistics.median(r for r, _ in rates):,.0f} spans/s (median)")
    print(
        f"bare COPY of the same rows: {statistics.median(c for _, c in rates):,.0f} spans/s (median)"
    )
    print(
        f"ratio: {statistics.median(ratios):.0%} of bare COPY (median of {len(ratios)}; "
        f"min {min(ratios):.0%}, max {max(ratios):.0%})"
    )
    print(
        f"CPU ratio (bare COPY's CPU per span / end to end's, server and database processes "
        f"only, so less noisy): median {statistics.median(cpu_ratios):.0%} "
        f"(min {min(cpu_ratios):.0%}, max {max(cpu_ratios):.0%})"
    )


if __name__ == "__main__":
    main()
