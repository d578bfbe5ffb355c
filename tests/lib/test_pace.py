"""Chunks sized by the time they take (observatory/lib/pace.py)."""

from __future__ import annotations

from django.test import override_settings

from observatory.lib.pace import Pacer


@override_settings(PIPELINE_CHUNK_S=1.0)
def test_a_slow_chunk_shrinks_the_next_and_quick_full_ones_grow_it_by_doubling() -> None:
    pacer = Pacer(first=500, least=100)
    assert pacer.size(5000) == 500
    pacer.timed(500, 500, 0.1, 5000)  # full and quick: at most twice as big
    assert pacer.size(5000) == 1000
    pacer.timed(1000, 1000, 0.6, 5000)  # full, a little quick: towards the budget
    assert pacer.size(5000) == 1666
    pacer.timed(1666, 1666, 4.0, 5000)  # too slow (a loaded machine): at once to fit
    assert pacer.size(5000) == 416
    pacer.timed(416, 30, 0.01, 5000)  # a short claim says nothing about the size
    assert pacer.size(5000) == 416
    pacer.timed(416, 416, 50.0, 5000)  # never below the least
    assert pacer.size(5000) == 100
    assert pacer.size(7) == 7  # nor above what the caller takes
    pacer.timed(7, 7, 0.01, 7)  # and a chunk the caller capped leaves the size alone
    assert pacer.size(5000) == 100
    for _ in range(20):
        pacer.timed(pacer.size(5000), pacer.size(5000), 0.01, 5000)
    assert pacer.size(5000) == 5000


@override_settings(PIPELINE_CHUNK_S=1.0)
def test_chunk_times_the_block() -> None:
    pacer = Pacer(first=10, least=1)
    with pacer.chunk(100) as c:
        assert c.size == 10
        c.got = 10
    assert pacer.size(100) == 20  # full and (much) quicker than the budget
