"""URL map: ingest endpoints (docs/ingest.md), the JSON API (docs/api.md), probes, pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from observatory import health
from observatory.access import views as access_views
from observatory.api import api
from observatory.dashboards import executive, ops, systems
from observatory.ingest import views as ingest
from observatory.lib.guard import IdConverter

# <id:pk>: a row id that fits the database (before the app URL maps below load)
register_converter(IdConverter, "id")

#: A URL no route matches: JSON under /api/ (the JSON API's shape), the usual page elsewhere.
handler404 = "observatory.lib.guard.not_found"

urlpatterns = [
    path("v1/traces", ingest.otlp_traces, name="otlp-traces"),
    path("api/v1/events", ingest.events, name="events"),
    path("webhooks/shopify", ingest.shopify_webhook, name="shopify-webhook"),
    path("api/v1/", api.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
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
    path("", include("observatory.dashboards.urls")),
]
