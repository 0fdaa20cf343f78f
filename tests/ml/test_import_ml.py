from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ml

ROOT = Path(__file__).resolve().parents[2]


def test_every_ml_module_imports_without_django() -> None:
    modules = sorted(f"ml.{info.name}" for info in pkgutil.iter_modules(ml.__path__))
    assert "ml.relsim_model" in modules and "ml.train_relsim" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'django' not in sys.modules, 'django was imported'\n"
        "assert 'celery' not in sys.modules, 'celery was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
