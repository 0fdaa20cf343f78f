"""What the benchmark scripts share: the environment their Django child processes run in,
and the JSON report each writes beside its printed table."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def child_environment(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Production-like request handling (DEBUG off) on the given database and data folder;
    `extra` adds or overrides settings. The test client's host is allowed; TLS would end at
    a proxy, so no redirect."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "RELSIM_DATA_DIR": str(data_dir),
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-" + "x" * 40,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def machine(
    load_before: tuple[float, float, float], load_after: tuple[float, float, float], **more: Any
) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        **more,
        "load_average_after": load_after,
    }


def write_report(out: Path, fields: dict[str, Any]) -> None:
    """The report as JSON at `out`, headed by the command that made it and when."""
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"Wrote {out}")


def images_sharing_file(base: Any, numbers: Iterable[int]) -> list[Any]:
    """Unsaved pool Image rows, one per number (distinct hashes), that all point at `base`'s
    stored file and thumbnail: a paper-size pool seeded in seconds, for pages and jobs that
    never read the files."""
    from curation.models import Image

    return [
        Image(
            sha256=f"{n:064x}",
            md5=f"{n:032x}",
            width=base.width,
            height=base.height,
            original_format=base.original_format,
            file=base.file.name,
            thumbnail=base.thumbnail.name,
            phash=base.phash,
            source_name=f"bench/{n:07d}.png",
        )
        for n in numbers
    ]
