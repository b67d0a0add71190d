"""The GPU recipe: no host-device sync inside a training step (checked anywhere), and on a CUDA
device every task in bf16-mixed, torch.compile and channels-last.

CI has no GPU, so the device tests skip there; run them where one is: `pytest -m gpu`.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
from torch.overrides import TorchFunctionMode

from hotcv_train.run import run
from tests.test_tasks import TASK_NAMES
from tests.tiny import all_experiments, all_tasks


def gpu(test: Any) -> Any:
    test = pytest.mark.gpu(test)
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test)


# conf/trainer/gpu.yaml's keys (the tests' own overrides already chose trainer=cpu)
GPU = ["trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed"]


def run_on_gpu(cfg) -> dict[str, float]:
    """`run(cfg)`, checking that it used the GPU and that every metric is finite."""
    torch.cuda.reset_peak_memory_stats()
    metrics = run(cfg)
    assert torch.cuda.max_memory_allocated() > 0, "nothing was put on the GPU"
    assert metrics, "a run must report metrics"
    assert all(math.isfinite(v) for v in metrics.values()), f"non-finite metric in {metrics}"
    return metrics


@gpu
@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_on_gpu(task: str, make_config, tiny_dir: Path) -> None:
    cfg = make_config(f"task={task}", *all_tasks()[task](tiny_dir), "debug=limit", *GPU)
    run_on_gpu(cfg)


@gpu
@pytest.mark.parametrize("task", ["glpn_nyu", "detr_plates"])
def test_channels_last_on_gpu(task: str, make_config, tiny_dir: Path) -> None:
    setup = all_tasks()[task](tiny_dir)
    run_on_gpu(
        make_config(f"task={task}", *setup, "debug=limit", "module.channels_last=true", *GPU)
    )


@gpu
def test_quickstart_learns_in_bf16(make_config) -> None:
    metrics = run_on_gpu(make_config("experiment=quickstart", *GPU, "trainer.max_epochs=30"))
    assert metrics["test/acc"] >= 0.95, metrics  # 0.983 in fp32 on the CPU; chance is 0.1


@gpu
def test_compiled_model_learns(make_config) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    cfg = make_config("experiment=quickstart", *GPU, "module.compile=true", "trainer.max_epochs=5")
    metrics = run_on_gpu(cfg)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "nothing was compiled"
    assert metrics["test/acc"] >= 0.5, metrics  # chance is 0.1


# Tensor reads that make the host wait for an accelerator to finish its queued work, and ops
# whose output size depends on the values (the host must read it before allocating).
SYNCS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}
SYNCS |= {"unique", "unique_consecutive", "nonzero", "argwhere", "masked_select", "bincount"}
# Where a read is fine: on the CPU before the batch moves (the DataLoader, the draws of
# `draw_boxes`), and the NaN guard, which on the CPU reads every step (on a GPU every
# `log_every_n_steps`).
ALLOWED = ("on_before_batch_transfer", "_check_finite", "torch/utils/data")


class CountSyncs(TorchFunctionMode):
    """Records where each tensor read of `SYNCS` came from."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in SYNCS:
            stack = traceback.extract_stack()[:-1]
            if not any(a in f.filename or a == f.name for f in stack for a in ALLOWED):
                self.sites.append(
                    " < ".join(f"{Path(f.filename).name}:{f.name}" for f in stack[-4:])
                )
        return func(*args, **(kwargs or {}))


class WatchSteps(L.Callback):
    """Counts reads from the start of step 2 to the start of step 6: steps that log nothing."""

    found: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.mode: CountSyncs | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 2:
            self.mode = CountSyncs()
            self.mode.__enter__()
        elif batch_idx == 6 and self.mode is not None:
            self.mode.__exit__(None, None, None)
            WatchSteps.found[:] = ["done", *self.mode.sites]
            self.mode = None


@pytest.mark.parametrize("experiment", ["quickstart", "depth_synthetic", "video_synthetic"])
def test_training_steps_never_wait_for_the_device(
    experiment: str, make_config, tiny_dir: Path
) -> None:
    """On a GPU every read of a device tensor stops the host until the device's queue is empty:
    between log steps, training steps read nothing back (batched device transforms, losses,
    train metrics). Not DETR: transformers' loss matches boxes on the CPU (scipy), by design."""
    WatchSteps.found.clear()
    cfg = make_config(
        f"experiment={experiment}",
        *all_experiments()[experiment](tiny_dir),
        "dataset.batch_size=2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=0",
        "trainer.log_every_n_steps=50",
        "test_after_fit=false",
        "+callbacks.watch={_target_: tests.test_gpu.WatchSteps}",
    )
    run(cfg)
    assert WatchSteps.found[:1] == ["done"], "the watched steps did not run"
    assert WatchSteps.found[1:] == [], "\n".join(WatchSteps.found[1:])
