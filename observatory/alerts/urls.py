"""The /alerts/ pages (mounted under ``alerts/`` in observatory/urls.py)."""

from __future__ import annotations

from django.urls import path

from observatory.alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.index, name="index"),
    path("<id:pk>/", views.alert, name="alert"),
    path("<id:pk>/ack/", views.alert_ack, name="ack"),
    path("<id:pk>/ack/<str:token>/", views.ack_link, name="ack-link"),
    path("rules/new/", views.rule_edit, name="rule-new"),
    path("rules/<id:pk>/", views.rule_edit, name="rule"),
    path("rules/preview/", views.rule_preview, name="rule-preview"),
    path("channels/new/", views.channel_edit, name="channel-new"),
    path("channels/<id:pk>/", views.channel_edit, name="channel"),
    path("channels/<id:pk>/test/", views.channel_test, name="channel-test"),
    path("silences/new/", views.silence_new, name="silence-new"),
    path("silences/<id:pk>/expire/", views.silence_expire, name="silence-expire"),
]
