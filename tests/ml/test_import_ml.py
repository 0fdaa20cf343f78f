from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ml

ROOT = Path(__file__).resolve().parents[2]


def test_every_ml_module_imports_without_django() -> None:
    modules = sorted(info.name for info in pkgutil.walk_packages(ml.__path__, "ml."))
    assert "ml.relsim.model" in modules and "ml.train.loop" in modules
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


def test_every_public_name_of_a_subpackage_is_what_its_module_defines() -> None:
    import importlib
    import types

    for info in pkgutil.walk_packages(ml.__path__, "ml."):
        importlib.import_module(info.name)  # every submodule loaded, as a long run ends up
    for info in pkgutil.iter_modules(ml.__path__, "ml."):
        package = importlib.import_module(info.name)
        for name in getattr(package, "__all__", []):
            # A submodule of the same name would shadow a lazily exported function.
            assert not isinstance(getattr(package, name), types.ModuleType), f"{info.name}.{name}"
