"""The JSON API under /api/v1/: one NinjaAPI assembling every app's router."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from observatory.access.auth import READ_AUTH
from observatory.alerts.api import router as alerts_router
from observatory.dashboards.api import router as systems_router
from observatory.kpis.api import router as kpis_router
from observatory.triage.api import orders_router
from observatory.triage.api import router as triage_router
from observatory.triage.queries import BadRequest

api = NinjaAPI(
    title="Observatory API",
    version="1",
    description="Order-lifecycle observability: look up any order by any key.",
    auth=READ_AUTH,
    urls_namespace="api",
)
api.add_router("/", orders_router)
api.add_router("/", triage_router)
api.add_router("/", kpis_router)
api.add_router("/", alerts_router)
api.add_router("/", systems_router)


@api.exception_handler(BadRequest)
def bad_request(request: HttpRequest, exc: BadRequest) -> HttpResponse:
    """A parameter that parsed but cannot be used: 400 naming the field."""
    return api.create_response(request, {"detail": str(exc), "field": exc.field}, status=400)
