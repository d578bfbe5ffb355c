"""Settings for the test suite: the product's own (``observatory.settings``) with a random
SECRET_KEY for the run when none is set, so that the suite runs on PostgreSQL too
(a deployment, DATABASE_URL set, refuses to start without one). The key is put in the
environment, so servers the tests start in subprocesses share it."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "test-" + secrets.token_urlsafe(48))
# Most tests run inside transactions a replica's connection cannot see: no router here.
os.environ.pop("DATABASE_REPLICA_URL", None)

from observatory.settings import *  # noqa: F403
from observatory.settings import DATABASES, replica_database

# The replica's own tests (tests/lib/test_routers.py) read the test database through this
# second alias, a test mirror of the first; nothing routes there unless a test installs
# the router.
DATABASES["replica"] = replica_database(DATABASES["default"], dict(DATABASES["default"]))

# The suite collects the static files itself, once per run (tests/conftest.py), apart from
# what `make run` serves from the same data folder.
STATIC_ROOT = DATA_DIR / "test-static"  # noqa: F405
STATIC_ROOT.mkdir(exist_ok=True)
# The live server answers /static/ through the finders: let them find the collected files.
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "observatory.lib.staticserve.CollectedFinder",
]

# Chunks never shrink for their time in the suite: on a loaded machine how many chunks a
# pass takes would depend on what ran before (observatory/lib/pace.py; tests/lib/test_pace.py
# sets its own budget).
PIPELINE_CHUNK_S = 3600.0
