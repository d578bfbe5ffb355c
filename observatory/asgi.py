"""ASGI entry point: HTTP through Django, websockets through channels (routing.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
django_asgi_app = get_asgi_application()

from observatory.ingest.gate import IngestGate  # noqa: E402  (needs apps loaded)
from observatory.routing import build_application  # noqa: E402

# the ingest endpoints' size limit and token are checked before Django buffers a body
application = build_application(IngestGate(django_asgi_app))
