"""WSGI entry point, for ingest-only nodes under gunicorn (no websockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
application = get_wsgi_application()
