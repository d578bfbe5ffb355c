"""One turn of the pipeline in tests, once the data sent has settled.

Tests send hops about the past and stitch at once: to the watermarks that is a backfill
still arriving (every hop is late), so nothing after its oldest hop is knowable for a
late window. ``tick`` judges as the worker would a little later, when no stream is
catching up any more (``hops.queries.settled``).
"""

from __future__ import annotations

from typing import Any

from observatory.hops.queries import settled
from observatory.lib.clock import now
from observatory.pipeline.wiring import TickResult
from observatory.pipeline.wiring import tick as do_pipeline_tick


def tick(**kwargs: Any) -> TickResult:
    return do_pipeline_tick(wall=lambda: settled(now()), **kwargs)
