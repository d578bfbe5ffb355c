"""Observatory against the simulator's ground truth, end to end, scenario by scenario.

    python bench/truth.py [--scenarios normal,erp-outage,peak-sale,chaos]
                          [--backfill-days 1] [--duration 600] [--speed 10] [--rate 1]
                          [--seed 7] [--settle 120]

For each scenario, as ``make run`` does: a fresh stack (``bench/stack.py``: the web server,
the Celery worker with beat, a Slack stand-in receiving every alert the shipped rules
send; SQLite in a scratch folder, or a scratch PostgreSQL database when
``BENCH_DATABASE_URL`` names a server), then ``manage.py simulate`` with history streaming
in beside live traffic and ``--truth FILE``; the worker goes on until the last deadlines
of the run are judged (``--settle`` seconds after the simulator ends). Then it scores what
Observatory says against what the truth file says happened:

* **exceptions**: precision and recall per kind (``stuck``, ``failed_hop``,
  ``duplicate``, ``conflict``): an exception is right when the truth has that problem for
  one of the transactions its keys name; withdrawn exceptions are left out. Deadlines in
  the last ``--margin`` seconds of the run (not judgeable yet) are left out on both sides.
* **alerts**: every notification that reached the Slack stand-in, each real when the
  truth has a problem of its kind at that moment (an order past that deadline, an
  injected incident of that system, duplicates or slow stock updates in the hour);
  alerts found in history are counted apart (never sent).
* **KPIs**: ``GET /api/v1/kpis`` over the run against the same figures counted from the
  truth (acceptance to posting, fulfillment propagation, inventory sync lag, orders with a
  problem, duplicate deliveries).

Targets: precision and recall of at least 99 % for the four kinds in every scenario; in
``normal`` no notified alert but those the truth calls real; KPIs within 1 %. The last line
is a summary. ``--score TRUTH`` (internal) scores the database of the environment it runs
in and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("stuck", "failed_hop", "duplicate", "conflict")
#: key kinds that describe a hop but never name a transaction
SHARED = {"batch_id", "file", "sku", "location", "store_id"}
SCENARIOS = ("normal", "erp-outage", "peak-sale", "chaos")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the truth's own figures ------------------------------------------------------------------


class Truth:
    def __init__(self, doc: dict[str, Any], margin_s: float) -> None:
        self.doc = doc
        self.start = parse_time(doc["start"])
        self.end = parse_time(doc["end"])
        self.horizon = self.end - timedelta(seconds=margin_s)
        self.txs = doc["transactions"]
        self.by_ref = {t["ref"]: t for t in self.txs}
        self.refs_of_value: dict[str, set[str]] = defaultdict(set)
        for t in self.txs:
            for kind, value in t.get("keys", {}).items():
                if kind in SHARED:
                    continue
                for v in value if isinstance(value, list) else [value]:
                    self.refs_of_value[str(v)].add(t["ref"])
            self.refs_of_value[t["ref"]].add(t["ref"])

    def missed(self, until: datetime | None = None) -> set[tuple[str, str]]:
        until = until or self.horizon
        return {
            (t["ref"], m["stage"])
            for t in self.txs
            for m in t.get("missed", [])
            if parse_time(m["deadline"]) <= until
        }

    def failed(self, until: datetime | None = None) -> set[str]:
        until = until or self.horizon
        out = set()
        for t in self.txs:
            fails = t.get("failures")
            if fails is None:
                fails = [f for f in t.get("faults", []) if f == "erp_503"]
            if any(not isinstance(f, dict) or parse_time(f["at"]) <= until for f in fails):
                out.add(t["ref"])
        return out

    def duplicates(self) -> set[str]:
        return {r["ref"] for r in self.doc.get("replays", [])}

    def conflicts(self) -> list[set[str]]:
        return [{c["ref"], c.get("other_ref", "")} - {""} for c in self.doc.get("conflicts", [])]

    def stage(self, t: dict[str, Any], name: str) -> datetime | None:
        """When ``t`` reached stage ``name``, if its hop was delivered (what was never sent
        cannot be known)."""
        s = t.get("stages", {}).get(name)
        return parse_time(s["at"]) if s and s.get("delivered", True) else None

    def problem_orders(self) -> set[str]:
        """Orders with a real problem by the end of the run (what the KPI counts once the
        worker has judged everything): a missed deadline, a failed step, posted twice, a
        conflicting id, a reconciliation gap; a return's are its order's."""
        out = {r for r, _ in self.missed(self.end)} | self.failed(self.end) | self.duplicates()
        # the order given another order's sales-order number (the other one was fine)
        out |= {c["ref"] for c in self.doc.get("conflicts", [])}
        # the reconciliation gaps counted by the end (a mismatch exception each)
        out |= {
            u["ref"]
            for u in self.doc.get("reconciliation", {}).get("unmatched", [])
            if u.get("counted") and "ref" in u
        }
        # an order and its return are one transaction: the return's problems are the order's
        out = {self.by_ref.get(r, {}).get("order") or r for r in out}
        return {r for r in out if self.by_ref.get(r, {}).get("kind") == "order"}


def lags(pairs: Iterable[tuple[datetime | None, datetime | None]]) -> list[float]:
    return sorted(
        max(0.0, (b - a).total_seconds()) for a, b in pairs if a is not None and b is not None
    )


def quantile(values: list[float], q: float) -> float | None:
    return values[int(q * (len(values) - 1))] if values else None


def truth_kpis(truth: Truth, since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    orders = [
        t
        for t in truth.txs
        if t["kind"] == "order"
        and (c := truth.stage(t, "captured")) is not None
        and since <= c < until
    ]
    a2p = lags((truth.stage(t, "captured"), truth.stage(t, "posted")) for t in orders)
    ful = lags(
        (truth.stage(t, "shipped"), truth.stage(t, "fulfillment_synced"))
        for t in orders
        if t.get("channel") == "web"
    )
    updates = [
        t
        for t in truth.txs
        if t["kind"] == "inventory_update"
        and (a := truth.stage(t, "inventory_adjusted")) is not None
        and since <= a < until
    ]
    inv = lags(
        (truth.stage(t, "inventory_adjusted"), truth.stage(t, "inventory_published"))
        for t in updates
    )
    problems = truth.problem_orders()
    with_problem = sum(1 for t in orders if t["ref"] in problems)
    deliveries = truth.doc.get("deliveries", {})
    return {
        "acceptance_to_posting": {
            "count": len(a2p),
            "p50_s": quantile(a2p, 0.5),
            "p95_s": quantile(a2p, 0.95),
        },
        "fulfillment_propagation": {
            "count": len(ful),
            "p50_s": quantile(ful, 0.5),
            "p95_s": quantile(ful, 0.95),
        },
        "inventory_sync_lag": {
            "count": len(inv),
            "p50_s": quantile(inv, 0.5),
            "p95_s": quantile(inv, 0.95),
        },
        "exception_rate": {
            "orders": len(orders),
            "with_exception": with_problem,
            "rate": with_problem / len(orders) if orders else None,
        },
        "duplicate_rate": {
            "duplicates": sum(d.get("duplicates", 0) for d in deliveries.values()),
        },
    }


# --- scoring what Observatory says (runs in the stack's environment) ----------------------


def score(truth_path: str, margin_s: float) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
    import django

    django.setup()
    from observatory.transactions.models import Transaction, TransactionKey
    from observatory.triage.models import WITHDRAWN, Issue

    truth = Truth(json.loads(Path(truth_path).read_text()), margin_s)
    parent = dict(Transaction.objects.values_list("id", "merged_into_id"))

    def final(tx: int) -> int:
        for _ in range(32):
            nxt = parent.get(tx)
            if nxt is None:
                return tx
            tx = nxt
        return tx

    refs: dict[int, set[str]] = defaultdict(set)
    for tx, kind, value in TransactionKey.objects.values_list("transaction_id", "kind", "value"):
        if kind not in SHARED:
            refs[final(tx)] |= truth.refs_of_value.get(value, set())

    issues = list(
        Issue.objects.exclude(state=WITHDRAWN)
        .filter(kind__in=KINDS)
        .values("kind", "stage", "transaction_id", "opened_at", "state")
    )
    withdrawn = Issue.objects.filter(state=WITHDRAWN).count()
    truth_sets: dict[str, Any] = {
        "stuck": truth.missed(),
        "failed_hop": truth.failed(),
        "duplicate": truth.duplicates(),
    }
    out: dict[str, Any] = {"withdrawn": withdrawn, "kinds": {}}
    for kind in KINDS:
        mine = [i for i in issues if i["kind"] == kind]
        if kind in ("stuck", "failed_hop"):
            # what the truth can judge: deadlines and failures before its horizon
            mine = [i for i in mine if i["opened_at"] <= truth.horizon]
        seen_keys: set[tuple[int, str]] = set()
        right = 0
        found: set[Any] = set()
        wrong: list[str] = []
        for i in mine:
            tx = final(i["transaction_id"]) if i["transaction_id"] else 0
            key = (tx, i["stage"])
            if key in seen_keys:
                continue
            seen_keys.add(key)
            names = refs.get(tx, set())
            if kind == "stuck":
                hits = {(r, i["stage"]) for r in names} & truth_sets["stuck"]
            elif kind == "conflict":
                hits = {frozenset(c) for c in truth.conflicts() if c & names}
            else:
                hits = names & truth_sets[kind]
            if hits:
                right += 1
                found |= hits
            else:
                wrong.append(f"{sorted(names) or tx} {i['stage']}".strip())
        expected = (
            {frozenset(c) for c in truth.conflicts()} if kind == "conflict" else truth_sets[kind]
        )
        out["kinds"][kind] = {
            "observed": len(seen_keys),
            "truth": len(expected),
            "precision": right / len(seen_keys) if seen_keys else 1.0,
            "recall": len(found & expected) / len(expected) if expected else 1.0,
            "false": wrong[:20],
            "missed": sorted(map(str, expected - found))[:20],
        }
    out["silences"] = Issue.objects.filter(kind="silence").count()
    return out


def _alerts(stack: Any, truth: Truth) -> dict[str, Any]:
    """Every FIRING notification the Slack stand-in got, judged against the truth."""
    from_db = json.loads(
        stack.manage(
            "shell",
            "-c",
            "import json; from observatory.alerts.models import Alert, Rule; "
            "print(json.dumps({'rules': {r.name: [r.kind, r.stage, r.channel, r.system, "
            "r.kpi] for r in Rule.objects.all()}, 'history': Alert.objects.filter("
            "found_in_history=True).count()}))",
        )
    )
    rules = from_db["rules"]
    missed = [
        (t.get("channel", ""), m["stage"], parse_time(m["deadline"]), m.get("reached"))
        for t in truth.txs
        for m in t.get("missed", [])
    ]
    incidents = [
        (i["system"], parse_time(i["begin"]), parse_time(i["end"]))
        for i in truth.doc.get("incidents", [])
    ]
    dup_times = [parse_time(d["at"]) for d in truth.doc.get("duplicates", []) if "at" in d]
    real, unsupported = [], []
    for at, body in stack.slack.received:
        text = body.get("text", "")
        m = re.match(r"\[FIRING (\w+)\] (.+?): ", text)
        if not m:
            continue
        when = datetime.fromtimestamp(at, UTC)
        kind, stage, channel, system, kpi = rules.get(m.group(2), ["?", "", "", "", ""])
        ok = False
        if kind == "stuck":
            ok = any(
                s == stage
                and (not channel or ch == channel)
                and deadline <= when
                and (reached is None or parse_time(reached) > deadline)
                for ch, s, deadline, reached in missed
            )
        elif kind in ("error_rate", "silence"):
            ok = any(
                s == system and begin - timedelta(minutes=5) <= when <= end + timedelta(minutes=15)
                for s, begin, end in incidents
            )
        elif kind == "kpi" and kpi == "duplicate_rate":
            ok = bool(truth.doc.get("duplicates")) and (
                not dup_times or any(when - timedelta(hours=1) <= d <= when for d in dup_times)
            )
        elif kind == "kpi" and kpi == "inventory_sync_lag":
            ok = truth.doc["scenario"] == "peak-sale"
        (real if ok else unsupported).append(text[:160])
    return {"notified": len(real) + len(unsupported), "real": real, "unsupported": unsupported,
            "found_in_history": from_db["history"]}  # fmt: skip


def _kpis(stack: Any, truth: Truth, margin_s: float) -> dict[str, Any]:
    since = truth.start - timedelta(days=30)
    # orders whose web deadline falls before the horizon: after the run's end no hop comes,
    # and a posting due then would be judged missing, while the truth stops at the end
    until = truth.end - timedelta(seconds=margin_s + 120)
    mine = stack.get("/api/v1/kpis", since=since.isoformat(), until=until.isoformat())["kpis"]
    # deliveries over the whole run (the truth counts every one it handed out)
    whole = stack.get(
        "/api/v1/kpis", since=since.isoformat(), until=(truth.end + timedelta(hours=1)).isoformat()
    )["kpis"]
    mine["duplicate_rate"] = whole["duplicate_rate"]
    theirs = truth_kpis(truth, since, until)
    out: dict[str, Any] = {}
    for kpi, fields in theirs.items():
        for name, want in fields.items():
            got = (mine.get(kpi) or {}).get(name)
            if want is None or got is None:
                err = None if want == got else 1.0
            elif want == 0:
                err = 0.0 if got == 0 else 1.0
            else:
                err = abs(got - want) / abs(want)
            out[f"{kpi}.{name}"] = {"observatory": got, "truth": want, "error": err}
    return out


# --- a scenario -------------------------------------------------------------------------------


def postgres_server() -> str | None:
    """The PostgreSQL server to make scratch databases on (``BENCH_DATABASE_URL``, else
    ``DATABASE_URL`` as ``make bench`` sets it), if any."""
    for name in ("BENCH_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            return url
    return None


def run_scenario(scenario: str, args: argparse.Namespace, database: str) -> dict[str, Any]:
    from bench.stack import Stack

    db = None
    if database == "postgresql":
        from bench.scratch import create_database, scratch_url

        server = postgres_server()
        assert server is not None
        name = f"observatory_truth_{scenario.replace('-', '_')}_{os.getpid()}"
        create_database(server, name)
        db = scratch_url(server, name)
    env = {"PIPELINE_TICK_S": "5"}
    # (BENCH_DATABASE_URL names the server of the scratch databases here, not one to use)
    with Stack(database_url=db or "", env=env) as stack:
        truth_file = stack.tmp / "truth.json"
        started = time.time()
        result = subprocess.run(
            [sys.executable, "manage.py", "simulate", "--url", stack.base, "--token",
             stack.token, "--scenario", scenario, "--seed", str(args.seed), "--backfill-days",
             str(args.backfill_days), "--rate", str(args.rate), "--speed", str(args.speed),
             "--duration", str(args.duration), "--truth", str(truth_file), "--quiet"],
            cwd=ROOT, env=stack.env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode:
            sys.stderr.write(result.stderr[-3000:])
            raise SystemExit(f"simulate {scenario} failed")
        simulated = time.time() - started
        time.sleep(args.settle)  # the worker judges the last deadlines
        truth = Truth(json.loads(truth_file.read_text()), args.margin)
        scored = subprocess.run(
            [sys.executable, str(Path(__file__)), "--score", str(truth_file), "--margin",
             str(args.margin)],
            cwd=ROOT, env=stack.env, capture_output=True, text=True,
        )  # fmt: skip
        if scored.returncode:
            sys.stderr.write(scored.stderr[-3000:])
            raise SystemExit("scoring failed")
        out = json.loads(scored.stdout.strip().splitlines()[-1])
        out["alerts"] = _alerts(stack, truth)
        out["kpis"] = _kpis(stack, truth, args.margin)
        out["orders"] = len([t for t in truth.txs if t["kind"] == "order"])
        out["simulated_s"] = simulated
        out["last_line"] = result.stdout.strip().splitlines()[-1]
    if db is not None:
        from bench.scratch import drop_database

        drop_database(postgres_server() or "", db.rsplit("/", 1)[-1])
    return out


def report(scenario: str, r: dict[str, Any]) -> str:
    lines = [f"== {scenario}: {r['last_line']} ({r['simulated_s']:.0f} s)"]
    for kind, k in r["kinds"].items():
        lines.append(
            f"  {kind:<11} observed {k['observed']:>5}  truth {k['truth']:>5}  "
            f"precision {k['precision']:.1%}  recall {k['recall']:.1%}"
        )
        for what in ("false", "missed"):
            if k[what]:
                lines.append(f"    {what}: {', '.join(k[what][:8])}")
    a = r["alerts"]
    lines.append(
        f"  alerts notified {a['notified']}: {len(a['real'])} real, "
        f"{len(a['unsupported'])} not supported by the truth; "
        f"{a['found_in_history']} found in history (not sent)"
    )
    for text in a["unsupported"][:5]:
        lines.append(f"    unsupported: {text}")
    lines.append(f"  withdrawn exceptions {r['withdrawn']}, silence exceptions {r['silences']}")
    for name, k in r["kpis"].items():
        err = "n/a" if k["error"] is None else f"{k['error']:.2%}"
        lines.append(f"  {name:<36} {k['observatory']!s:>12}  truth {k['truth']!s:>12}  {err}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--backfill-days", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=600.0, help="live seconds")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--settle",
        type=float,
        default=150.0,
        help="seconds the worker goes on after the simulator ends (longer than the systems' "
        "maximum delays: every deadline of the run becomes knowable)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=15.0,
        help="deadlines and failures in the run's last seconds are left out of the scores",
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="where to run each scenario (PostgreSQL on the server of BENCH_DATABASE_URL or "
        "DATABASE_URL; skipped when neither names one)",
    )
    parser.add_argument("--score", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score:
        print(json.dumps(score(args.score, args.margin), default=str))
        return
    databases = [d for d in args.databases.split(",") if d]
    if "postgresql" in databases and postgres_server() is None:
        print("no PostgreSQL server named (BENCH_DATABASE_URL, DATABASE_URL): SQLite only")
        databases.remove("postgresql")
    summary = []
    for database in databases:
        for scenario in args.scenarios.split(","):
            r = run_scenario(scenario, args, database)
            print(report(f"{scenario} on {database}", r), flush=True)
            worst = min(min(k["precision"], k["recall"]) for k in r["kinds"].values())
            kpi_err = max((k["error"] or 0.0) for k in r["kpis"].values())
            summary.append(
                f"{scenario}/{database}: worst precision/recall {worst:.1%}, "
                f"{len(r['alerts']['unsupported'])} unsupported alerts, "
                f"KPI error <= {kpi_err:.2%}"
            )
    print("; ".join(summary))


if __name__ == "__main__":
    main()
