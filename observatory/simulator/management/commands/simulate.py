"""``manage.py simulate``: realistic retail traffic through Observatory's ingest endpoints.

Web orders (Shopify webhooks, a queue that breaks the trace, NetSuite-style ERP
postings, warehouse, carriers, Shopify fulfillments, invoicing), POS sales posted to the
ERP in 15-minute batches, marketplace orders, returns with refunds and settlement, and
inventory updates published to Shopify and the POS, sent as OpenTelemetry spans (OTLP),
signed Shopify webhooks and CloudEvents. What each ``--scenario`` injects, and what
Observatory should show for it, is in :mod:`observatory.simulator.scenarios`. Telemetry
arrives as it does from real integrations (export batching, relayed carrier events, late
callbacks, Shopify retries, a store's POS offline for hours: :mod:`.telemetry`, tuned by
the options below, off with ``--no-telemetry-delay``); ``--truth FILE`` writes what really
happened (:mod:`observatory.simulator.truth`) when the run ends.

The last line of standard output is the result, e.g.
``simulated 500 orders, 4,812 hops, 0 send errors``.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from observatory.simulator.model import DAILY_ORDERS, Plan, Simulation, history_volume
from observatory.simulator.runner import Runner
from observatory.simulator.scenarios import SCENARIOS, help_text
from observatory.simulator.telemetry import DEFAULT_TELEMETRY, Telemetry
from observatory.simulator.timing import TimeMap
from observatory.simulator.transport import Senders, Stats, random_seed, wait_for_server

#: Orders of a run that names neither --orders, --duration, --forever nor --backfill-days.
DEFAULT_ORDERS = 100


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    _progress: tqdm[Any] | None = None
    help = (
        "Drive realistic retail traffic (web, POS and marketplace orders, returns, "
        "inventory updates) through Observatory's real ingest endpoints: OTLP spans from "
        "the OpenTelemetry SDK, signed Shopify webhooks and CloudEvents. Scenarios: "
        + help_text()
        + ". Ctrl-C stops cleanly with a summary; the result is alone on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="Observatory's base URL")
        parser.add_argument("--token", help="an ingest token")
        parser.add_argument(
            "--token-file", help="read the ingest token from this file (e.g. .data/demo-token)"
        )
        parser.add_argument(
            "--orders",
            type=int,
            help="orders in all, backfilled ones included (default: 100 when nothing "
            "else bounds the run)",
        )
        parser.add_argument(
            "--rate", type=float, default=1.0, help="live orders per second (default 1)"
        )
        parser.add_argument(
            "--scenario",
            choices=sorted(SCENARIOS),
            default="normal",
            help="what to inject (default normal; each is described above)",
        )
        parser.add_argument(
            "--seed", type=int, help="same seed, same ids and payloads (default: random)"
        )
        parser.add_argument(
            "--backfill-days",
            type=float,
            default=0.0,
            help="first write this many days of history, business times in the past "
            f"(about {DAILY_ORDERS} orders a day, times the scenario's traffic)",
        )
        parser.add_argument(
            "--history-once",
            metavar="FILE",
            help="send the backfill only when FILE does not exist, and create it as the "
            "backfill starts: a second run on the same data continues the live traffic "
            "without another history (make run passes .data/demo-history)",
        )
        parser.add_argument(
            "--history-end",
            metavar="ISO-8601",
            help="end the backfilled history at this past moment instead of now (a "
            "history-only run: same seed and end, same traffic at the same hours of the "
            "week; e.g. 2026-11-18T09:07Z)",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="after the start, simulated time runs this many times faster than the "
            "clock (delays divided by it); default 1",
        )
        parser.add_argument(
            "--duration", type=float, help="stop starting live orders after this many seconds"
        )
        parser.add_argument("--forever", action="store_true", help="send live traffic until Ctrl-C")
        parser.add_argument(
            "--drain",
            type=float,
            default=90.0,
            help="after the last live order, keep sending the hops due within this many "
            "simulated seconds (default 90: every order posted)",
        )
        parser.add_argument(
            "--shopify-secret",
            help="the Shopify app secret that signs webhooks "
            "(default: the first of settings.SHOPIFY_WEBHOOK_SECRET)",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            help="wait up to this many seconds for GET /healthz to answer before sending",
        )
        parser.add_argument(
            "--banner", action="store_true", help="print where to look (for `make run`)"
        )
        tel = DEFAULT_TELEMETRY
        parser.add_argument(
            "--export-delay",
            type=float,
            default=tel.export_delay_s,
            metavar="SECONDS",
            help="spans are exported, and status events flushed, at least this often (wall "
            f"seconds, default {tel.export_delay_s:g}): the batching of real exporters",
        )
        parser.add_argument(
            "--relay-every",
            type=float,
            default=tel.relay_every_s,
            metavar="SECONDS",
            help="carrier tracking events reach Observatory through a relay that forwards "
            f"them in batches this often (simulated seconds, default {tel.relay_every_s:g}; "
            "0: no relay)",
        )
        parser.add_argument(
            "--shopify-retry-rate",
            type=float,
            default=tel.shopify_retry_rate,
            metavar="SHARE",
            help="share of Shopify webhooks whose first delivery fails, delivered by "
            f"Shopify's retry minutes to hours later (default {tel.shopify_retry_rate:g})",
        )
        parser.add_argument(
            "--offline-store-hours",
            type=float,
            default=tel.offline_store_hours,
            metavar="H",
            help="in a history of a day or more, one store's POS telemetry is buffered for "
            f"H hours and uploaded at once (default {tel.offline_store_hours:g}; 0: never)",
        )
        parser.add_argument(
            "--no-telemetry-delay",
            action="store_true",
            help="send every hop when it happens (no batching, relay, lag, retries or "
            "offline store): the simulator's behaviour before telemetry delay",
        )
        parser.add_argument(
            "--truth",
            metavar="FILE",
            help="when the run ends (Ctrl-C too), write its ground truth there as JSON: "
            "each transaction's keys, business stages, deliveries and missed deadlines",
        )
        parser.add_argument("--workers", type=int, default=8, help="concurrent webhook senders")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **opts: Any) -> None:
        url = opts["url"].rstrip("/")
        token = self._token(opts)
        scenario = SCENARIOS[opts["scenario"]]
        if opts["rate"] <= 0 or opts["speed"] <= 0:
            raise CommandError("--rate and --speed must be positive")
        if opts["forever"] and opts["orders"] is not None:
            raise CommandError("--forever and --orders contradict each other")
        if opts["orders"] is not None and opts["orders"] < 0:
            raise CommandError("--orders must not be negative")
        secret = opts["shopify_secret"] or next(iter(settings.SHOPIFY_WEBHOOK_SECRET), "")
        if not secret:
            raise CommandError("no Shopify secret: pass --shopify-secret")
        seed = opts["seed"] if opts["seed"] is not None else random_seed()
        telemetry = self._telemetry(opts)
        truth = opts["truth"]
        if truth and not Path(truth).resolve().parent.is_dir():
            raise CommandError(f"--truth: the directory of {truth} does not exist")

        days = max(0.0, opts["backfill_days"])
        once = Path(opts["history_once"]) if opts["history_once"] else None
        if days and once is not None and once.exists():
            self.stdout.write(f"history already sent ({once} exists): live traffic only")
            days = 0.0
        history = history_volume(days, scenario) if days else 0
        orders = opts["orders"]
        if orders is not None:
            history = min(history, orders)
            live_orders: int | None = orders - history
        elif opts["duration"] is not None or opts["forever"]:
            live_orders = None
        else:
            live_orders = 0 if days else DEFAULT_ORDERS
        speed = opts["speed"]

        if opts["wait"] and not wait_for_server(url, opts["wait"]):
            raise CommandError(f"{url}/healthz did not answer within {opts['wait']:.0f} s")
        if opts["banner"]:
            self._banner(url, days, opts)

        if days and once is not None:
            once.write_text(
                f"{days:g} days of history sent from {datetime.now(UTC):%Y-%m-%dT%H:%MZ}\n"
            )
        start = datetime.now(UTC)
        if opts["history_end"]:
            start = self._history_end(opts["history_end"], start, days, live_orders)
        plan = Plan(
            seed=seed,
            start=start,
            scenario=scenario,
            history_days=days,
            history_orders=history,
            live_rate=opts["rate"] / speed if live_orders != 0 else 0.0,
            live_orders=live_orders,
            live_fault_delay_s=60.0 * speed,
            telemetry=telemetry,
        )
        sim = Simulation(plan, record_truth=bool(truth))
        senders = Senders.for_server(
            url, token, secret, seed=seed, workers=opts["workers"], telemetry=telemetry
        )
        quiet = opts["quiet"] or not sys.stderr.isatty()
        progress = self._progress = tqdm(
            total=sim.expected_orders(),
            unit=" orders",
            desc=f"simulate {scenario.name}",
            file=sys.stderr,
            disable=quiet,
            dynamic_ncols=True,
        )
        runner = Runner(
            sim,
            senders,
            TimeMap(start, speed),
            # a history that ends in the past is all due at once: its clock stops at the end
            now=(lambda: start) if opts["history_end"] else (lambda: datetime.now(UTC)),
            drain_s=opts["drain"],
            duration_s=opts["duration"],
            progress=progress,
            on_history_sent=self._history_sent if days else None,
            truth_path=truth or None,
        )
        previous = signal.getsignal(signal.SIGTERM)
        in_main = _in_main_thread()
        if in_main:
            signal.signal(signal.SIGTERM, _interrupt)
        try:
            summary = runner.run()
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        for line in summary.lines():
            self.stdout.write(line)
        if summary.truth_failed:
            raise CommandError(summary.truth)
        if summary.hops == 0 and summary.errors:
            raise CommandError(f"no hop could be delivered to {url}: see the send errors above")

    @staticmethod
    def _telemetry(opts: dict[str, Any]) -> Telemetry:
        if opts["no_telemetry_delay"]:
            return Telemetry.off()
        if opts["export_delay"] <= 0:
            raise CommandError("--export-delay must be positive")
        if opts["relay_every"] < 0 or opts["offline_store_hours"] < 0:
            raise CommandError("--relay-every and --offline-store-hours must not be negative")
        if not 0 <= opts["shopify_retry_rate"] <= 1:
            raise CommandError("--shopify-retry-rate is a share between 0 and 1")
        return Telemetry(
            export_delay_s=opts["export_delay"],
            relay_every_s=opts["relay_every"],
            shopify_retry_rate=opts["shopify_retry_rate"],
            offline_store_hours=opts["offline_store_hours"],
        )

    @staticmethod
    def _history_end(text: str, now: datetime, days: float, live_orders: int | None) -> datetime:
        try:
            end = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(f"--history-end: {text!r} is not an ISO 8601 time") from None
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        if end > now:
            raise CommandError(f"--history-end: {end.isoformat()} is in the future")
        if not days or live_orders != 0:
            raise CommandError(
                "--history-end goes with --backfill-days and no live orders "
                "(--orders within the history, no --duration or --forever)"
            )
        return end

    def _history_sent(self, stats: Stats, elapsed: float) -> None:
        message = (
            f"backfill sent: {stats.hops_sent:,} hops in {elapsed:.0f} s "
            f"({stats.hops_failed:,} send errors); the live traffic goes on"
        )
        if self._progress is not None and not self._progress.disable:
            self._progress.write(message, file=sys.stdout)  # above the bar, not through it
        else:
            self.stdout.write(message)
            self.stdout.flush()

    def _token(self, opts: dict[str, Any]) -> str:
        token = opts["token"]
        if not token and opts["token_file"]:
            path = Path(opts["token_file"])
            if not path.exists():
                raise CommandError(f"{path} does not exist (run `manage.py demo_setup` first)")
            token = path.read_text().strip()
        if not token:
            raise CommandError("an ingest token is required: --token T or --token-file F")
        return str(token)

    def _banner(self, url: str, days: float, opts: dict[str, Any]) -> None:
        lines = [
            "",
            f"Observatory is up: {url}/   (sign in as admin / admin)",
            f"  look first at the ops dashboard {url}/ , then the exceptions at "
            f"{url}/exceptions/ and any order at {url}/orders/?q=<order number>",
            f"  API: {url}/api/v1/docs   OTLP: {url}/v1/traces   events: {url}/api/v1/events",
        ]
        if days:
            lines.append(
                f"  live {opts['scenario']} traffic, about {opts['rate']:g} order(s) a second, "
                f"while {days:g} days of history stream in behind it (Ctrl-C stops it all)"
            )
        self.stdout.write("\n".join(lines) + "\n")
        self.stdout.flush()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
