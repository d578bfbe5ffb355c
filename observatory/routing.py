"""Protocol routing: plain HTTP goes to Django; websocket routes come from dashboards."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator


def websocket_urlpatterns() -> list[Any]:
    try:
        from observatory.dashboards.routing import websocket_urlpatterns as patterns
    except ImportError:  # dashboards not installed in this build
        return []
    return list(patterns)


def build_application(http_app: Any) -> ProtocolTypeRouter:
    return ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns()))
            ),
        }
    )
