"""Chunks sized by the time they take (docs/scaling.md, "Stopping").

The pipeline's long loops (the stitcher's hops, the KPI fill's hours) commit a chunk at a
time and check ``lib.shutdown`` between chunks, so a worker's warm shutdown waits for
the chunk in progress only. A fixed chunk size does not bound that wait: the same 5,000
hops take half a second on an idle server and several seconds on a loaded one. A
:class:`Pacer` remembers, per process and per loop, how big a chunk fits in
``settings.PIPELINE_CHUNK_S`` of wall time, from the chunks it has timed: it shrinks a
chunk that took too long at once, and grows one that was full and quick, by at most
doubling, up to the caller's largest chunk (a chunk the caller capped below the learnt
size says nothing about it). Throughput stays: a chunk of a second or so
is large enough that its fixed costs (a claim, a lock, a commit) are small beside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


def budget_s() -> float:
    """The wall time one chunk aims at, seconds."""
    return float(settings.PIPELINE_CHUNK_S)


class Pacer:
    """The chunk size of one loop, learnt from the chunks it timed (thread-safe)."""

    def __init__(self, first: int, least: int) -> None:
        self._size = first
        self._least = least
        self._lock = threading.Lock()

    def size(self, most: int) -> int:
        """The next chunk's size: what fits in the budget, never more than ``most``."""
        with self._lock:
            return max(1, min(most, self._size))

    def timed(self, asked: int, got: int, elapsed_s: float, most: int) -> None:
        """Learn from a chunk: ``asked`` for, ``got`` (the claim came back with that many),
        done in ``elapsed_s`` seconds."""
        budget = budget_s()
        with self._lock:
            if elapsed_s > budget:
                self._size = max(self._least, int(got * budget / elapsed_s))
            elif got >= asked >= self._size:  # a full chunk of this size, and quick
                grown = int(asked * min(2.0, budget / max(elapsed_s, 1e-3)))
                self._size = max(self._least, min(most, max(asked, grown)))

    @contextmanager
    def chunk(self, most: int) -> Iterator[Chunk]:
        """Time one chunk: ``with pacer.chunk(most) as c:`` claim ``c.size``, set ``c.got``."""
        c = Chunk(self.size(most))
        started = time.monotonic()
        yield c
        self.timed(c.size, c.got, time.monotonic() - started, most)


class Chunk:
    """One chunk being timed: its ``size``, and how many the claim ``got``."""

    __slots__ = ("got", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.got = 0
