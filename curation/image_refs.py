"""Turning an image reference from an import file (a path under a root folder, a file://
URL, or an http(s) URL) into bytes, without ever reading outside the root."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path


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
        request = urllib.request.Request(url, headers={"User-Agent": "relsim-studio"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise ImageRefError(f"{url} is {declared} bytes, over the cap")
                data: bytes = response.read(self.max_bytes + 1)
        except ImageRefError:
            raise
        except urllib.error.HTTPError as exc:
            raise ImageRefError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImageRefError(f"{url} could not be fetched: {reason}") from None
        if len(data) > self.max_bytes:
            raise ImageRefError(f"{url} is over the {self.max_bytes} byte cap")
        return data
