"""Alerting, measured end to end with the real worker on its default schedule.

    python bench/alerts_latency.py [--samples 3] [--outage] [--speed 10] [--skip-latency]

Everything runs in a scratch data folder (SQLite, the filesystem broker) unless
``BENCH_DATABASE_URL`` names a PostgreSQL database or ``BENCH_BROKER_URL`` a Redis broker
(e.g. ``redis://127.0.0.1:6379/7``: kombu's filesystem transport can crash the worker when
ingest publishes while it reads, see celery/kombu#1551). The script starts, on loopback ports:
the web server (uvicorn, as in ``make run``), the Celery worker with beat (as in the
Procfile: pipeline tick every 5 s, alert evaluation every 15 s, delivery every 5 s), and a
Slack stand-in that records when each webhook request arrives. One Slack webhook channel
points at it (ALERTS_ALLOW_PRIVATE_URLS=1); the shipped default rules are active.

1. **Detection latency** (``--samples`` times): a web order is captured now through
   ``POST /api/v1/events`` and never posted, while healthy orders go on being captured and
   posted every few seconds (the ERP keeps reporting, so its watermark passes the deadline:
   without news from the ERP a deadline is judged only after its maximum telemetry delay). Its SLA (captured -> posted, 60 s) passes 60 s later; the latency is from
   that moment to the Slack request arriving. The order is then posted, the resolution
   awaited, and the next sample starts at a random phase of the schedule. Target: < 30 s.
2. **Messages per incident** (``--outage``): ``manage.py simulate --scenario erp-outage``
   live at ``--speed`` (the ERP answers 503 for 30 simulated minutes, 60 s into the run),
   then the worker keeps evaluating until every alert has resolved. Counts the Slack
   messages, per alert. Target: at most 3 per incident.

The last line is a one-line summary of both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import PYTHON, Stack  # noqa: E402


def event(system: str, keys: dict[str, str], at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"bench-{time.time_ns()}-{random.random()}",
        "source": f"urn:bench:{system}",
        "type": f"com.bench.{system}",
        "time": at.isoformat().replace("+00:00", "Z"),
        "data": {"system": system, "keys": keys, **data},
    }


def capture(n: int, at: datetime) -> dict[str, Any]:
    return event(
        "shopify",
        {"order_number": f"#B{n}", "shopify_order_id": f"77{n}"},
        at,
        stage="captured",
        operation="orders/create",
        channel="web",
        amount="99.00",
        currency="USD",
    )


def posting(n: int, at: datetime) -> dict[str, Any]:
    return event(
        "erp",
        {"order_number": f"#B{n}", "erp_sales_order": f"SO-B{n}"},
        at,
        stage="posted",
        operation="post_sales_order",
    )


class Bench(Stack):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args

    def send(self, *events: dict[str, Any]) -> None:
        self.send_events(*events)

    def trickle(self, stop: threading.Event) -> None:
        """Healthy orders every few seconds, captured and posted at once: the ERP goes on
        reporting, so a missing posting is known as soon as its deadline passes."""
        n = 100_000
        while not stop.wait(3):
            at = datetime.now(UTC)
            n += 1
            self.send(capture(n, at), posting(n, at))

    # --- 1. detection latency -------------------------------------------------------------

    def latency(self, samples: int) -> list[float]:
        stop = threading.Event()
        threading.Thread(target=self.trickle, args=(stop,), daemon=True).start()
        try:
            return self._latency(samples)
        finally:
            stop.set()

    def _latency(self, samples: int) -> list[float]:
        out = []
        for i in range(samples):
            time.sleep(random.uniform(0, 15))  # a random phase of the 15 s schedule
            now = datetime.now(UTC)
            healthy, stuck = 2 * i, 2 * i + 1
            self.send(capture(healthy, now), posting(healthy, now), capture(stuck, now))
            deadline = now.timestamp() + 60  # the web captured -> posted SLA
            seen = len(self.slack.received)
            hit = self.slack.wait(
                lambda t: t.startswith("[FIRING") and "stuck before posted" in t, seen, 180
            )
            if hit is None:
                print(f"sample {i + 1}: no Slack message within 180 s", flush=True)
                continue
            latency = hit[0] - deadline
            out.append(latency)
            print(f"sample {i + 1}: SLA passed -> Slack request in {latency:.1f} s", flush=True)
            seen = len(self.slack.received)
            self.send(posting(stuck, datetime.now(UTC)))
            if self.slack.wait(lambda t: t.startswith("[RESOLVED"), seen, 120) is None:
                print("  (no resolution within 120 s)", flush=True)
        return out

    # --- 2. messages per incident during an erp-outage run --------------------------------

    def outage(self, speed: float, duration: float) -> dict[str, int]:
        seen = len(self.slack.received)
        started = time.time()
        subprocess.run(
            [PYTHON, "manage.py", "simulate", "--url", self.base, "--token", self.token,
             "--scenario", "erp-outage", "--speed", str(speed), "--duration", str(duration),
             "--rate", "1", "--seed", "7", "--quiet"],
            cwd=ROOT, env=self.env, check=True, capture_output=True,
        )  # fmt: skip
        print(f"simulator done after {time.time() - started:.0f} s", flush=True)
        # keep the worker going until every alert has resolved (at most 15 minutes)
        for _ in range(90):
            left = self.manage(
                "shell",
                "-c",
                "from observatory.alerts.models import Alert; "
                "print(Alert.objects.exclude(state='resolved').count())",
            )
            if left == "0":
                break
            time.sleep(10)
        per_alert: dict[str, int] = {}
        for _, body in self.slack.received[seen:]:
            text = body.get("text", "")
            rule = text.split("] ", 1)[-1].split(":", 1)[0]
            per_alert[rule] = per_alert.get(rule, 0) + 1
            print(f"  {text[:140]}", flush=True)
        return per_alert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--outage", action="store_true", help="also run the erp-outage count")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=330.0, help="live simulator seconds")
    args = parser.parse_args()
    bench = Bench(args)
    summary = []
    try:
        bench.start()
        if not args.skip_latency:
            lat = bench.latency(args.samples)
            if lat:
                summary.append(
                    f"detection latency over {len(lat)} samples: median "
                    f"{statistics.median(lat):.1f} s, max {max(lat):.1f} s (target < 30 s)"
                )
            else:
                summary.append("detection latency: no sample arrived")
        if args.outage:
            per_alert = bench.outage(args.speed, args.duration)
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(per_alert.items())) or "none"
            worst = max(per_alert.values(), default=0)
            summary.append(
                f"erp-outage: {sum(per_alert.values())} Slack messages ({shown}); "
                f"at most {worst} per alert (target <= 3 per incident)"
            )
    finally:
        bench.stop()
    print("; ".join(summary))


if __name__ == "__main__":
    main()
