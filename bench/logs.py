"""/v1/logs against /v1/traces, end to end over HTTP on PostgreSQL, for the same records.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        python bench/logs.py [--seconds 10] [--clients 4] [--records 512] [--repeat 5]
                             [--server gunicorn] [--workers 2] [--db observatory_bench_logs]
                             [--decode-only] [--in-process] [--no-body]

Creates the scratch database ``--db`` on the PostgreSQL server of ``DATABASE_URL``, starts
the server as ``bench/ingest.py`` does, and then, ``--repeat`` times and back to back (so a
busy machine weighs on both alike): ``--clients`` processes post pre-encoded protobuf
requests of ``--records`` spans to ``/v1/traces`` for ``--seconds``, then the same number of
processes post the same records as log records to ``/v1/logs`` for as long. A span and its
log record carry the same attributes (four business keys, the system, the platform status,
the channel, a status code), the same resource and times; the log record's body is a short
line and its severity INFO. Every request is new (a fresh trace id, which the log records
carry too, so their delivery identities are new as well); the bodies repeat from request
to request, so masking them is mostly the memo's work, as for the spans' repeated attribute
values (a unique log line costs more to mask: docs/performance.md). Each run starts from
empty tables (``bench/ingest.py``'s ``empty_tables``).

Prints each round's rates in records/s, and the medians and the median ratio logs/traces.
``--decode-only`` times the two decoders alone on the same bodies (no server, no database).
``--in-process`` calls the two endpoints' views in this process instead (Django's
``RequestFactory``, no HTTP server, no other client), ``--repeat`` rounds of 30 requests each
from empty tables, and prints the CPU a record of this process (the view: decoding,
masking, the store's statements) and of its database backend: the least noisy split of the
two endpoints' costs.
``--no-body`` sends log records without a body: an event (its name and attributes), which
says what the span says and nothing more.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PLACEHOLDER = b"\xab\xcd" * 8


def _attributes(i: int) -> list[Any]:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    n = 100000 + i
    pairs: list[tuple[str, str | int]] = [
        ("retail.key.order_number", f"#{n}"),
        ("retail.key.shopify_order_id", str(820982911946154508 + n)),
        ("retail.key.erp_sales_order", f"SO-{n}"),
        ("retail.key.correlation_id", f"c-{n:08x}"),
        ("retail.system", "erp"),
        ("retail.platform_status", "Pending Fulfillment"),
        ("retail.channel", "web"),
        ("http.response.status_code", 201),
    ]
    return [
        KeyValue(key=k, value=AnyValue(int_value=v))
        if isinstance(v, int)
        else KeyValue(key=k, value=AnyValue(string_value=v))
        for k, v in pairs
    ]


def make_bodies(records: int, body: bool = True) -> tuple[bytes, bytes]:
    """(ExportTraceServiceRequest, ExportLogsServiceRequest) of the same ``records``, each
    with ``PLACEHOLDER`` where a request's fresh trace id goes; the log records with a body
    unless ``body`` is false."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    now = time.time_ns()
    resource = Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value="erp-connector"))]
    )
    spans, logs = [], []
    for i in range(records):
        start = now + i * 1000
        spans.append(
            Span(
                trace_id=PLACEHOLDER,
                span_id=(i + 1).to_bytes(8, "big"),
                name="post sales order",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 35_000_000,
                attributes=_attributes(i),
            )
        )
        logs.append(
            LogRecord(
                trace_id=PLACEHOLDER,
                span_id=(i + 1).to_bytes(8, "big"),
                event_name="post sales order",
                time_unix_nano=start,
                observed_time_unix_nano=start + 35_000_000,
                severity_number=9,
                severity_text="INFO",
                body=AnyValue(string_value=f"sales order SO-{100000 + i} posted") if body else None,
                attributes=_attributes(i),
            )
        )
    traces = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    logs_request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=logs)])]
    )
    return traces.SerializeToString(), logs_request.SerializeToString()


def run(
    port: int, token: str, path: str, body: bytes, args: argparse.Namespace, pids: Any
) -> tuple[float, float, float]:
    """One timed round on ``path``: records stored per second (all clients), and the CPU
    time the server's workers and the database each spent per record, in µs."""
    from ingest import WARMUP, backends, children, client, cpu_seconds, spent

    workers = children(pids.server)
    before = cpu_seconds(workers), cpu_seconds(backends(pids.db_url))
    q: Any = mp.Queue()
    procs = [
        mp.Process(target=client, args=(port, token, body, PLACEHOLDER, args.seconds, q, path))
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    failures = sum(r[1] for r in results)
    if failures:
        print(f"  {path}: {failures} requests failed", flush=True)
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    server_cpu = spent(before[0], cpu_seconds(workers))
    db_cpu = spent(before[1], cpu_seconds(backends(pids.db_url)))
    ok = sum(len(r[0]) for r in results)  # (ingest.client reports each one's latency)
    served = (ok + failures + WARMUP * args.clients) * args.records
    return ok * args.records / elapsed, server_cpu / served * 1e6, db_cpu / served * 1e6


def decode_only(traces: bytes, logs: bytes, args: argparse.Namespace) -> None:
    from tracing import otlp, otlp_logs

    def rate(decode: Any, body: bytes) -> float:
        body = body.replace(PLACEHOLDER, secrets.token_bytes(16))
        n = 0
        begun = time.perf_counter()
        while time.perf_counter() - begun < args.seconds:
            decode(body)
            n += 1
        return n * args.records / (time.perf_counter() - begun)

    pairs = []
    for round_ in range(1, args.repeat + 1):
        t, g = rate(otlp.decode_protobuf, traces), rate(otlp_logs.decode_protobuf, logs)
        pairs.append((t, g))
        print(f"round {round_}: decode traces {t:,.0f}/s, logs {g:,.0f}/s, ratio {g / t:.0%}")
    ratios = [g / t for t, g in pairs]
    print(
        f"decode medians: traces {statistics.median(t for t, _ in pairs):,.0f} spans/s, logs "
        f"{statistics.median(g for _, g in pairs):,.0f} records/s; ratio logs/traces "
        f"{statistics.median(ratios):.0%} (min {min(ratios):.0%}, max {max(ratios):.0%})"
    )


def in_process(traces: bytes, logs: bytes, args: argparse.Namespace) -> None:
    from ingest import cpu_seconds, empty_tables, prepare, spent

    base, db_url, _, token = prepare(args.db, "observatory-bench-logs-")
    import django

    django.setup()
    from django.db import connection
    from django.test import RequestFactory
    from scratch import drop_database

    from observatory.ingest import views

    factory = RequestFactory()
    endpoints = {
        "/v1/traces": (views.otlp_traces, traces),
        "/v1/logs": (views.otlp_logs_view, logs),
    }

    def round_(path: str, requests: int = 30) -> tuple[float, float]:
        view, body = endpoints[path]
        made = [
            factory.post(
                path,
                data=body.replace(PLACEHOLDER, secrets.token_bytes(16)),
                content_type="application/x-protobuf",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
            for _ in range(requests)
        ]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = [cursor.fetchone()[0]]
        db_before, begun = cpu_seconds(backend), time.process_time()
        for request in made:
            answer = view(request)
            if answer.status_code != 200:
                sys.exit(f"{path} answered {answer.status_code}: {answer.content[:200]!r}")
        server = time.process_time() - begun
        records = requests * args.records
        return server / records * 1e6, spent(db_before, cpu_seconds(backend)) / records * 1e6

    print(f"in process: {args.records} records a request, 30 requests a round", flush=True)
    costs: dict[str, list[tuple[float, float]]] = {path: [] for path in endpoints}
    try:
        round_("/v1/traces", 2), round_("/v1/logs", 2)  # imports, caches and the connection
        for n in range(1, args.repeat + 1):
            for path in endpoints if n % 2 else reversed(endpoints):  # each goes first in turn
                empty_tables(db_url)
                costs[path].append(round_(path))
            (ts, td), (gs, gd) = costs["/v1/traces"][-1], costs["/v1/logs"][-1]
            print(
                f"round {n}: µs CPU a record, server / database: /v1/traces {ts:.2f} / "
                f"{td:.2f}, /v1/logs {gs:.2f} / {gd:.2f}",
                flush=True,
            )
    finally:
        connection.close()
        drop_database(base, args.db)
    (ts, td), (gs, gd) = (
        tuple(statistics.median(c[i] for c in costs[path]) for i in (0, 1)) for path in endpoints
    )
    print(
        f"medians of {args.repeat}, µs CPU a record: /v1/traces server {ts:.2f}, database "
        f"{td:.2f} (total {ts + td:.2f}); /v1/logs server {gs:.2f}, database {gd:.2f} (total "
        f"{gs + gd:.2f}); logs' rate by CPU {(ts + td) / (gs + gd):.0%} of traces'"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--records", type=int, default=512, help="spans or log records a request")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of traces then logs")
    parser.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="observatory_bench_logs", help="scratch database")
    parser.add_argument("--decode-only", action="store_true", help="the decoders alone")
    parser.add_argument(
        "--in-process", action="store_true", help="the views called in this process"
    )
    parser.add_argument(
        "--no-body", action="store_true", help="log records without a body (events)"
    )
    args = parser.parse_args()
    traces, logs = make_bodies(args.records, body=not args.no_body)
    if args.decode_only:
        decode_only(traces, logs, args)
        return
    if args.in_process:
        in_process(traces, logs, args)
        return

    from ingest import empty_tables, free_port, prepare, start_server
    from scratch import drop_database

    base, db_url, env, token = prepare(args.db, "observatory-bench-logs-")
    port = free_port()
    server = start_server(args.server, port, env, args.workers)
    print(
        f"server: {args.server} ({args.workers} workers), {args.clients} clients, "
        f"{args.records} records/request, {args.seconds:g} s a round, each endpoint in turn",
        flush=True,
    )
    pids = argparse.Namespace(server=server.pid, db_url=db_url)
    pairs: list[tuple[float, float]] = []
    splits: list[tuple[float, float, float, float]] = []
    try:
        for round_ in range(1, args.repeat + 1):
            # every other round logs go first: a shared machine's load drifts, which would
            # always weigh on the second of the two; and each run starts from empty tables,
            # so neither pays for the rows the runs before it left
            if round_ % 2:
                empty_tables(db_url)
                t, t_server, t_db = run(port, token, "/v1/traces", traces, args, pids)
                empty_tables(db_url)
                g, g_server, g_db = run(port, token, "/v1/logs", logs, args, pids)
            else:
                empty_tables(db_url)
                g, g_server, g_db = run(port, token, "/v1/logs", logs, args, pids)
                empty_tables(db_url)
                t, t_server, t_db = run(port, token, "/v1/traces", traces, args, pids)
            pairs.append((t, g))
            splits.append((t_server, t_db, g_server, g_db))
            print(
                f"round {round_}: /v1/traces {t:,.0f} spans/s ({t_server + t_db:.0f} µs CPU a "
                f"span: server {t_server:.0f}, database {t_db:.0f}), /v1/logs {g:,.0f} "
                f"records/s ({g_server + g_db:.0f} µs CPU a record: server {g_server:.0f}, "
                f"database {g_db:.0f}); ratio {g / t:.0%}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=20)
        drop_database(base, args.db)
    ratios = [g / t for t, g in pairs]
    cpus = [(ts + td, gs + gd) for ts, td, gs, gd in splits]  # per round: traces, logs
    cpu_ratios = [t / g for t, g in cpus]
    print(
        f"medians of {len(pairs)}: /v1/traces {statistics.median(t for t, _ in pairs):,.0f} "
        f"spans/s, /v1/logs {statistics.median(g for _, g in pairs):,.0f} records/s; "
        f"ratio logs/traces {statistics.median(ratios):.0%} "
        f"(min {min(ratios):.0%}, max {max(ratios):.0%})"
    )
    print(
        f"CPU a record (server workers and database, less noisy on a shared machine): "
        f"/v1/traces {statistics.median(t for t, _ in cpus):.0f} µs, /v1/logs "
        f"{statistics.median(g for _, g in cpus):.0f} µs; logs' rate by CPU "
        f"{statistics.median(cpu_ratios):.0%} of traces' "
        f"(min {min(cpu_ratios):.0%}, max {max(cpu_ratios):.0%})"
    )
    t_server, t_db, g_server, g_db = (statistics.median(s[i] for s in splits) for i in range(4))
    print(
        f"  of which server / database: /v1/traces {t_server:.0f} / {t_db:.0f} µs, "
        f"/v1/logs {g_server:.0f} / {g_db:.0f} µs"
    )


if __name__ == "__main__":
    main()
