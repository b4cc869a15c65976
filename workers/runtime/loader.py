"""Find a worker's ``@worker`` definition in ``workers/<name>/main.py``. Folder names carry
hyphens (they are worker names), so the file is loaded by path under a private module name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from jobcontract import WORKER_NAME_RE
from workers.runtime.definition import WorkerDefinition

WORKERS_DIR = Path(__file__).resolve().parent.parent


class WorkerNotFound(LookupError):
    """No ``workers/<name>/main.py`` defining a ``@worker(name=<name>)``."""


def module_name(name: str) -> str:
    return "batch_worker_" + name.replace("-", "_")


def load_module(name: str, workers_dir: Path | None = None) -> ModuleType:
    """Import ``<workers_dir>/<name>/main.py`` once (cached in ``sys.modules``)."""
    if not WORKER_NAME_RE.match(name):
        raise WorkerNotFound(f"invalid worker name {name!r}")
    cached = sys.modules.get(module_name(name))
    if cached is not None and workers_dir is None:
        return cached
    path = (workers_dir or WORKERS_DIR) / name / "main.py"
    if not path.is_file():
        raise WorkerNotFound(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(module_name(name), path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise WorkerNotFound(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def load_worker(name: str, workers_dir: Path | None = None) -> WorkerDefinition:
    """The ``WorkerDefinition`` named ``name`` in its folder's ``main.py``."""
    module = load_module(name, workers_dir)
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, WorkerDefinition) and value.name == name
    ]
    if len(found) != 1:
        raise WorkerNotFound(f"{module.__file__} defines {len(found)} @worker({name!r})")
    return found[0]
