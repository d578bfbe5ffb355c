"""Ctrl-C under ``make run`` (docs/scaling.md, "Stopping"): the Procfile stack under honcho
in a data directory of its own, with the simulator's demo traffic (two days of history
streaming in, so the worker is busy stitching), gets SIGINT in its process group as a
terminal sends it. honcho sends every process SIGTERM, and SIGKILLs whatever still runs
5 s after the first one stopped.

Asserted: every process exits by itself, well within that grace (all gone within
``GONE_S`` of the SIGINT, and honcho never sends a SIGKILL nor reports a process killed
by one); and nothing is lost: one pipeline pass over the same data finishes whatever the
stopped worker left, so every hop received is stitched and nothing waits.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
HONCHO = str(ROOT / ".venv" / "bin" / "honcho")
#: honcho SIGKILLs what still runs 5 s after the first process stopped (at least 5 s
#: after the SIGINT): every process is gone by then, by itself
GONE_S = 5.0
#: honcho's lines when a process ends: ``worker.1 stopped (rc=0)``; a SIGKILL shows as
#: ``sending SIGKILL to worker.1 (pid ...)`` and ``rc=-9``
STOPPED = re.compile(r"\| (\w+)\.1 stopped \(rc=(-?\d+)\)")
PROCESSES = {"web", "worker", "simulator"}

COUNTS = """
from observatory.hops.models import Hop, Stitched, Waiting
print(Hop.objects.count(), Stitched.objects.count(), Waiting.objects.count())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_ctrl_c_stops_everything_and_loses_nothing(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "CELERY_", "CHANNEL_LAYER", "DJANGO_SETTINGS"))
    }
    env |= {
        "OBSERVATORY_DATA_DIR": str(tmp_path),
        "PORT": str(port),
        "SIM_URL": f"http://127.0.0.1:{port}",
        "SIM_BACKFILL_DAYS": "2",
        "PYTHONUNBUFFERED": "1",
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--noinput", "-v", "0")
    manage("demo_setup")
    log = tmp_path / "honcho.log"
    with log.open("w") as out:
        stack = subprocess.Popen(
            [HONCHO, "-f", "Procfile", "start"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal's job
        )
    pgid = stack.pid
    try:
        # wait for the history to be sent, then a little: the worker is stitching it
        deadline = time.monotonic() + 120
        while "backfill sent" not in log.read_text():
            assert stack.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        time.sleep(1)
        os.killpg(pgid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        sent = time.monotonic()
        # honcho reaped (a zombie leader still counts in its group), then no process left
        while (stack.poll() is None or not _gone(pgid)) and time.monotonic() - sent < GONE_S + 1:
            time.sleep(0.1)
        took = time.monotonic() - sent
    finally:
        if not _gone(pgid):
            os.killpg(pgid, signal.SIGKILL)
        stack.wait(timeout=10)
    text = log.read_text()
    tail = text[max(0, text.find("SIGINT received") - 2000) :]
    assert "SIGKILL" not in text, f"honcho killed a process:\n{tail}"
    codes = dict(STOPPED.findall(text))
    assert set(codes) == PROCESSES, (codes, tail)
    # uvicorn exits by re-raising the SIGTERM it handled (-15) once it has shut down
    assert all(int(rc) in (0, -signal.SIGTERM) for rc in codes.values()), (codes, tail)
    assert took < GONE_S, f"still running {took:.1f} s after Ctrl-C:\n{tail}"

    # nothing lost: one pass finishes what the stopped worker left
    manage("pipeline")
    script = [PY, "-c", "import django\ndjango.setup()" + COUNTS]
    env["DJANGO_SETTINGS_MODULE"] = "observatory.settings"
    done = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hops, stitched, waiting = map(int, done.stdout.split()[-3:])
    assert hops > 0 and stitched == hops and waiting == 0, (hops, stitched, waiting)
