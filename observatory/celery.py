"""The Celery application; tasks live in each app's ``tasks.py``, the schedule in settings."""

import os

from celery import Celery
from celery.signals import worker_shutting_down

import observatory.lib.fsbroker  # noqa: F401  (registers the obsfs:// embedded broker)
from observatory.lib import shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")

app = Celery("observatory")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_shutting_down.connect
def _stop_soon(**_: object) -> None:
    """Ctrl-C: the running pipeline task stops after its current chunk (each commits; the
    rest waits for the next run), so the warm shutdown ends within honcho's 5 s grace
    (docs/scaling.md, "Stopping")."""
    shutdown.request()
