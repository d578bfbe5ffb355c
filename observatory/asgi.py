"""ASGI entry point: HTTP through Django, websockets through channels (routing.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
django_asgi_app = get_asgi_application()

from observatory.routing import build_application  # noqa: E402  (needs apps loaded)

application = build_application(django_asgi_app)
