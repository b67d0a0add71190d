"""Tiny models and datasets in each job's real schema, built offline and saved to disk.

Each module of this package covers one kind of job and exports `TASKS`: task name -> a function
that builds (or reuses) tiny artifacts under a folder and returns the overrides that point the
task at them. `test_tasks.py` runs every `conf/task/*.yaml` through them, so a task without an
entry here fails the suite on the day its YAML lands. `EXPERIMENTS` (optional) does the same for
`conf/experiment/*.yaml`: overrides that make an offline recipe small (fewer generated samples);
`test_readme.py` appends them to README lines that name the experiment.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

TaskSetup = Callable[[Path], list[str]]


def _collect(name: str) -> dict[str, TaskSetup]:
    found: dict[str, TaskSetup] = {}
    for info in pkgutil.iter_modules(__path__):
        found.update(getattr(importlib.import_module(f"{__name__}.{info.name}"), name, {}))
    return found


def all_tasks() -> dict[str, TaskSetup]:
    return _collect("TASKS")


def all_experiments() -> dict[str, TaskSetup]:
    return _collect("EXPERIMENTS")
