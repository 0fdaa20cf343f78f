"""Names a package exports from modules that are also commands (`python -m ml.relsim.train`):
loaded on first use, so that the command runs as a fresh module rather than as a copy of one
the package already imported."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports each of `names` (name -> module)
    when it is first asked for."""

    def module_getattr(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return module_getattr
