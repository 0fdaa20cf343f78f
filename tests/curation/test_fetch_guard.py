"""Fetching image URLs never reaches the server's own network, directly or by a redirect."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from curation.fetch_guard import (
    FetchRefused,
    GuardedFetcher,
    _PinnedHTTPConnection,
    address_refusal,
    parse_networks,
    resolve_checked,
)
from curation.image_refs import ImageRefError, RefResolver


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services live here
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
    ],
)
def test_the_address_check_refuses_every_non_public_kind(address: str, kind: str) -> None:
    reason = address_refusal(ipaddress.ip_address(address))
    assert kind in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_the_address_check_lets_public_addresses_through(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == ""


def test_an_allowed_network_is_let_through_and_nothing_else() -> None:
    allowed = parse_networks(["10.20.0.0/16", "127.0.0.1"])
    assert address_refusal(ipaddress.ip_address("10.20.3.4"), allowed) == ""
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allowed) == ""
    assert "private" in address_refusal(ipaddress.ip_address("10.21.3.4"), allowed)
    assert "loopback" in address_refusal(ipaddress.ip_address("127.0.0.2"), allowed)


def test_a_host_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(FetchRefused, match="localhost resolves to a refused address"):
        resolve_checked("localhost", 80)
    # Numeric spellings resolve like any name.
    with pytest.raises(FetchRefused, match="loopback"):
        resolve_checked("2130706433", 80)


class _Server(BaseHTTPRequestHandler):
    """Answers /image with bytes and /hop?to=URL with a redirect; records what it saw."""

    seen: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host", "")))
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/hop?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"image bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[str], tuple[str, list[tuple[str, str]]]]]:
    """`serve(host)`: a real HTTP server on that loopback address; its URL and request log."""
    servers: list[ThreadingHTTPServer] = []

    def start(host: str) -> tuple[str, list[tuple[str, str]]]:
        seen: list[tuple[str, str]] = []
        handler = type("Handler", (_Server,), {"seen": seen})
        try:
            server = ThreadingHTTPServer((host, 0), handler)
        except OSError:
            pytest.skip(f"cannot listen on {host} here")
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://{host}:{server.server_port}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_url_on_the_loopback_address_is_refused_and_never_requested(
    serve: Any, settings: Any
) -> None:
    settings.RELSIM_FETCH_ALLOWED_NETWORKS = []
    url, seen = serve("127.0.0.1")
    resolver = RefResolver(root=None, fetch=True, timeout_s=5)
    with pytest.raises(ImageRefError, match=r"127\.0\.0\.1 is a loopback address"):
        resolver.read(f"{url}/image")
    assert seen == []


def test_an_allowed_network_is_fetched_from(serve: Any, settings: Any) -> None:
    settings.RELSIM_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    url, seen = serve("127.0.0.1")
    data, source = RefResolver(root=None, fetch=True, timeout_s=5).read(f"{url}/image")
    assert data == b"image bytes" and source == f"{url}/image"
    assert seen == [("/image", url.removeprefix("http://"))]


def test_a_redirect_to_a_refused_address_is_not_followed(serve: Any) -> None:
    first, first_seen = serve("127.0.0.1")
    second, second_seen = serve("127.0.0.2")
    fetcher = GuardedFetcher(timeout_s=5, allowed=parse_networks(["127.0.0.1/32"]))
    assert fetcher.fetch(f"{first}/hop?to={first}/image") == b"image bytes"
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.2 is a loopback address"):
        fetcher.fetch(f"{first}/hop?to={second}/image")
    assert second_seen == []
    with pytest.raises(FetchRefused, match="not http or https"):
        fetcher.fetch(f"{first}/hop?to=file:///etc/passwd")
    assert [path for path, _ in first_seen][-1] == "/hop?to=file:///etc/passwd"


def test_the_connection_goes_to_the_checked_address_not_a_new_lookup(serve: Any) -> None:
    # The host name does not resolve at all, so only the pinned address can be reached,
    # while the request still names the host (for virtual hosts and TLS).
    url, seen = serve("127.0.0.1")
    port = int(url.rsplit(":", 1)[1])
    connection = _PinnedHTTPConnection("images.invalid", port, "127.0.0.1", 5)
    try:
        connection.request("GET", "/image")
        assert connection.getresponse().read() == b"image bytes"
    finally:
        connection.close()
    assert seen == [("/image", f"images.invalid:{port}")]
