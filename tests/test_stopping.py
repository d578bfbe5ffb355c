"""Ctrl-C under ``make run`` (docs/scaling.md, "Stopping"): the Procfile stack under honcho
in a data directory of its own, with the simulator's demo traffic (two days of history
streaming in, so the worker is busy stitching), gets SIGINT in its process group as a
terminal sends it. Every process is gone, and one pipeline pass over the same data
finishes whatever the stopped worker left: every hop received is stitched, nothing waits.

The web server and the simulator stop in 1 to 2 s, and the worker after the chunk it is
in; one stitch chunk of history can outlast honcho's 5 s on a loaded 2-core machine, when
honcho SIGKILLs the worker (docs/scaling.md, "Stopping"). That is not asserted here:
what holds either way, and is asserted, is that nothing is lost.
"""

from __future__ import annotations

import os
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
#: honcho's own grace before SIGKILL is 5 s; everything is gone well within this
GONE_S = 15.0

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
    assert took < GONE_S, f"still running {took:.1f} s after Ctrl-C:\n{text[-3000:]}"

    # nothing lost: one pass finishes what the stopped worker left
    manage("pipeline")
    script = [PY, "-c", "import django\ndjango.setup()" + COUNTS]
    env["DJANGO_SETTINGS_MODULE"] = "observatory.settings"
    done = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hops, stitched, waiting = map(int, done.stdout.split()[-3:])
    assert hops > 0 and stitched == hops and waiting == 0, (hops, stitched, waiting)
