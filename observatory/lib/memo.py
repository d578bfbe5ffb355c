"""Reads made once per page: inside ``reads_once()`` the readers that call ``once`` answer
a repeated read (the same key) from what the first one found.

A page such as ``/executive/`` asks for many figures, each of which reads the active SLA
policies, the store zones and the raw facts of the hour not yet rolled up; within one
answer those rows are the same, so they are read once. Outside ``reads_once()`` every call
reads afresh: the worker's passes and every write see the rows as they are now, and an
edit in the admin counts at the next page. The memo lives in a context variable, so
concurrent requests (threads or tasks) never share one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_MEMO: ContextVar[dict[Hashable, Any] | None] = ContextVar("observatory_reads_once", default=None)


@contextmanager
def reads_once() -> Iterator[None]:
    """Within this block, ``once`` reads each key once (nested blocks share the outer one)."""
    if _MEMO.get() is not None:
        yield
        return
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def per_page(view: Callable[P, T]) -> Callable[P, T]:
    """A view that makes its repeated reads once (``reads_once()`` around it)."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        with reads_once():
            return view(*args, **kwargs)

    return wrapped


def once(key: Hashable, read: Callable[[], T]) -> T:
    """``read()``, or inside ``reads_once()`` what it returned for ``key`` the first time.

    The value is shared by every caller of the block: ``read`` returns something its
    callers do not change (a tuple, or objects they only read).
    """
    memo = _MEMO.get()
    if memo is None:
        return read()
    if key in memo:
        value: T = memo[key]
        return value
    value = memo[key] = read()
    return value
