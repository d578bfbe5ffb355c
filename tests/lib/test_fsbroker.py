"""The embedded broker: a consumer never reads a half-written message."""

from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection

import observatory.lib.fsbroker  # noqa: F401  (registers obsfs://)


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
