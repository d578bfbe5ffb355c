"""Settings for the test suite: the product's own (``observatory.settings``) with a random
SECRET_KEY for the run when none is set, so that the suite runs on PostgreSQL too
(a deployment, DATABASE_URL set, refuses to start without one). The key is put in the
environment, so servers the tests start in subprocesses share it."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "test-" + secrets.token_urlsafe(48))

from observatory.settings import *  # noqa: F403
