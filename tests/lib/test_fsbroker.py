"""The embedded broker: a consumer never reads a half-written message, and stops polling
as soon as the worker's shutdown starts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

import observatory.lib.fsbroker  # noqa: F401  (registers obsfs://)
from observatory.lib import shutdown


def test_consumer_racing_a_producer_reads_only_whole_messages(tmp_path: Path) -> None:
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    big = "x" * 200_000  # large enough that a write is not one syscall's worth
    count = 150

    def produce() -> None:
        with Connection("obsfs://", transport_options=options) as conn:
            queue = conn.SimpleQueue("race")
            for i in range(count):
                queue.put({"i": i, "blob": big})

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            produce()
        except BaseException as exc:  # surface a producer failure instead of a timeout
            errors.append(exc)

    seen = []
    with Connection("obsfs://", transport_options=options) as conn:
        queue = conn.SimpleQueue("race")  # declared (and bound) before the race starts
        producer = threading.Thread(target=guarded)
        producer.start()
        while len(seen) < count:
            assert not errors, errors
            message = queue.get(timeout=60)
            assert message.payload["blob"] == big
            seen.append(message.payload["i"])
            message.ack()
    producer.join()
    assert sorted(seen) == list(range(count))
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".msg", ".partial")]


@pytest.fixture
def stop_flag() -> Iterator[None]:
    shutdown.clear()
    yield
    shutdown.clear()


def test_a_stop_request_ends_the_poll_and_takes_no_new_message(
    tmp_path: Path, stop_flag: None
) -> None:
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    with Connection("obsfs://", transport_options=options) as conn:
        queue = conn.SimpleQueue("stop")
        # an empty poll (waiting a second between looks) ends when the stop is asked
        threading.Timer(0.3, shutdown.request).start()
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            queue.get(timeout=10)
        assert time.monotonic() - started < 1.0
        # stopping: a message that is there stays there, for the next worker
        queue.put({"i": 1})
        with pytest.raises(queue.Empty):
            queue.get(timeout=1)
        shutdown.clear()
        message = queue.get(timeout=5)
        assert message.payload == {"i": 1}
        message.ack()
