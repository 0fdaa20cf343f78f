"""Turning an image reference from an import file (a path under a root folder, a file://
URL, or an http(s) URL) into bytes, without ever reading outside the root."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from curation.fetch_guard import FetchError, GuardedFetcher, parse_networks


class ImageRefError(Exception):
    """The reference cannot be read; the message says why."""


@dataclass(frozen=True)
class RefResolver:
    root: Path | None
    fetch: bool = False
    timeout_s: float = 15.0
    max_bytes: int = 50 * 2**20

    def read(self, ref: object) -> tuple[bytes, str]:
        """Return (bytes, the URL worth keeping as the image's source or '')."""
        if not isinstance(ref, str) or not ref.strip():
            raise ImageRefError("the image reference is not a non-empty string")
        ref = ref.strip()
        parsed = urllib.parse.urlparse(ref)
        if parsed.scheme in ("http", "https"):
            return self._fetch(ref), ref
        if parsed.scheme == "file":
            return self._read_path(Path(urllib.parse.unquote(parsed.path))), ""
        if parsed.scheme and len(parsed.scheme) > 1:
            raise ImageRefError(f"unsupported URL scheme {parsed.scheme!r}")
        return self._read_path(Path(ref)), ""

    def _read_path(self, path: Path) -> bytes:
        if self.root is None:
            raise ImageRefError("a path was given but no images root (--images-root)")
        root = self.root.resolve()
        full = (path if path.is_absolute() else root / path).resolve()
        if not full.is_relative_to(root):
            raise ImageRefError(f"{path} is outside the images root")
        if not full.is_file():
            raise ImageRefError(f"{path} does not exist under the images root")
        size = full.stat().st_size
        if size > self.max_bytes:
            raise ImageRefError(f"{path} is {size} bytes, over the {self.max_bytes} byte cap")
        return full.read_bytes()

    def _fetch(self, url: str) -> bytes:
        if not self.fetch:
            raise ImageRefError("fetching URLs is off (pass --fetch to allow it)")
        # Never the server's own network (loopback, private, link-local, ...), unless the
        # operator allowed a network with RELSIM_FETCH_ALLOWED_NETWORKS.
        fetcher = GuardedFetcher(
            timeout_s=self.timeout_s,
            max_bytes=self.max_bytes,
            allowed=parse_networks(settings.RELSIM_FETCH_ALLOWED_NETWORKS),
        )
        try:
            return fetcher.fetch(url)
        except FetchError as exc:
            raise ImageRefError(str(exc)) from None
