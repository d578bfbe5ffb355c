"""kombu's filesystem transport, with atomic message writes (the embedded broker).

The stock transport creates a message file and then writes into it, so a worker that
lists the folder in between moves and reads a half-written file and dies on a
JSONDecodeError (celery/kombu#1551). Here every message is written under a temporary
name that no queue matches and renamed into place, which is atomic on POSIX; a reader
sees a whole message or none. Exchange tables, created by truncating a file, are re-read
when caught empty.

The worker's event loop over a transport like this one (Celery's ``synloop``) polls with
``drain_events(timeout=2.0)`` and, once its warm shutdown is requested, polls once more
before it stops: up to four seconds of a Ctrl-C, spent taking new tasks too. Here the
poll returns at once, empty, when the worker's shutdown starts (``lib.shutdown``, set
from Celery's ``worker_shutting_down``), and no message is taken from then on; what is
left stays in the folder for the next worker (docs/scaling.md, "Stopping").
"""

from __future__ import annotations

import os
import time
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps

from observatory.lib import shutdown


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def get_table(self, exchange: str) -> Any:
        for attempt in range(5):
            try:
                return super().get_table(exchange)
            except ValueError:  # caught the table file between truncate and write
                time.sleep(0.01 * (attempt + 1))
        return super().get_table(exchange)

    def _queue_bind(self, exchange: Any, routing_key: Any, pattern: Any, queue: Any) -> Any:
        for attempt in range(5):
            try:
                return super()._queue_bind(exchange, routing_key, pattern, queue)
            except ValueError:  # another process was creating the exchange table
                time.sleep(0.01 * (attempt + 1))
        return super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(  # type: ignore[override]  # as kombu's own virtual transport
        self, connection: Any, timeout: float | None = None
    ) -> None:
        """kombu's polling loop (``virtual.Transport.drain_events``), ended by a stop request
        as by its timeout: nothing more is delivered, and the wait between polls wakes."""
        started = monotonic()
        cycle = self.cycle
        assert cycle is not None  # made with the transport's first channel
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        while not shutdown.requested():
            try:
                cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    break
                if interval is not None:
                    shutdown.wait(interval)
            else:
                return
        raise TimeoutError()


#: ``obsfs://`` is the embedded default broker URL (settings.CELERY_BROKER_URL).
TRANSPORT_ALIASES.setdefault("obsfs", "observatory.lib.fsbroker:Transport")
