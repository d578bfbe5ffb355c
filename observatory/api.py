"""The JSON API under /api/v1/: one NinjaAPI assembling every app's router.

Every status an operation can give is in the OpenAPI document (``lib.answers``); a
parameter that cannot be used is a 422 naming it, whether the schema refused it or an
app did (``BadRequest``); the database being unavailable is a 503 with ``Retry-After``.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger

from observatory.access.auth import READ_AUTH
from observatory.alerts.api import router as alerts_router
from observatory.dashboards.api import router as systems_router
from observatory.kpis.api import router as kpis_router
from observatory.lib import outage
from observatory.lib.answers import field_error
from observatory.reconciliation.api import router as reconciliation_router
from observatory.triage.api import orders_router
from observatory.triage.api import router as triage_router
from observatory.triage.queries import BadRequest

api = NinjaAPI(
    title="Observatory API",
    version="1",
    description="Order-lifecycle observability: look up any order by any key.",
    auth=READ_AUTH,
    urls_namespace="api",
    # /api/v1/docs: Swagger UI from ninja's static files (templates/ninja/swagger.html);
    # without deep links, whose anchors inside each operation's toggle nest two controls
    docs=Swagger(settings={"deepLinking": False}),
)
api.add_router("/", orders_router)
api.add_router("/", triage_router)
api.add_router("/", kpis_router)
api.add_router("/", reconciliation_router)
api.add_router("/", alerts_router)
api.add_router("/", systems_router)


@api.exception_handler(BadRequest)
def bad_request(request: HttpRequest, exc: BadRequest) -> HttpResponse:
    """A parameter that parsed but cannot be used: 422 naming it, as the schema's own."""
    detail = [field_error(exc.location, exc.field, exc.message)]
    return api.create_response(request, {"detail": detail}, status=422)


def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """An outage (lib.outage) is a 503 with Retry-After, as on the ingest doors."""
    outage.log.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
    response = api.create_response(request, {"detail": outage.MESSAGE}, status=503)
    response["Retry-After"] = outage.RETRY_AFTER_S
    return response


for _error in outage.UNAVAILABLE:
    api.add_exception_handler(_error, database_unavailable)  # type: ignore[arg-type]
