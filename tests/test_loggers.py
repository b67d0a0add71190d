"""CSV by default; TensorBoard and W&B (offline) on request; one W&B run per multirun job."""

from __future__ import annotations

from pathlib import Path

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


def test_wandb_offline_one_run_per_job_grouped_by_sweep(tiny_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "outputs"
    result = train_py(
        "-m",
        "task=vit_cifar10",
        "logger=wandb",
        "module.optimizer.lr=1e-3,3e-4",
        *classification_overrides(tiny_dir),
        f"paths.log_dir={log_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (log_dir / "vit_cifar10" / "multirun").iterdir()
    run_ids, groups = set(), set()
    for job in ("0", "1"):
        (offline,) = (sweep / job / "wandb").glob("offline-run-*")
        run_ids.add(offline.name.rsplit("-", 1)[-1])
        groups.add(OmegaConf.load(sweep / job / ".hydra" / "resolved.yaml").logger.wandb.group)
    assert len(run_ids) == 2  # a run of its own per job, not one shared run
    assert groups == {f"vit_cifar10/{sweep.name}"}
