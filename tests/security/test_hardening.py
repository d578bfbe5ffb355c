"""Security basics, through the real interfaces: settings checked in a subprocess as a
deployment would start, headers and pages through the test client, the log filter on a
real logger, the ingest scope through the events endpoint, the SSRF guard's addresses."""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from observatory.access.actions import do_create_api_token, do_create_ingest_token
from observatory.alerts.models import Channel
from observatory.lib import http
from observatory.lib.logredact import RedactTokens

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k3y-" + "x8Fq2Lm9Zr7Tw4Yb6Nc1Vd5Hs0Jg3Kp" * 2


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    dropped = ("SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")  # set by the browser tests
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base.pop("DJANGO_SETTINGS_MODULE", None)
    merged = {**base, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={k: v for k, v in merged.items() if v != ""},  # "": not set
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/observatory",
    "ALLOWED_HOSTS": "observatory.example.com",
    "OBSERVATORY_TLS": "1",
    "DEBUG": "0",
}


def test_a_deployment_without_secret_key_refuses_to_start() -> None:
    run = manage("check", **PRODUCTION)
    assert run.returncode != 0
    assert "SECRET_KEY is not set" in run.stderr


def test_the_development_key_needs_debug() -> None:
    from observatory.settings import DEVELOPMENT_SECRET_KEY

    run = manage("check", SECRET_KEY=DEVELOPMENT_SECRET_KEY, DEBUG="0")
    assert run.returncode != 0 and "development key" in run.stderr


def test_check_deploy_is_clean_under_production_settings() -> None:
    run = manage(
        "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=STRONG_KEY, **PRODUCTION
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout


def test_the_embedded_defaults_keep_a_generated_key(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    env = {"OBSERVATORY_DATA_DIR": data, "DATABASE_URL": ""}
    first = manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", **env
    )
    again = manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", **env
    )
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) >= 50 and key == again.stdout.strip()
    assert (tmp_path / "data" / "secret-key").stat().st_mode & 0o077 == 0


@pytest.mark.django_db
def test_security_headers_and_a_policy_without_inline_script(client: Client) -> None:
    answer = client.get("/accounts/login/")
    policy = answer["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert "frame-ancestors 'none'" in policy
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["Referrer-Policy"] == "same-origin"
    assert answer["X-Content-Type-Options"] == "nosniff"


def test_templates_hold_no_inline_script() -> None:
    import re

    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=\"", text), path


# --- sign-in throttling ---------------------------------------------------------------------


@pytest.mark.django_db
def test_sign_in_is_refused_after_repeated_failures(settings: Any) -> None:
    cache.clear()
    settings.LOGIN_MAX_FAILURES = 3
    get_user_model().objects.create_user("ops", password="right-password")
    client = Client()
    for _ in range(3):
        bad = client.post("/accounts/login/", {"username": "ops", "password": "wrong"})
        assert bad.status_code == 200
    locked = client.post("/accounts/login/", {"username": "ops", "password": "right-password"})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    # another address is counted apart, but the username is locked wherever it comes from
    other = Client(REMOTE_ADDR="10.1.2.3")
    assert other.post("/accounts/login/", {"username": "ops", "password": "x"}).status_code == 429
    cache.clear()
    ok = client.post("/accounts/login/", {"username": "ops", "password": "right-password"})
    assert ok.status_code == 302


@pytest.mark.django_db
def test_one_address_guessing_many_usernames_is_refused(settings: Any) -> None:
    cache.clear()
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    client = Client()
    for i in range(4):
        client.post("/accounts/login/", {"username": f"user{i}", "password": "x"})
    answer = client.post("/accounts/login/", {"username": "someone", "password": "x"})
    assert answer.status_code == 429
    cache.clear()


# --- secrets shown to admins only -----------------------------------------------------------

HOOK = "https://hooks.slack.com/services/T0001/B0001/very-secret-part"


@pytest.fixture
def slack_channel(db: None) -> Channel:
    return Channel.objects.create(name="ops-slack", kind="slack", webhook_url=HOOK)


def test_webhook_urls_are_masked_for_non_admins(slack_channel: Channel) -> None:
    _, read = do_create_api_token("reader", "read")
    _, write = do_create_api_token("writer", "write")
    masked = Client(HTTP_AUTHORIZATION=f"Bearer {read}").get("/api/v1/alert-channels").json()
    assert "very-secret-part" not in str(masked)
    assert masked[0]["webhook_url"] == "https://hooks.slack.com/…"
    whole = Client(HTTP_AUTHORIZATION=f"Bearer {write}").get("/api/v1/alert-channels").json()
    assert whole[0]["webhook_url"] == HOOK
    viewer = get_user_model().objects.create_user("viewer", password="x")
    client = Client()
    client.force_login(viewer)
    for url in ("/alerts/", f"/alerts/channels/{slack_channel.id}/"):
        assert "very-secret-part" not in client.get(url).content.decode(), url
    admin = get_user_model().objects.create_superuser("root", "r@example.com", "x")
    client.force_login(admin)
    assert (
        "very-secret-part" in client.get(f"/alerts/channels/{slack_channel.id}/").content.decode()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "address",
    [
        "ops@example.com\r\nBcc: x@evil.com",
        "a@example.com, b@example.com",
        "Ops <o@example.com>",
        "o\x00@example.com",
    ],
)
def test_email_channels_take_one_plain_address_each(address: str) -> None:
    _, write = do_create_api_token("writer", "write")
    body = {"name": "mail", "kind": "email", "to": [address]}
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {write}").post(
        "/api/v1/alert-channels", body, content_type="application/json"
    )
    assert answer.status_code == 422, answer.content


# --- logs -----------------------------------------------------------------------------------


def test_no_token_in_access_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactTokens) for f in logger.filters)  # installed by access.apps
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "POST",
            "/webhooks/shopify?token=obs_in_SECRETSECRETSECRET&x=1",
            "1.1",
            200,
        )
        logging.getLogger("django.request").warning(
            "Not Found: /webhooks/shopify?token=obs_in_OTHERSECRETVALUE"
        )
    text = caplog.text
    assert "SECRET" not in text and "obs_in_" not in text
    assert "token=[redacted]&x=1" in text


# --- the ingest scope -----------------------------------------------------------------------


def _event(event_id: str, system: str, source: str = "urn:acme:wms") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "com.acme.picked",
        "data": {"system": system, "keys": {"order_number": "#77"}},
    }


@pytest.mark.django_db
def test_a_scoped_token_cannot_claim_or_probe_another_systems_events() -> None:
    _, wms = do_create_ingest_token("wms-sender", system="wms")
    _, erp = do_create_ingest_token("erp-sender", system="erp")
    wms_client = Client(HTTP_AUTHORIZATION=f"Bearer {wms}")
    erp_client = Client(HTTP_AUTHORIZATION=f"Bearer {erp}")
    ctype = "application/cloudevents+json"
    assert (
        wms_client.post("/api/v1/events", _event("pick-1", "wms"), content_type=ctype).status_code
        == 200
    )
    # claiming the warehouse's system: refused
    claim = erp_client.post("/api/v1/events", _event("pick-2", "wms"), content_type=ctype)
    assert claim.status_code == 403
    # the warehouse's source and id, as the ERP's own event: stored, never "duplicate"
    probe = erp_client.post("/api/v1/events", _event("pick-1", "erp"), content_type=ctype)
    assert probe.status_code == 200
    assert probe.json()["duplicates"] == [] and len(probe.json()["accepted"]) == 1
    # and the warehouse's own re-delivery is still its duplicate
    again = wms_client.post("/api/v1/events", _event("pick-1", "wms"), content_type=ctype)
    assert len(again.json()["duplicates"]) == 1


# --- SSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::]/",
        "http://[2002:a00:1::]/hook",
        "http://[2001::1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[::ffff:0:a00:1]/",
    ],
)
def test_addresses_that_embed_or_tunnel_to_private_ipv4_are_refused(
    url: str, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(http.UnsafeURL):
        http.check_url(url, resolve=False)


def test_an_embedded_public_address_is_judged_by_it() -> None:
    assert http.is_public(ipaddress.ip_address("::ffff:93.184.216.34"))
    assert not http.is_public(ipaddress.ip_address("2002:5db8:d822::1"))  # 6to4: never
