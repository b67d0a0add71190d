"""Config fuzz: a wrong value for any key ends in one-line errors or a run, never a traceback.

For every scalar key of every task's composed config (tiny model and data), four values are
tried: a wrong type, zero, a negative and an absurd number. The config checks see all of them;
those the checks let through run for real (one batch of each stage) on the tiny data of one
task of each kind of datamodule, where most keys are shared.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from hotcv_train.checks import check_config
from hotcv_train.errors import UserError
from hotcv_train.run import run
from tests.conftest import CONF, compose_config
from tests.tiny import all_tasks

VALUES = ["abc", 0, -1, 10**9]
GROUPS = ("dataset", "module", "trainer", "callbacks", "logger")
RUN_KEYS = ("stage", "seed", "test_after_fit", "float32_matmul_precision", "monitor_mode")
# At runtime: the keys this project's code consumes (the data and the module) and the run's own.
# Trainer, logger and callback values go to Lightning, which validates them itself when the
# checks let them through; run, an absurd one could mean a hang (a billion nodes to wait for).
RUNTIME_GROUPS = ("dataset.", "module.", *RUN_KEYS)
SPAWNS = {"dataset.num_workers"}  # up to 128 processes pass the checks: not forked in a test
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def scalar_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys of the user's scalar settings (not Hydra's `_target_`, not copies `${...}`)."""
    found = []

    def walk(node: Any, prefix: str) -> None:
        for key in node:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if str(key).startswith("_") or OmegaConf.is_interpolation(node, str(key)):
                continue
            value = node._get_node(key)
            if OmegaConf.is_dict(value):
                walk(value, dotted)
            elif not OmegaConf.is_list(value):
                found.append(dotted)

    for group in GROUPS:
        if cfg.get(group):
            walk(cfg[group], group)
    return found + [k for k in RUN_KEYS if k in cfg]


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    changed = copy.deepcopy(cfg)
    OmegaConf.update(changed, key, value, merge=False, force_add=True)
    return changed


def one_line_problems(error: UserError) -> bool:
    return bool(error.problems) and all("\n" not in p and p.strip() for p in error.problems)


@pytest.fixture(scope="module")
def task_configs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("fuzz")
    setups = all_tasks()
    return {t: compose_config(out / t, f"task={t}", *setups[t](tiny_dir)) for t in TASKS}


def test_every_value_of_every_key_passes_or_fails_the_checks_in_one_line(task_configs) -> None:
    outcomes: Counter[str] = Counter()
    for task, cfg in task_configs.items():
        for key in scalar_keys(cfg):
            for value in VALUES:
                try:
                    check_config(with_value(cfg, key, value))
                    outcomes["passed the checks"] += 1
                except UserError as e:
                    assert one_line_problems(e), f"task={task} {key}={value!r}: {e.problems}"
                    outcomes["one-line error"] += 1
    print(f"\nconfig fuzz, checks: {dict(outcomes)}")  # the counts, for the closing note
    assert outcomes["one-line error"] > 0 and outcomes["passed the checks"] > 0


# One task per kind of datamodule: classification (trainable), images (eval-only).
@pytest.mark.parametrize("task", ["vit_cifar10", "clipseg_zeroshot"])
def test_values_the_checks_let_through_run_or_fail_in_one_line(
    task: str, task_configs, tmp_path: Path
) -> None:
    cfg = task_configs[task]
    outcomes: Counter[str] = Counter()
    for key in scalar_keys(cfg):
        if not key.startswith(RUNTIME_GROUPS) or key in SPAWNS:
            continue
        for value in VALUES:
            changed = with_value(cfg, key, value)
            try:
                check_config(changed)
            except UserError:
                continue  # the test above covers these
            OmegaConf.update(changed, "paths.output_dir", str(tmp_path / f"{key}={value}"))
            OmegaConf.update(changed, "trainer.fast_dev_run", True)
            try:
                run(changed)
                outcomes["ran"] += 1
            except UserError as e:
                assert one_line_problems(e), f"task={task} {key}={value!r}: {e.problems}"
                outcomes["one-line error"] += 1
            except Exception as e:  # a traceback a user would see
                pytest.fail(f"task={task} {key}={value!r}: {type(e).__name__}: {e}")
    print(f"\nconfig fuzz, runs of task={task}: {dict(outcomes)}")
    assert outcomes["ran"] > 0
