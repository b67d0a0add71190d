"""Fixtures: the real config composed with test overrides, and tiny models/data on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# Tiny models on a small (2-core, often shared) machine: a second OpenMP thread per process only
# contends for the cores, making these runs several times slower. Subprocesses inherit this.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

# Small, CPU-only, quiet: what every in-process and subprocess test run adds.
TEST_OVERRIDES = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "dataset.num_workers=0",
]


def compose_config(output_dir: Path, *overrides: str) -> DictConfig:
    """The config `train.py` would run, with `output_dir` standing in for Hydra's run folder."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                *TEST_OVERRIDES,
                f"paths.root_dir={ROOT}",
                f"paths.log_dir={output_dir.parent}",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """`make_config(*overrides)` composes into `tmp_path/run`."""
    return lambda *overrides: compose_config(tmp_path / "run", *overrides)


def train_py(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python train.py` in a subprocess, as a user would (for DDP, multirun, exit codes)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    flags = [a for a in args if a.startswith("-")]  # e.g. -m: argparse wants it first
    overrides = [a for a in args if not a.startswith("-")]
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags, *TEST_OVERRIDES, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def newest_run(cwd: Path, task_name: str) -> Path:
    """The newest run folder of `task_name` that `train.py` started in `cwd` made, in the default
    place (`outputs/<task>/<timestamp>[_n]`): tests find their runs the way a user does."""
    runs = sorted(p for p in (cwd / "outputs" / task_name).glob("*") if p.name != "multirun")
    assert runs, f"no run folder under {cwd / 'outputs' / task_name}"
    return runs[-1]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder where tiny models and datasets are saved once and reused."""
    return tmp_path_factory.mktemp("tiny")
