"""The Celery application; tasks live in each app's ``tasks.py``, the schedule in settings."""

import os

from celery import Celery

import observatory.lib.fsbroker  # noqa: F401  (registers the obsfs:// embedded broker)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")

app = Celery("observatory")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
