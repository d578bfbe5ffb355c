"""URL map: ingest endpoints (docs/ingest.md), the JSON API (docs/api.md), probes, pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from observatory import health
from observatory.access import views as access_views
from observatory.api import api
from observatory.dashboards import executive, metrics, ops, systems, traces
from observatory.ingest import views as ingest
from observatory.lib import staticserve
from observatory.lib.guard import IdConverter

# <id:pk>: a row id that fits the database (before the app URL maps below load)
register_converter(IdConverter, "id")

#: A URL no route matches: JSON under /api/ (the JSON API's shape), the usual page elsewhere.
handler404 = "observatory.lib.guard.not_found"
#: An unexpected error: JSON under /api/, the styled 500 page elsewhere.
handler500 = "observatory.lib.guard.server_error"

urlpatterns = [
    path("v1/traces", ingest.otlp_traces, name="otlp-traces"),
    path("v1/logs", ingest.otlp_logs_view, name="otlp-logs"),
    path("api/v1/events", ingest.events, name="events"),
    path("webhooks/shopify", ingest.shopify_webhook, name="shopify-webhook"),
    path("api/v1/", api.urls),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", staticserve.favicon, name="favicon"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus: a read API token or an address in METRICS_ALLOWED_IPS (docs/metrics.md)
    path("metrics", metrics.endpoint, name="metrics"),
    # Django's sign-in, throttled per username and client address (access/throttle.py)
    path("accounts/login/", access_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("alerts/", include("observatory.alerts.urls")),
    path("reconciliation/", include("observatory.reconciliation.urls")),
    # the KPI pages: the live ops dashboard is the root page
    path("", ops.dashboard, name="ops"),
    path("ops/live/", ops.live_fragment, name="ops-live"),
    path("executive/", executive.page, name="executive"),
    path("executive/<slug:chart>.csv", executive.csv_download, name="executive-csv"),
    path("systems/", systems.index, name="systems"),
    # path, not str: a name with a "/" (stored before names were checked) still links
    path("systems/<path:name>/", systems.detail, name="system"),
    # any text, so that a malformed id gets the trace page's own 404 rather than none
    path("traces/<str:trace_id>/", traces.page, name="trace"),
    path("", include("observatory.dashboards.urls")),
]
