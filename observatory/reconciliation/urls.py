"""The /reconciliation/ pages (mounted under ``reconciliation/`` in observatory/urls.py)."""

from __future__ import annotations

from django.urls import path, re_path

from observatory.reconciliation import views

app_name = "reconciliation"

urlpatterns = [
    path("", views.index, name="index"),
    re_path(
        r"^(?P<rule>[a-z0-9][a-z0-9_-]{0,63})/(?P<day>\d{4}-\d{2}-\d{2})/$",
        views.day,
        name="day",
    ),
]
