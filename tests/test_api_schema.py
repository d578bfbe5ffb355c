"""Schemathesis against the JSON API's own OpenAPI document, on a live server with a
write-scoped token: examples, coverage, fuzzing and stateful phases, every check. Any
server error, undocumented status or content type, response off its schema, valid
request refused or invalid one accepted fails the test (docs/architecture.md, "The JSON
API's edge"). The outbound HTTP seam is stubbed: a channel's test message goes nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from observatory.access.actions import do_create_api_token
from observatory.lib import http

ROOT = Path(__file__).resolve().parent.parent
#: examples per operation: enough to reach every field's bounds, bounded in time
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))


@pytest.fixture
def no_outbound_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks resolve to a public address and answer 200 without leaving the machine."""
    import ipaddress

    monkeypatch.setattr(
        http, "resolve_host", lambda host, port: [ipaddress.ip_address("93.184.216.34")]
    )
    monkeypatch.setattr(http, "_once", lambda *a, **k: http.Response(200, {}, b"ok"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_api_keeps_its_openapi_document(
    live_server: Any, no_outbound_http: None, tmp_path: Path
) -> None:
    _, token = do_create_api_token("schemathesis", "write")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live_server.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = run.stdout[run.stdout.find("SUMMARY") :] if "SUMMARY" in run.stdout else ""
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:] + summary
