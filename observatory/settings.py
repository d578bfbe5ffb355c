"""Django settings, read from environment variables (docs/configuration.md).

With nothing set, the product runs on embedded defaults: SQLite under ``.data/``, Celery
on kombu's filesystem broker, the in-memory channel layer. Production sets
``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` and ``CHANNEL_LAYER_URL`` (Redis).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from observatory.lib.headers import DEFAULT_POLICY as DEFAULT_CSP
from tracing import privacy

# ModelAdmin[Rule], ModelForm[Channel]...: the generic classes the type stubs describe
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(environ.Env().str("OBSERVATORY_DATA_DIR", default=str(BASE_DIR / ".data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
#: The development key: only ever used with DEBUG on.
DEVELOPMENT_SECRET_KEY = "dev-insecure-observatory-key-change-me-in-production"


def _secret_key() -> str:
    """SECRET_KEY: from the environment; with DEBUG on, the development key; on the
    embedded defaults (no DATABASE_URL: ``make run``, the demo), a random key generated
    once and kept in ``DATA_DIR/secret-key``. A deployment (DATABASE_URL set, DEBUG off)
    without SECRET_KEY refuses to start, as does any with the development key."""
    key: str = env.str("SECRET_KEY", default="")
    if key == DEVELOPMENT_SECRET_KEY and not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is the built-in development key, which only DEBUG=1 may use: set "
            "SECRET_KEY to a long random value of your own"
        )
    if key:
        return key
    if DEBUG:
        return DEVELOPMENT_SECRET_KEY
    if env.str("DATABASE_URL", default=""):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. It signs sessions, CSRF tokens and alert links, and must "
            "be the same on every node: set SECRET_KEY to a long random value (e.g. the "
            "output of: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'). "
            "Only the embedded defaults (no DATABASE_URL) generate one by themselves."
        )
    path = DATA_DIR / "secret-key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50) + "\n")
    return path.read_text().strip()


try:
    SECRET_KEY = _secret_key()
except FileExistsError:  # another process wrote it first
    SECRET_KEY = (DATA_DIR / "secret-key").read_text().strip()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- security headers and TLS (docs/architecture.md, "Security") -------------------------------
#: Behind a proxy that terminates TLS and sets X-Forwarded-Proto: secure cookies, HSTS and a
#: redirect of plain HTTP (the probes excepted).
OBSERVATORY_TLS = env.bool("OBSERVATORY_TLS", default=False)
if OBSERVATORY_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
#: The Content-Security-Policy of every answer (observatory/lib/headers.py); "" for none.
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default=DEFAULT_CSP)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # ninja's Swagger UI from its own static files (no CDN, no inline script)
    "ninja",
    "observatory.access",
    "observatory.hops",
    "observatory.ingest",
    "observatory.transactions",
    "observatory.triage",
    "observatory.reconciliation",
    "observatory.kpis",
    "observatory.alerts",
    "observatory.dashboards",
    "observatory.pipeline",
    "observatory.simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "observatory.lib.headers.ContentSecurityPolicyMiddleware",
    # collectstatic's hashed, gzip and brotli files, answered whole (lib/staticserve.py)
    "observatory.lib.staticserve.StaticFilesMiddleware",
    # a NUL in a path or query string is refused before any view (PostgreSQL cannot hold it)
    "observatory.lib.guard.NulGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # the database being unreachable is a 503 with Retry-After on every page
    "observatory.lib.outage.DatabaseOutageMiddleware",
]

ROOT_URLCONF = "observatory.urls"
ASGI_APPLICATION = "observatory.asgi.application"
WSGI_APPLICATION = "observatory.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'observatory.sqlite3'}")
}
_db = DATABASES["default"]
if _db["ENGINE"].endswith("sqlite3"):
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers queue (for up to `timeout` seconds) instead of failing mid-way.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # a file (not :memory:) so live-server threads and the test share one database; one
    # per process so that two test runs side by side never share it
    _db.setdefault("TEST", {})["NAME"] = str(DATA_DIR / f"test-observatory-{os.getpid()}.sqlite3")
else:
    # one test database per process, as for SQLite: two runs against one server (a
    # developer's and CI's) would otherwise drop each other's database mid-run
    _db.setdefault("TEST", {}).setdefault("NAME", f"test_{_db['NAME']}_{os.getpid()}")
    # Under ASGI every sync view runs in a thread of its own, so per-thread persistent
    # connections pile up until PostgreSQL refuses clients; a pool shares a few instead.
    _db["CONN_MAX_AGE"] = 0
    _db.setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=2),
            "pool": {
                "min_size": env.int("DB_POOL_MIN", default=2),
                "max_size": env.int("DB_POOL_MAX", default=10),
                # how long a request waits for a connection: an outage answers 503 within
                # about this, well inside an OpenTelemetry exporter's 10 s timeout
                "timeout": env.float("DB_POOL_TIMEOUT", default=1.0),
            },
        }
    )

# --- read replica (docs/scaling.md) -----------------------------------------------------------
#: A read replica of DATABASE_URL: pages and KPI reads that may be a moment stale go there
#: (observatory/lib/routers.py); writes, ingest, the stitcher and alerts stay on the primary.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
#: Seconds a signed-in browser that just wrote keeps reading the primary.
DATABASE_REPLICA_PIN_S = env.int("DATABASE_REPLICA_PIN_S", default=10)


def replica_database(primary: dict[str, Any], replica: dict[str, Any]) -> dict[str, Any]:
    """The replica alias's settings: its URL's (``replica``), with the primary's options
    (pool, timeouts) under its own; on SQLite a reader that refuses writes."""
    if replica["ENGINE"] != primary["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must name the same kind of database")
    options = dict(primary.get("OPTIONS") or {})
    if str(replica["ENGINE"]).endswith("sqlite3"):
        # no write lock at BEGIN, and a write through it fails loudly
        options.pop("transaction_mode", None)
        options["init_command"] = "PRAGMA query_only=ON;"
    options.update(replica.get("OPTIONS") or {})
    return {
        **replica,
        "OPTIONS": options,
        "CONN_MAX_AGE": primary.get("CONN_MAX_AGE", 0),
        # a test run reads its test database through it, and never makes one of its own
        "TEST": {"MIRROR": "default"},
    }


if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_database(_db, env.db_url_config(DATABASE_REPLICA_URL))
    DATABASE_ROUTERS = ["observatory.lib.routers.ReplicaRouter"]
    MIDDLEWARE.insert(
        MIDDLEWARE.index("observatory.lib.guard.NulGuardMiddleware") + 1,
        "observatory.lib.routers.ReplicaReadsMiddleware",
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
#: Sign-in throttling (observatory/access/throttle.py): failures per username and per
#: client address within the window, and how long a locked one waits. Counted in the
#: default cache (per process unless CACHES points at a shared one).
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_MAX_FAILURES_PER_ADDRESS = env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", default=20)
LOGIN_FAILURE_WINDOW_S = env.float("LOGIN_FAILURE_WINDOW_S", default=900.0)
LOGIN_LOCKOUT_S = env.float("LOGIN_LOCKOUT_S", default=900.0)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
#: Static files are served from what collectstatic wrote to STATIC_ROOT: hashed names (cached
#: for good), each with a gzip and a brotli copy (lib/staticserve.py). `make run` collects
#: them; a deployment runs `python manage.py collectstatic` on each release.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False
#: Only the hashed copies are kept (and compressed): half the work of each collectstatic.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
#: Source maps are fetched by developer tools only: not worth compressing on every collect.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = [*Compressor.SKIP_COMPRESS_EXTENSIONS, "map"]

# --- Celery (the beat schedule is the one place the pipeline shows: docs/architecture.md) --
_broker_dir = DATA_DIR / "broker"
# obsfs:// is kombu's filesystem transport with atomic writes (observatory/lib/fsbroker.py)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="obsfs://")
if CELERY_BROKER_URL.startswith(("obsfs", "filesystem")):
    for sub in ("out", "processed"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "observatory"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
#: The pipeline in order: each tick stitches every waiting hop, then sweeps SLAs and opens
#: or closes exceptions (observatory.pipeline.wiring.tick). Ingest also nudges a tick
#: after each commit that stored hops, at most once a second per process.
PIPELINE_TICK_S = env.float("PIPELINE_TICK_S", default=5.0)
#: The wall time one chunk of the stitcher or of the KPI fill aims at, seconds: each sizes
#: its chunks to it (observatory/lib/pace.py), so a worker's warm shutdown, which waits
#: for the chunk in progress, ends within about this (docs/scaling.md, "Stopping").
PIPELINE_CHUNK_S = env.float("PIPELINE_CHUNK_S", default=1.0)
#: The stages that claim what the stitcher touched (transactions, and hops by business
#: hour), each from its own queue: the hand-off between stages (docs/architecture.md).
PIPELINE_CONSUMERS = ("triage", "kpis", "reconciliation")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "pipeline-tick": {
        "task": "observatory.pipeline.tasks.tick",
        "schedule": timedelta(seconds=PIPELINE_TICK_S),
        # a tick that waited longer than a tick is superseded by the next one
        "options": {"expires": PIPELINE_TICK_S},
    },
}

# --- channels ---------------------------------------------------------------------------
CHANNEL_LAYER_URL = env.str("CHANNEL_LAYER_URL", default="")
if CHANNEL_LAYER_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [CHANNEL_LAYER_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- email --------------------------------------------------------------------------------
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str(
        "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
    )
    EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="observatory@localhost")
#: Seconds an alert e-mail may take to connect and send (observatory/alerts/transports/email.py).
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)

# --- Observatory ----------------------------------------------------------------------------
OBSERVATORY_BASE_URL = env.str("OBSERVATORY_BASE_URL", default="http://127.0.0.1:8000")
SHOPIFY_WEBHOOK_SECRET = env.list("SHOPIFY_WEBHOOK_SECRET", default=["observatory-demo-secret"])
ALERTS_ALLOW_PRIVATE_URLS = env.bool("ALERTS_ALLOW_PRIVATE_URLS", default=False)
#: The largest request body taken, after decompression (docs/ingest.md: 413 past it).
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=16 * 1024 * 1024)
#: Extra key extraction rules: attribute name -> key kind (docs/ingest.md).
INGEST_KEY_RULES = env.dict(
    "INGEST_KEY_RULES",
    default={"order_id": "order_number", "shopify.order.id": "shopify_order_id"},
)
#: Resource service.name -> system, for senders that do not set retail.system.
INGEST_SERVICE_SYSTEMS = env.dict("INGEST_SERVICE_SYSTEMS", default={})
#: The PII deny-lists (tracing/privacy.py; docs/architecture.md, "Privacy"). Attribute
#: names: regular expressions matched against each dotted segment of a name, whole.
PII_KEY_PATTERNS = env.list("PII_KEY_PATTERNS", default=list(privacy.DEFAULT_KEY_PATTERNS))
#: Values masked wherever they appear in free text, whatever the field is called. Write
#: patterns that start where their first token starts (a look-behind) and use possessive
#: runs: values are long, and a backtracking pattern costs the square of their length.
PII_VALUE_PATTERNS = env.list("PII_VALUE_PATTERNS", default=list(privacy.DEFAULT_VALUE_PATTERNS))
#: Attribute names never masked by name (semantic conventions naming hosts, URLs, peers).
PII_SPARE_KEY_PATTERNS = env.list(
    "PII_SPARE_KEY_PATTERNS", default=list(privacy.DEFAULT_SPARE_KEY_PATTERNS)
)

# --- retention (docs/retention.md) -----------------------------------------------------------
#: How many days each kind of data is kept. ``transactions`` covers their keys, stage
#: timelines, merges, conflicts and exceptions, counted from a transaction's last change;
#: ``alerts``, alert events, notifications and delivery attempts; rollups, the KPI tables
#: at that resolution (day rollups, samples and seen facts go with the hour ones).
RETENTION_DAYS = {
    "hops": env.int("RETENTION_HOPS_DAYS", default=90),
    "transactions": env.int("RETENTION_TRANSACTIONS_DAYS", default=400),
    "alerts": env.int("RETENTION_ALERTS_DAYS", default=90),
    "minute_rollups": env.int("RETENTION_MINUTE_ROLLUPS_DAYS", default=14),
    "hour_rollups": env.int("RETENTION_HOUR_ROLLUPS_DAYS", default=400),
}
#: Rows deleted per statement (and per transaction) by the prune.
PRUNE_CHUNK = env.int("PRUNE_CHUNK", default=5000)
#: How often the worker prunes (and makes the hop table's partitions ahead), seconds.
PRUNE_EVERY_S = env.int("PRUNE_EVERY_S", default=3600)
#: On PostgreSQL, how many days of hop partitions the worker keeps made ahead.
HOP_PARTITIONS_AHEAD_DAYS = env.int("HOP_PARTITIONS_AHEAD_DAYS", default=3)
CELERY_BEAT_SCHEDULE["prune"] = {
    "task": "observatory.pipeline.tasks.prune",
    "schedule": timedelta(seconds=PRUNE_EVERY_S),
    "options": {"expires": PRUNE_EVERY_S},
}

# --- the weekly executive summary e-mail (docs/kpis.md, "Weekly summary") -------------------
#: Who receives it, comma separated; none: it is not sent.
EXECUTIVE_SUMMARY_RECIPIENTS = env.list("EXECUTIVE_SUMMARY_RECIPIENTS", default=[])
CELERY_BEAT_SCHEDULE["executive-summary"] = {
    "task": "observatory.dashboards.tasks.weekly_summary",
    # Mondays at 07:00 UTC, the week just ended
    "schedule": crontab(minute=0, hour=7, day_of_week="mon"),
}

# --- alerts (docs/alerts.md) --------------------------------------------------------------------
#: How often every alert rule is evaluated (seconds); each evaluation queues notifications.
ALERTS_EVALUATE_EVERY_S = env.float("ALERTS_EVALUATE_EVERY_S", default=15.0)
#: How often the delivery pass looks for due notifications (retries, Retry-After waits).
ALERTS_DELIVER_EVERY_S = env.float("ALERTS_DELIVER_EVERY_S", default=5.0)
#: Delivery retries: exponential backoff from the base, capped, at most this many tries.
ALERTS_RETRY_BASE_S = env.float("ALERTS_RETRY_BASE_S", default=10.0)
ALERTS_RETRY_MAX_S = env.float("ALERTS_RETRY_MAX_S", default=900.0)
ALERTS_DELIVERY_MAX_ATTEMPTS = env.int("ALERTS_DELIVERY_MAX_ATTEMPTS", default=8)
#: How long a delivery pass's claim of a notification lasts (renewed before each send); a
#: worker killed mid-send leaves its claim to expire, then another pass retries. Never
#: shorter than one send can take (observatory/alerts/actions/delivery.py, ``lease_s``).
ALERTS_DELIVERY_LEASE_S = env.float("ALERTS_DELIVERY_LEASE_S", default=120.0)
#: The Slack Web API (bot token mode: chat.postMessage, chat.update); tests point it home.
ALERTS_SLACK_API_URL = env.str("ALERTS_SLACK_API_URL", default="https://slack.com/api/")
#: the PagerDuty Events API v2 endpoint of pagerduty channels (tests point it at a receiver)
ALERTS_PAGERDUTY_URL = env.str(
    "ALERTS_PAGERDUTY_URL", default="https://events.pagerduty.com/v2/enqueue"
)
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "observatory.alerts.tasks.evaluate",
    "schedule": timedelta(seconds=ALERTS_EVALUATE_EVERY_S),
    "options": {"expires": ALERTS_EVALUATE_EVERY_S},
}
CELERY_BEAT_SCHEDULE["alerts-deliver"] = {
    "task": "observatory.alerts.tasks.deliver",
    "schedule": timedelta(seconds=ALERTS_DELIVER_EVERY_S),
    "options": {"expires": ALERTS_DELIVER_EVERY_S},
}
# --- GET /metrics (docs/metrics.md) -------------------------------------------------------------
#: Client addresses (or CIDR ranges) that may read /metrics without an API token; a scraper
#: elsewhere sends a read API token. Default: this host only. The address is the
#: connection's: behind a proxy it is the proxy's (docs/metrics.md).
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.0/8", "::1/128"])
# --- KPIs (docs/kpis.md) -----------------------------------------------------------------------
#: How often the rollup fill runs (seconds): it recomputes only the hours that changed.
KPIS_FILL_EVERY_S = env.float("KPIS_FILL_EVERY_S", default=10.0)
#: Hour buckets recomputed per committed chunk of a fill.
KPIS_FILL_CHUNK_HOURS = env.int("KPIS_FILL_CHUNK_HOURS", default=48)
#: How often the reconciliation backlog is sampled for its trend (seconds).
KPIS_BACKLOG_SAMPLE_S = env.int("KPIS_BACKLOG_SAMPLE_S", default=3600)
#: How often an open ops dashboard re-reads its figures when nothing was pushed (seconds).
DASHBOARD_POLL_S = env.float("DASHBOARD_POLL_S", default=1.0)
CELERY_BEAT_SCHEDULE["kpis-fill"] = {
    "task": "observatory.kpis.tasks.fill_rollups",
    "schedule": timedelta(seconds=KPIS_FILL_EVERY_S),
    "options": {"expires": KPIS_FILL_EVERY_S},
}
# --- reconciliation (docs/reconciliation.md) ------------------------------------------------
#: How often the reconciliation pass looks for rules that are due (seconds); each rule runs
#: on its own schedule (its every_s) and takes only what changed since.
RECONCILIATION_EVERY_S = env.float("RECONCILIATION_EVERY_S", default=30.0)
#: The business day's time zone of a rule that names none (an IANA name).
RECONCILIATION_TIME_ZONE = env.str("RECONCILIATION_TIME_ZONE", default=TIME_ZONE)
CELERY_BEAT_SCHEDULE["reconciliation"] = {
    "task": "observatory.reconciliation.tasks.reconcile",
    "schedule": timedelta(seconds=RECONCILIATION_EVERY_S),
    "options": {"expires": RECONCILIATION_EVERY_S},
}
#: The team owning exceptions of a system with no OwnerRoute row (nor a "*" row).
TRIAGE_DEFAULT_OWNER = env.str("TRIAGE_DEFAULT_OWNER", default="integration")
#: Stage -> the system expected to reach it, over the built-in table in triage/sla.py
#: (e.g. TRIAGE_STAGE_SYSTEMS=posted=erp,shipped=wms).
TRIAGE_STAGE_SYSTEMS = env.dict("TRIAGE_STAGE_SYSTEMS", default={})
#: Transactions the stitcher touched that one sweep takes on at most (the rest: the next).
TRIAGE_CLAIM = env.int("TRIAGE_CLAIM", default=10_000)
#: Inventory drift (docs/kpis.md, "inventory_drift"): the system whose inventory snapshots
#: are the truth, the units a channel may differ by before it is off, and how far apart
#: two snapshots' business times may be and still be compared, seconds.
INVENTORY_SOURCE_OF_TRUTH = env.str("INVENTORY_SOURCE_OF_TRUTH", default="wms")
INVENTORY_DRIFT_UNITS = env.int("INVENTORY_DRIFT_UNITS", default=0)
INVENTORY_DRIFT_WINDOW_S = env.int("INVENTORY_DRIFT_WINDOW_S", default=900)

# --- watermarks (docs/watermarks.md) ---
#: Systems whose stores are reporting streams of their own (each store has its watermark).
STORE_STREAM_SYSTEMS = env.list("STORE_STREAM_SYSTEMS", default=["pos"])
#: Maximum telemetry delay per system, seconds (e.g. TELEMETRY_MAX_DELAY_S=erp=120,pos=3600);
#: a system without one has it measured from its arrival lags, within the floor and ceiling.
TELEMETRY_MAX_DELAY_S = {
    k: float(v) for k, v in env.dict("TELEMETRY_MAX_DELAY_S", default={}).items()
}
TELEMETRY_DELAY_FLOOR_S = env.float("TELEMETRY_DELAY_FLOOR_S", default=60.0)
TELEMETRY_DELAY_CEILING_S = env.float("TELEMETRY_DELAY_CEILING_S", default=900.0)
#: Least skew allowed between two hops of one stream (an exporter's batching), seconds.
WATERMARK_MIN_SKEW_S = env.float("WATERMARK_MIN_SKEW_S", default=5.0)
#: A stream is still catching up while late hops arrived within this many seconds.
WATERMARK_LATE_WINDOW_S = env.float("WATERMARK_LATE_WINDOW_S", default=30.0)
#: A system that sent nothing for this long (and longer than its maximum delay) has stopped
#: reporting: the deadlines waiting on it become one ``silence`` exception.
SILENCE_AFTER_S = env.float("SILENCE_AFTER_S", default=600.0)
#: Hours of arrival lags the maximum delay and the skew are measured over.
TELEMETRY_LAG_HOURS = env.int("TELEMETRY_LAG_HOURS", default=2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # no token in any log line (observatory/lib/logredact.py; access loggers: access.apps)
    "filters": {"redact": {"()": "observatory.lib.logredact.RedactTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
