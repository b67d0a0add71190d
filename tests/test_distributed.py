"""DDP with 2 CPU ranks and Hydra multiruns: one folder per run, every test sample seen once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, TEST_OVERRIDES, train_py
from tests.tiny.classification import classification_overrides

TEST_SAMPLES = 17  # odd, so 2 ranks get 9 and 8: padding would show up as 18


def run_folders(log_dir: Path) -> list[Path]:
    return sorted(p.parent for p in log_dir.rglob("metrics.json"))


def test_ddp_two_ranks_one_folder_and_exact_test(tiny_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "outputs"  # the default folder: runs start in tmp_path
    args = classification_overrides(tiny_dir)
    progress_bar = [  # as users run it (the suite turns it off): rank 1's bar is disabled
        "trainer.enable_progress_bar=true",
        "callbacks.progress_bar={_target_:hotcv_train.callbacks.ProgressBar,every_s:0.5}",
    ]
    result = train_py(
        "task=vit_cifar10",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        *args,
        *progress_bar,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    assert [p.name for p in (log_dir / "vit_cifar10").iterdir()] == [run_folders(log_dir)[0].name]
    (run_dir,) = run_folders(log_dir)
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["test/samples"] == TEST_SAMPLES

    # The reduced DDP metrics equal a single-process evaluation of the same weights.
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    single = train_py("task=vit_cifar10", "stage=test", f"ckpt_path={best}", *args, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    (one,) = [p for p in run_folders(log_dir) if p != run_dir]
    reference = json.loads((one / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "test/samples"):
        assert ddp[key] == pytest.approx(reference[key], abs=1e-5), key

    # ddp_spawn (the notebook way) hands the module over through shared memory: each rank must
    # count (and train) on its own copy, or every sum comes out once per rank.
    spawn = ["trainer.strategy=ddp_spawn", "trainer.devices=2", "trainer.accelerator=cpu"]
    result = train_py(
        "task=vit_cifar10", "stage=test", f"ckpt_path={best}", *args, *spawn, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (spawned,) = [p for p in run_folders(log_dir) if p not in (run_dir, one)]
    spawned_metrics = json.loads((spawned / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "test/samples"):
        assert spawned_metrics[key] == pytest.approx(reference[key], abs=1e-5), key


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_multirun_makes_one_folder_per_job(trainer: str, tiny_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "outputs"  # the default folder: runs start in tmp_path
    result = train_py(
        "-m",
        "task=vit_cifar10",
        f"trainer={trainer}",
        "module.optimizer.lr=1e-3,3e-4",
        *classification_overrides(tiny_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    (sweep,) = (
        log_dir / "vit_cifar10" / "multirun"
    ).iterdir()  # one sweep folder, not one per rank
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert run_folders(log_dir) == [sweep / "0", sweep / "1"]
    lrs = []
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["test/samples"] == TEST_SAMPLES
        resolved = OmegaConf.load(sweep / job / ".hydra" / "resolved.yaml")
        assert resolved.paths.output_dir == str(sweep / job)
        lrs.append(resolved.module.optimizer.lr)
    assert lrs == [1e-3, 3e-4]


def test_torchrun_ranks_share_one_run_folder(tiny_dir: Path, tmp_path: Path) -> None:
    """Ranks torchrun starts compose their own configs; the folder is named by the job id."""
    log_dir = tmp_path / "outputs"  # the default folder: runs start in tmp_path
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(ROOT / "train.py"),
        *TEST_OVERRIDES,
        "task=vit_cifar10",
        "trainer=ddp_cpu",
        *classification_overrides(tiny_dir),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    (run_dir,) = (log_dir / "vit_cifar10").iterdir()
    assert run_dir.name.startswith("torchrun-")
    assert run_folders(log_dir) == [run_dir]
    assert json.loads((run_dir / "metrics.json").read_text())["test/samples"] == TEST_SAMPLES
    # Each rank writes its own composed config and log instead of overwriting rank 0's.
    names = {p.name for p in run_dir.iterdir()}
    assert {".hydra", ".hydra_rank1", "train.log", "train_rank1.log"} <= names
