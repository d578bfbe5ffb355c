"""The /alerts/ pages (mounted under ``alerts/`` in observatory/urls.py)."""

from __future__ import annotations

from django.urls import path

from observatory.alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.alert, name="alert"),
    path("<int:pk>/ack/", views.alert_ack, name="ack"),
    path("<int:pk>/ack/<str:token>/", views.ack_link, name="ack-link"),
    path("rules/new/", views.rule_edit, name="rule-new"),
    path("rules/<int:pk>/", views.rule_edit, name="rule"),
    path("channels/new/", views.channel_edit, name="channel-new"),
    path("channels/<int:pk>/", views.channel_edit, name="channel"),
    path("channels/<int:pk>/test/", views.channel_test, name="channel-test"),
    path("silences/new/", views.silence_new, name="silence-new"),
    path("silences/<int:pk>/expire/", views.silence_expire, name="silence-expire"),
]
