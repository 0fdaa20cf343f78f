"""Fetching an http(s) URL for an import without reaching the server's own network: every
address a host resolves to must be public, the connection goes to the address that was
checked, and each redirect is checked the same way."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(Exception):
    """The URL could not be fetched; the message says why."""


class FetchRefused(FetchError):
    """The URL, or a redirect, leads to an address or scheme that is not allowed."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) from a setting, e.g. ["10.1.2.0/24", "192.0.2.7"]."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """Any IPv4 address the address carries (mapped, 6to4, Teredo), since a connection to
    it can reach that IPv4 host, then the address itself."""
    found: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            found.append(address.ipv4_mapped)
        if address.sixtofour:
            found.append(address.sixtofour)
        if address.teredo:
            found.extend(address.teredo)
    return [*found, address]


def address_refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str:
    """Why a connection to this address is not allowed, or '' if it is."""
    if any(address.version == net.version and address in net for net in allowed):
        return ""
    for candidate in _embedded(address):
        for kind, flagged in (
            ("an unspecified", candidate.is_unspecified),
            ("a loopback", candidate.is_loopback),
            ("a link-local", candidate.is_link_local),
            ("a multicast", candidate.is_multicast),
            ("a reserved", candidate.is_reserved),
            ("a private", candidate.is_private),
            # Whatever else is not globally routable (shared 100.64/10, documentation, ...).
            ("a non-public", not candidate.is_global),
        ):
            if flagged:
                return f"{address} is {kind} address"
    return ""


def resolve_checked(host: str, port: int, allowed: Sequence[IPNetwork] = ()) -> str:
    """Resolve host and return the address to connect to; refuse if any address it resolves
    to is not allowed (a host with one private address among public ones is refused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"{host} could not be resolved: {exc.strerror}") from None
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0])
        reason = address_refusal(ipaddress.ip_address(text), allowed)
        if reason:
            raise FetchRefused(f"{host} resolves to a refused address: {reason}")
        addresses.append(text)
    if not addresses:
        raise FetchError(f"{host} has no address")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the host name resolves to by then."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS verified against the host name, not the address."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class GuardedFetcher:
    timeout_s: float = 15.0
    max_bytes: int = 50 * 2**20
    max_redirects: int = 5
    allowed: tuple[IPNetwork, ...] = ()
    user_agent: str = "relsim-studio"

    def fetch(self, url: str) -> bytes:
        """The body of a 200 answer to GET url, at most max_bytes long."""
        for _ in range(self.max_redirects + 1):
            status, location, body = self._get(url)
            if status not in _REDIRECTS:
                if status != 200:
                    raise FetchError(f"{url} answered HTTP {status}")
                return body
            if not location:
                raise FetchError(f"{url} answered HTTP {status} without a Location")
            url = urllib.parse.urljoin(url, location)
        raise FetchError(f"more than {self.max_redirects} redirects")

    def _get(self, url: str) -> tuple[int, str, bytes]:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in _DEFAULT_PORTS:
            raise FetchRefused(f"the scheme of {url!r} is not http or https")
        host = parsed.hostname
        if not host:
            raise FetchError(f"{url!r} has no host")
        try:
            port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        except ValueError:
            raise FetchError(f"{url!r} has a bad port") from None
        address = resolve_checked(host, port, self.allowed)
        kind = _PinnedHTTPSConnection if parsed.scheme == "https" else _PinnedHTTPConnection
        connection = kind(host, port, address, self.timeout_s)
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        try:
            connection.request("GET", path, headers={"User-Agent": self.user_agent})
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                return response.status, response.getheader("Location") or "", b""
            if response.status != 200:
                return response.status, "", b""
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"{url} is {declared} bytes, over the cap")
            body = response.read(self.max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"{url} could not be fetched: {exc}") from None
        finally:
            connection.close()
        if len(body) > self.max_bytes:
            raise FetchError(f"{url} is over the {self.max_bytes} byte cap")
        return 200, "", body
