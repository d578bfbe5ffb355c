"""Security headers Django has no setting for: a Content-Security-Policy.

Django 5.2 sets ``X-Frame-Options``, ``Referrer-Policy``, ``X-Content-Type-Options`` and
HSTS itself (settings.py); this adds the policy. The pages run no inline script (every
script is a file under ``static/js/``; figures travel as ``<script type="application/json">``
data, which is never executed), so ``script-src 'self'`` holds. Styles allow
``'unsafe-inline'``: the templates' ``style`` attributes and plotly's injected
stylesheet need it, and styles cannot run code. Websockets go to the page's own host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:  # settings.py imports this module: nothing of Django's HTTP at load time
    from django.http import HttpRequest, HttpResponse

#: The policy, with ``{host}`` standing for the request's host (websocket sources).
DEFAULT_POLICY = (
    "default-src 'self'; "
    "script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "font-src 'self' data:; "
    "connect-src 'self' ws://{host} wss://{host}; "
    "object-src 'none'; "
    "base-uri 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """Adds ``Content-Security-Policy`` (``settings.CONTENT_SECURITY_POLICY``) to every
    answer that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy: str = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            try:
                host = request.get_host()
            except Exception:  # a disallowed host: the answer is an error page anyway
                host = "localhost"
            response["Content-Security-Policy"] = self.policy.replace("{host}", host)
        return response
