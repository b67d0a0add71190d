"""Tiny models and datasets in each job's real schema, built offline and saved to disk.

Each module of this package covers one kind of job and exports `TASKS`: task name -> a function
that builds (or reuses) tiny artifacts under a folder and returns the overrides that point the
task at them. `test_tasks.py` runs every `conf/task/*.yaml` through them, so a task without an
entry here fails the suite on the day its YAML lands.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

TaskSetup = Callable[[Path], list[str]]


def all_tasks() -> dict[str, TaskSetup]:
    tasks: dict[str, TaskSetup] = {}
    for info in pkgutil.iter_modules(__path__):
        tasks.update(importlib.import_module(f"{__name__}.{info.name}").TASKS)
    return tasks
