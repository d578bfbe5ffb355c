"""A process-wide "stop soon" flag (docs/scaling.md, "Stopping"): the Celery worker sets
it when its warm shutdown starts, and the pipeline's long loops check it between chunks.
Each chunk commits on its own, so a loop that stops early loses nothing: what it left
stays queued for the next run."""

from __future__ import annotations

import threading

_stopping = threading.Event()


def request() -> None:
    """Ask every loop of this process to stop after the chunk it is in."""
    _stopping.set()


def requested() -> bool:
    return _stopping.is_set()


def wait(seconds: float) -> bool:
    """Sleep ``seconds``, or less if a stop is requested meanwhile (True then)."""
    return _stopping.wait(seconds)


def clear() -> None:
    _stopping.clear()
