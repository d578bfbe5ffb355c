"""Ingest throughput on PostgreSQL, end to end over HTTP, against a bare COPY.

    python bench/ingest.py [--seconds 30] [--clients 4] [--spans 512] [--server gunicorn]
                           [--workers 2]

Creates (or empties) a scratch database ``observatory_bench`` on the PostgreSQL server of
``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/observatory_bench``),
migrates it, starts the server on a free loopback port, and has ``--clients`` processes
post pre-encoded OTLP protobuf requests of ``--spans`` spans (8 keys and attributes each,
every request a new trace) over keep-alive connections for ``--seconds``. Then it COPYs
the same rows straight into the same tables, so the ratio is visible in one run.
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
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/observatory_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def client(
    port: int, token: str, template: bytes, placeholder: bytes, seconds: float, q: Any
) -> None:
    """Post fresh traces as fast as the server answers; report latencies and failures."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        body = template.replace(placeholder, secrets.token_bytes(16))
        started = time.perf_counter()
        conn.request("POST", "/v1/traces", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1
    conn.close()
    q.put((latencies, failures))


def psql(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def prepare_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    psql(f"{base}/postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"{base}/postgres", f"CREATE DATABASE {name}")
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


def start_server(kind: str, port: int, url: str, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    bindir = Path(PYTHON).parent
    if kind == "gunicorn":
        cmd = [
            str(bindir / "gunicorn"),
            "-w",
            str(workers),
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
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{kind} did not start on port {port}")


def bare_copy(url: str, template: bytes, placeholder: bytes, requests: int) -> float:
    """Rows/s (hop + its key rows + its place in the stitcher's queue = one span) of a COPY
    of the same rows, same tables."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from observatory.hops import store
    from observatory.lib.clock import now
    from tracing.otlp import decode_protobuf

    batches = [
        decode_protobuf(template.replace(placeholder, secrets.token_bytes(16))).records
        for _ in range(requests)
    ]
    received = now()
    spans = 0
    started = time.perf_counter()
    cols = ", ".join(store.HOP_COLUMNS)
    with transaction.atomic(), connection.cursor() as wrapper:
        cur = wrapper.cursor
        ids = store._take_ids_postgresql(cur, sum(len(b) for b in batches))
        it = iter(ids)
        for records in batches:
            pairs = [(next(it), r) for r in records]
            with cur.copy(f"COPY {store.HOP_TABLE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(store.HOP_COPY_TYPES)
                for i, r in pairs:
                    copy.write_row(store._hop_row(i, r, received))
            store._copy_keys(cur, pairs)
            store._copy_waiting(cur, [i for i, _ in pairs])
            spans += len(records)
    return spans / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)

    print(f"preparing {url} ...", flush=True)
    prepare_database(url)
    token = (
        subprocess.run(
            [PYTHON, "manage.py", "create_ingest_token", "bench"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    template, placeholder = make_template(args.spans)
    port = free_port()
    server = start_server(args.server, port, url, args.workers)
    try:
        q: Any = mp.Queue()
        procs = [
            mp.Process(target=client, args=(port, token, template, placeholder, args.seconds, q))
            for _ in range(args.clients)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
    finally:
        server.terminate()
        server.wait(timeout=20)
    latencies = sorted(x for lat, _ in results for x in lat)
    failures = sum(f for _, f in results)
    requests = len(latencies)
    rate = requests * args.spans / elapsed
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0
    copy_rate = bare_copy(url, template, placeholder, max(20, min(requests, 200)))
    print(
        f"server: {args.server} ({args.workers} workers), {args.clients} clients, {args.spans} spans/request"
    )
    print(f"requests: {requests} ok, {failures} failed, in {elapsed:.1f} s")
    print(f"end to end: {rate:,.0f} spans/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"bare COPY of the same rows: {copy_rate:,.0f} spans/s")
    print(f"ratio: {rate / copy_rate:.0%} of bare COPY")


if __name__ == "__main__":
    main()
