"""The test suite keeps to its own data directory, broker folder and Redis key prefix, so it
can run beside `make run` (or a deployment) without taking that instance's messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
_PRINT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'data': str(s.DATA_DIR), 'broker': s.CELERY_BROKER_TRANSPORT_OPTIONS, "
    "'db': s.DATABASES['default'].get('TEST', {}).get('NAME')}))"
)


def _settings_in_a_fresh_process(module: str, env: dict[str, str], tmp: Path) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RELSIM_", "DJANGO_"))}
    # TMPDIR: the run folder such a process makes for itself lands in the test's folder.
    tmp.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _PRINT],
        cwd=ROOT,
        env={
            **clean,
            **env,
            "DJANGO_SETTINGS_MODULE": module,
            "DATABASE_URL": "",
            "TMPDIR": str(tmp),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "broker", ["filesystem://", "redis://127.0.0.1:6379/0"], ids=["filesystem", "redis"]
)
def test_the_test_settings_ignore_the_running_instances_folders(
    tmp_path: Path, broker: str
) -> None:
    instance = {
        "RELSIM_DATA_DIR": str(tmp_path / "instance"),
        "RELSIM_BROKER_DIR": str(tmp_path / "instance" / "broker"),
        "CELERY_BROKER_URL": broker,
    }
    app = _settings_in_a_fresh_process("config.settings", instance, tmp_path / "tmp")
    tests = _settings_in_a_fresh_process("config.test_settings", instance, tmp_path / "tmp")

    assert app["data"] == str(tmp_path / "instance")  # the control: the app obeys them
    instance_dir = str(tmp_path / "instance")
    assert not str(tests["data"]).startswith(instance_dir)
    assert not str(tests["db"]).startswith(instance_dir)
    assert instance_dir not in json.dumps(tests["broker"])
    if broker.startswith("redis"):
        prefix = tests["broker"]["global_keyprefix"]  # type: ignore[index]
        assert str(prefix).startswith("relsim-test-")
        assert "global_keyprefix" not in app["broker"]  # type: ignore[operator]


def test_this_run_writes_under_its_own_folder() -> None:
    run_dir = Path(os.environ["RELSIM_TEST_RUN_DIR"])
    assert run_dir.name.startswith("relsim-test-")
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        if key in settings.CELERY_BROKER_TRANSPORT_OPTIONS:
            assert Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key])).is_relative_to(run_dir)
