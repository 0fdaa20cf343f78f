"""Settings of the test suite: the project's settings with a data directory, broker folder
and Redis key prefix of the run's own, whatever the environment says, so that `make test`
never touches an instance that `make run` (or a deployment) is running beside it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_RUN_DIR = "RELSIM_TEST_RUN_DIR"
_RUN_OWNER = "RELSIM_TEST_RUN_OWNER"
# Under pytest-xdist each test process ("gw0", "gw1", ...) needs a run of its own; the
# folder its controller may have made is not it.
_PROCESS = os.environ.get("PYTEST_XDIST_WORKER", "")

if _RUN_DIR not in os.environ or os.environ.get(_RUN_OWNER, "") != _PROCESS:
    # The test process itself: a fresh folder for this run. Worker processes that the tests
    # start inherit it (and the exact paths the tests give them) through the environment.
    os.environ[_RUN_DIR] = tempfile.mkdtemp(prefix="relsim-test-")
    os.environ[_RUN_OWNER] = _PROCESS
    os.environ["RELSIM_DATA_DIR"] = str(Path(os.environ[_RUN_DIR]) / "data")
    for variable in ("RELSIM_BROKER_DIR", "RELSIM_IMPORT_ROOTS"):
        os.environ.pop(variable, None)

from config.settings import *  # noqa: E402, F403
from config.settings import CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_BROKER_URL  # noqa: E402

TEST_RUN_DIR = Path(os.environ[_RUN_DIR])

if not CELERY_BROKER_URL.startswith("filesystem://"):
    # A shared Redis (or AMQP vhost) is kept apart by prefixing every key with the run.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = f"relsim-test-{TEST_RUN_DIR.name}:"
