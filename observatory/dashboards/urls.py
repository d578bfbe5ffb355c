"""The pages' URLs (docs/architecture.md, "Pages")."""

from __future__ import annotations

from django.urls import path, re_path

from observatory.dashboards import views

app_name = "dashboards"

urlpatterns = [
    path("orders/", views.orders, name="orders"),
    path("orders/<id:pk>/", views.order, name="order"),
    path("exceptions/", views.exceptions, name="exceptions"),
    path("exceptions/bulk/", views.exceptions_bulk, name="exceptions-bulk"),
    path("exceptions/<id:pk>/", views.exception, name="exception"),
    path("exceptions/<id:pk>/notes/", views.exception_note, name="exception-note"),
    re_path(
        r"^exceptions/(?P<pk>\d{1,18})/(?P<action>acknowledge|resolve)/$",
        views.exception_action,
        name="exception-action",
    ),
]
