"""Safe outbound HTTP: the one place (with ``alerts.transports``) that calls out.

Every request here:

* has a connect and a read timeout, and an overall deadline when it retries;
* goes only to ``http`` and ``https`` URLs, never follows redirects, and reads at most
  ``max_bytes`` of the answer;
* resolves the host first and refuses private, loopback, link-local, multicast, reserved
  and unspecified addresses unless ``settings.ALERTS_ALLOW_PRIVATE_URLS`` is set, then
  connects to the very address it checked (a second DNS answer cannot sneak a private
  address in between the check and the connection); TLS still verifies the certificate
  against the host name;
* retries at most ``retries`` times (capped at 3), only on connection failures and on
  429 / 502 / 503 / 504, waiting the ``Retry-After`` the server asked for when it is short
  enough, else an exponential backoff.

Callers that must never wait (alert delivery) pass ``retries=0`` and do their own
backoff through the outbox.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import urllib3
from django.conf import settings

USER_AGENT = "Observatory-Alerts/1"
#: (connect, read) seconds
DEFAULT_TIMEOUT = (5.0, 10.0)
MAX_RETRIES = 3
#: the longest Retry-After (or backoff) a retrying call sleeps; longer ones are returned
MAX_WAIT_S = 5.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """The URL may not be called: wrong scheme, no host, or a non-public address."""


class RequestFailed(Exception):
    """No HTTP answer: the host did not resolve, the connection failed or timed out."""


@dataclass
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.content)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None

    def retry_after(self) -> float | None:
        """The ``Retry-After`` the server asked for, in seconds (None when absent)."""
        return parse_retry_after(self.header("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def private_allowed() -> bool:
    return bool(settings.ALERTS_ALLOW_PRIVATE_URLS)


#: IPv6 ranges refused outright: transition mechanisms that reach IPv4 through a relay
#: (6to4 ``2002::/16``, Teredo ``2001::/32``), which a webhook never needs and which can
#: carry any IPv4 address, loopback and private ones included.
_TUNNELS = (ipaddress.IPv6Network("2002::/16"), ipaddress.IPv6Network("2001::/32"))
#: IPv6 forms whose last 32 bits are an IPv4 address: IPv4-mapped ``::ffff:0:0/96``,
#: IPv4-translated ``::ffff:0:0:0/96``, IPv4-compatible ``::/96`` and NAT64
#: ``64:ff9b::/96`` and ``64:ff9b:1::/48``. The embedded address is judged as well.
_EMBEDDING = (
    ipaddress.IPv6Network("::ffff:0:0/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries in its last 32 bits, for the forms in
    ``_EMBEDDING`` (None for any other)."""
    if any(address in net for net in _EMBEDDING):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """A globally routable unicast address (not private, loopback, link-local, ...); an
    IPv6 address that tunnels to IPv4 (6to4, Teredo) never is, and one that embeds an
    IPv4 address is judged by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in net for net in _TUNNELS):
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return _is_public_one(inner)
    return _is_public_one(address)


def _is_public_one(address: Address) -> bool:
    return bool(address.is_global) and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    #: path and query, as sent on the request line
    path: str
    #: the address to connect to (None: let the resolver pick, private addresses allowed)
    address: str | None


def check_url(url: str, *, resolve: bool = True) -> Target:
    """Parse and vet ``url``. With ``resolve``, the host is looked up and every answer must
    be public (unless private addresses are allowed); without it, only literal addresses
    and ``localhost`` are judged (for validating configuration without DNS).

    Raises UnsafeURL, or RequestFailed when the host does not resolve."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs can be called, not {scheme or 'this'!r}")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not accepted")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"bad port: {exc}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    target = Target(scheme=scheme, host=host, port=port, path=path, address=None)
    if private_allowed():
        return target
    literal = _literal(host)
    if literal is not None:
        if not is_public(literal):
            raise UnsafeURL(_refusal(host, literal))
        return Target(scheme, host, port, path, str(literal))
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(_refusal(host, ipaddress.ip_address("127.0.0.1")))
    if not resolve:
        return target
    addresses = resolve_host(host, port)
    for address in addresses:
        if not is_public(address):
            raise UnsafeURL(_refusal(host, address))
    return Target(scheme, host, port, path, str(addresses[0]))


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _refusal(host: str, address: Address) -> str:
    return (
        f"{host} is a private or loopback address ({address}); set "
        "ALERTS_ALLOW_PRIVATE_URLS=1 to allow it"
    )


def resolve_host(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestFailed(f"could not resolve {host}: {exc}") from None
    out: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    if not out:
        raise RequestFailed(f"could not resolve {host}")
    return out


def _pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    connect_to = target.address or target.host
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            connect_to,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(
        connect_to, target.port, timeout=timeout, retries=False, maxsize=1
    )


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _once(
    method: str,
    target: Target,
    body: bytes | None,
    headers: dict[str, str],
    timeout: tuple[float, float],
    max_bytes: int,
) -> Response:
    pool = _pool(target, urllib3.Timeout(connect=timeout[0], read=timeout[1]))
    try:
        raw = pool.urlopen(
            method.upper(),
            target.path,
            body=body,
            headers={"Host": _host_header(target), **headers},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            content = raw.read(max_bytes)
        finally:
            raw.release_conn()
        return Response(status=raw.status, headers=dict(raw.headers.items()), content=content)
    except urllib3.exceptions.HTTPError as exc:
        raise RequestFailed(f"{target.host}: {type(exc).__name__}: {exc}") from None
    finally:
        pool.close()


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    data: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = 0,
    max_bytes: int = 1024 * 1024,
    sleep: Callable[[float], None] = time.sleep,
) -> Response:
    """Call ``url`` safely (see the module docstring); the answer, whatever its status.

    Raises UnsafeURL (refused before any connection) or RequestFailed (no answer after
    the allowed retries)."""
    body: bytes | None
    sent_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if json is not None:
        body = orjson.dumps(json)
        sent_headers.setdefault("Content-Type", "application/json; charset=utf-8")
    elif isinstance(data, str):
        body = data.encode()
    else:
        body = data
    retries = max(0, min(retries, MAX_RETRIES))
    deadline = time.monotonic() + timeout[0] + timeout[1] + MAX_WAIT_S * (retries + 1)
    attempt = 0
    while True:
        target = check_url(url)
        try:
            response = _once(method, target, body, sent_headers, timeout, max_bytes)
        except RequestFailed:
            if attempt >= retries or time.monotonic() >= deadline:
                raise
            wait = min(MAX_WAIT_S, 0.5 * 2**attempt)
        else:
            if response.status not in RETRY_STATUSES or attempt >= retries:
                return response
            asked = response.retry_after()
            if asked is not None and asked > MAX_WAIT_S:
                return response  # the caller decides what to do with a long wait
            wait = asked if asked is not None else min(MAX_WAIT_S, 0.5 * 2**attempt)
            if time.monotonic() + wait >= deadline:
                return response
        attempt += 1
        sleep(wait)


def post(url: str, **kwargs: Any) -> Response:
    return request("POST", url, **kwargs)


def get(url: str, **kwargs: Any) -> Response:
    return request("GET", url, **kwargs)
