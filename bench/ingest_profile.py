"""Where an ingested span's time goes: the OTLP ingest path in process, under cProfile.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/observatory \\
        python bench/ingest_profile.py [--requests 40] [--spans 512] [--top 30] [--sort tottime]

Posts ``--requests`` of ``bench/ingest.py``'s requests (``--spans`` spans each, every one a
new trace) through Django's WSGI handler (middleware, the view, decoding, masking, the
store) on the scratch database ``--db`` (made anew), with no HTTP server or socket in
between, after a few untimed ones. Prints spans/s, then the profile's top functions, and
the time of each stage (decode, mask, row building, the writes) measured apart on the
same requests.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import make_template  # noqa: E402
from scratch import open_scratch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--db", default="observatory_bench_ingest_profile")
    args = parser.parse_args()
    os.environ.setdefault("OBSERVATORY_DATA_DIR", tempfile.mkdtemp(prefix="observatory-prof-"))
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
    os.environ.pop("CELERY_BROKER_URL", None)
    open_scratch(args.db)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.test import Client

    from observatory.access.actions import do_create_ingest_token

    _, token = do_create_ingest_token("bench-profile", "")
    template, placeholder = make_template(args.spans)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def post() -> None:
        body = template.replace(placeholder, secrets.token_bytes(16))
        response = client.post("/v1/traces", body, content_type="application/x-protobuf")
        assert response.status_code == 200, response.content

    for _ in range(3):
        post()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.requests):
        post()
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"in process, profiled: {args.requests * args.spans / elapsed:,.0f} spans/s")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())

    stages(template, placeholder, args.requests, args.spans)


def stages(template: bytes, placeholder: bytes, requests: int, spans: int) -> None:
    """Each stage timed alone (this process's CPU time), unprofiled, on fresh requests:
    µs per span. The garbage collector runs here as it would outside an ingest request."""
    from django.db import transaction

    from observatory.hops import store
    from observatory.hops.actions import mask_hops
    from observatory.ingest.views import key_rules
    from observatory.lib.clock import now
    from tracing.otlp import decode_protobuf

    bodies = [template.replace(placeholder, secrets.token_bytes(16)) for _ in range(requests)]
    t: dict[str, float] = dict.fromkeys(["decode", "mask", "rows", "store"], 0.0)
    for body in bodies:
        a = time.process_time()
        records = decode_protobuf(body, key_rules()).records
        b = time.process_time()
        mask_hops(records)
        c = time.process_time()
        received = now()
        pairs = list(enumerate(records))
        for i, r in pairs:
            store._hop_row(i, r, received)
        store._key_rows(pairs)
        d = time.process_time()
        with transaction.atomic():
            store.store_records(records, received)
        e = time.process_time()
        t["decode"] += b - a
        t["mask"] += c - b
        t["rows"] += d - c
        t["store"] += e - d
    n = requests * spans
    print("stage        CPU µs/span  (store: building its rows again, and writing them)")
    for name, seconds in t.items():
        print(f"{name:<16} {seconds / n * 1e6:7.2f}")


if __name__ == "__main__":
    main()
