"""observatory.lib.http: timeouts, bounded retries, and no private or loopback addresses
unless ALERTS_ALLOW_PRIVATE_URLS (checked after DNS resolution)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from observatory.lib import http
from tests.alerts.conftest import Receiver


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://app.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_private_and_loopback_addresses_are_refused(url: str, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(http.UnsafeURL, match="ALERTS_ALLOW_PRIVATE_URLS"):
        http.check_url(url, resolve=False)
    with pytest.raises(http.UnsafeURL):
        http.post(url, json={"text": "x"})


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a", "x"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(http.UnsafeURL):
        http.check_url(url, resolve=False)


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(http.UnsafeURL):
        http.check_url("https://user:pw@hooks.slack.com/services/x", resolve=False)


def test_a_public_literal_address_is_allowed_without_dns(settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    target = http.check_url("https://93.184.216.34/hook?a=1", resolve=False)
    assert target.address == "93.184.216.34" and target.path == "/hook?a=1"
    assert target.port == 443


def test_a_name_resolving_to_a_private_address_is_refused(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is on what DNS answers, and the connection goes to the checked address."""
    settings.ALERTS_ALLOW_PRIVATE_URLS = False

    def fake(host: str, port: int, *a: Any, **k: Any) -> list[Any]:
        ip = {"hooks.example.com": "10.0.0.5", "good.example.com": "93.184.216.34"}[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(http.UnsafeURL, match=r"10\.0\.0\.5"):
        http.check_url("https://hooks.example.com/services/T/B/x")
    target = http.check_url("https://good.example.com/services/T/B/x")
    assert target.address == "93.184.216.34" and target.host == "good.example.com"


def test_a_name_that_does_not_resolve_is_a_request_failure(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False

    def fail(*a: Any, **k: Any) -> list[Any]:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(http.RequestFailed, match="could not resolve"):
        http.post("https://nowhere.invalid/x", json={})


def test_loopback_refused_without_the_setting_reaches_nothing(
    receiver: Receiver, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(http.UnsafeURL):
        http.post(receiver.url + "/hook", json={"text": "hello"})
    assert receiver.requests == []


def test_with_the_setting_a_loopback_post_goes_through(receiver: Receiver, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    response = http.post(receiver.url + "/hook?x=1", json={"text": "hello"})
    assert response.status == 200 and response.text == "ok" and response.ok
    [req] = receiver.requests
    assert req.path == "/hook?x=1" and req.json() == {"text": "hello"}
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.headers["User-Agent"] == http.USER_AGENT
    assert req.headers["Host"] == f"127.0.0.1:{receiver.port}"


def test_read_timeout(receiver: Receiver, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    receiver.delay_s = 2.0
    started = time.monotonic()
    with pytest.raises(http.RequestFailed):
        http.post(receiver.url + "/slow", json={}, timeout=(1.0, 0.3))
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_request_failure(settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(http.RequestFailed):
        http.post(f"http://127.0.0.1:{port}/x", json={}, timeout=(1.0, 1.0))


def test_bounded_retries_honour_retry_after(receiver: Receiver, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    receiver.answer((503, {}, b"busy"), (429, {"Retry-After": "2"}, b"slow down"), (200, {}, b"ok"))
    slept: list[float] = []
    response = http.post(receiver.url, json={}, retries=5, sleep=slept.append)
    assert response.status == 200 and len(receiver.requests) == 3
    assert slept == [0.5, 2.0]  # backoff, then what the server asked for


def test_no_retries_by_default_and_long_waits_are_left_to_the_caller(
    receiver: Receiver, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    receiver.answer((503, {}, b"busy"))
    assert http.post(receiver.url, json={}).status == 503
    receiver.answer((429, {"Retry-After": "60"}, b""))
    slept: list[float] = []
    response = http.post(receiver.url, json={}, retries=3, sleep=slept.append)
    assert response.status == 429 and response.retry_after() == 60 and slept == []


def test_redirects_are_not_followed(receiver: Receiver, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    receiver.answer((302, {"Location": "http://10.0.0.1/internal"}, b""))
    response = http.post(receiver.url, json={})
    assert response.status == 302 and len(receiver.requests) == 1


def test_parse_retry_after() -> None:
    assert http.parse_retry_after("30") == 30
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("soon") is None
    at = 1_700_000_000.0
    assert http.parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now=at) == pytest.approx(20)
