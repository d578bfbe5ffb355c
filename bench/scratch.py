"""The scratch database every PostgreSQL benchmark works in (shared by the benches).

    open_scratch("observatory_bench_x", reuse=False)

drops and creates that database on the server of ``DATABASE_URL`` (kept with
``reuse``), points ``DATABASE_URL`` at it and sets Django up.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit


def scratch_url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def create_database(base: str, name: str) -> None:
    import psycopg

    admin = scratch_url(base, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(base: str, name: str) -> None:
    import psycopg

    admin = scratch_url(base, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_scratch(name: str, *, reuse: bool = False) -> None:
    """Django on the scratch database ``name`` (created anew unless ``reuse``)."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at a PostgreSQL server (the scratch db is made there)")
    if not reuse:
        create_database(base, name)
    os.environ["DATABASE_URL"] = scratch_url(base, name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")

    import django

    django.setup()
