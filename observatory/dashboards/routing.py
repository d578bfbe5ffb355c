"""Websocket routes (``observatory.routing`` mounts them behind the session auth)."""

from __future__ import annotations

from django.urls import path

from observatory.dashboards.consumers import OpsConsumer

websocket_urlpatterns = [
    # channels routes ASGI applications through django.urls.path, typed for views only
    path("ws/ops/", OpsConsumer.as_asgi()),  # type: ignore[arg-type]
]
