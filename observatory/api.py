"""The JSON API under /api/v1/: one NinjaAPI assembling every app's router."""

from __future__ import annotations

from ninja import NinjaAPI

from observatory.access.auth import READ_AUTH
from observatory.hops.api import router as hops_router

api = NinjaAPI(
    title="Observatory API",
    version="1",
    description="Order-lifecycle observability: look up any order by any key.",
    auth=READ_AUTH,
    urls_namespace="api",
)
api.add_router("/", hops_router)
