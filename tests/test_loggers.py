"""CSV by default; TensorBoard and W&B (offline) on request; one W&B run per multirun job."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hotcv_train.run import run
from tests.conftest import train_py
from tests.tiny.classification import classification_overrides


def test_csv_and_tensorboard_together(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    run(make_config("task=vit_cifar10", *classification_overrides(tiny_dir), "logger=many"))
    run_dir = tmp_path / "run"
    assert "test/acc" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"val/loss", "val/acc", "test/acc"} <= set(events.Tags()["scalars"])


def test_no_logger_still_writes_the_final_metrics(make_config, tiny_dir: Path, tmp_path: Path):
    """logger=none with the default callbacks: the learning-rate monitor has nothing to log to."""
    metrics = run(
        make_config("task=vit_cifar10", *classification_overrides(tiny_dir), "logger=none")
    )
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "metrics.json").read_text()) == pytest.approx(metrics)
    assert metrics["test/samples"] == 17 and not (run_dir / "csv").exists()


def test_wandb_offline_one_run_per_job_grouped_by_sweep(tiny_dir: Path, tmp_path: Path) -> None:
    result = train_py(
        "-m",
        "task=vit_cifar10",
        "logger=wandb",
        "module.optimizer.lr=1e-3,3e-4",
        *classification_overrides(tiny_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "vit_cifar10" / "multirun").iterdir()
    runs, groups, names = {}, set(), set()
    for job in ("0", "1"):
        offline = sorted((sweep / job / "wandb").glob("offline-run-*"))
        (runs[job],) = {p.name.rsplit("-", 1)[-1] for p in offline}  # one run id per job
        wandb_cfg = OmegaConf.load(sweep / job / ".hydra" / "resolved.yaml").logger.wandb
        groups.add(wandb_cfg.group)
        names.add(wandb_cfg.name)
    assert len(set(runs.values())) == 2  # a run of its own per job, not one shared run
    assert groups == {f"vit_cifar10/{sweep.name}"}
    assert {n for n in names if "module.optimizer.lr=0.001" in n or "lr=0.0003" in n} == names
    assert len(names) == 2  # each run is named by its job's overrides
    with open(sweep / "summary.csv") as f:
        (best,) = [row["job"] for row in csv.DictReader(f) if row["best"] == "*"]
    # The best job's run was reopened to add the tag `best` (a second offline segment, same id).
    assert len(list((sweep / best / "wandb").glob("offline-run-*"))) == 2
    assert f"tagged W&B run {runs[best]} 'best'" in result.stdout
