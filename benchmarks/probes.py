"""A Lightning callback that the benchmarks add to `train.py` runs to time them from the inside.

Added with an override (the benchmark module must be importable: `PYTHONPATH=<repo root>`):

    python train.py experiment=quickstart '+callbacks.probe={_target_: benchmarks.probes.Probe,
        path: /tmp/probe.json}'

It writes one JSON file when the run ends: seconds from process start (`BENCH_T0`, the
`time.time()` the benchmark took just before starting the process; else the process's creation
time) to each phase (callbacks built, setup, sanity check, first training step, end), the time
and epoch of every training step, RSS (and anonymous RSS) after every training epoch, and the predict window
(start, end, inputs) of eval-only runs. With `parts: true` it also times the pieces of each
training step (`StepParts`): where `train.py`'s time goes, next to the plain loop's own timings.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L


def process_start() -> float:
    """Wall-clock time this process started: `BENCH_T0` when the benchmark set it."""
    if "BENCH_T0" in os.environ:
        return float(os.environ["BENCH_T0"])
    try:
        import psutil

        return psutil.Process().create_time()
    except ImportError:
        return time.time()  # no better reference: start-up reads as 0


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def anon_mb() -> float | None:
    """Anonymous resident memory (heap, tensors) in MiB: what a leak grows. Unlike RSS it leaves
    out mapped library files, whose pages come and go with the page cache. Linux only."""
    try:
        with open("/proc/self/status") as f:
            line = next((x for x in f if x.startswith("RssAnon:")), None)
    except OSError:
        return None
    return int(line.split()[1]) / 1024 if line else None


class Probe(L.Callback):
    """Records step times, per-epoch RSS and predict throughput; writes them to `path` as JSON.

    Args:
        path: JSON file to write when the run ends (fit, test or predict).
        parts: Also time the pieces of every training step (`StepParts`; a few µs a step).
    """

    def __init__(self, path: str, parts: bool = False):
        self.path = Path(path)
        self.parts = StepParts() if parts else None
        self.t0 = process_start()
        # marks: seconds from process start to each phase (the first time it is reached)
        self.data: dict[str, Any] = {
            "marks": {},
            "steps": [],
            "epoch_rss_mb": [],
            "epoch_anon_mb": [],
            "predict": {},
        }
        self.mark("callbacks_built")  # run.py builds callbacks after the data and the module

    def mark(self, name: str) -> float:
        now = time.time() - self.t0
        self.data["marks"].setdefault(name, now)
        return now

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.mark(f"{getattr(stage, 'value', stage)}_setup")  # Lightning passes a str enum
        if self.parts is not None and stage == "fit":
            self.parts.install(trainer, pl_module)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.mark("fit_start")

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self.mark("sanity_check_start")

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        self.mark("sanity_check_end")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = self.mark("first_step")
        self.data["steps"].append([now, trainer.current_epoch])  # [seconds, epoch]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # after this epoch's validation (Lightning 2 runs it before this hook)
        self.data["epoch_rss_mb"].append(rss_mb())
        self.data["epoch_anon_mb"].append(anon_mb())

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self.data["predict"] = {"start_s": self.mark("predict_start"), "inputs": 0}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        self.data["predict"]["inputs"] += count_inputs(batch)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self.data["predict"]["end_s"] = time.time() - self.t0

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.mark(f"{getattr(stage, 'value', stage)}_end")
        if self.parts is not None and stage == "fit":
            self.parts.remove()
            self.data["parts_ms"] = self.parts.per_step_ms()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))


def count_inputs(batch: Any) -> int:
    """Inputs in a predict batch: eval-only tasks batch `{"samples": [...], "skipped": n}`
    (`images.collate_list`); otherwise the length of its first tensor or list."""
    if isinstance(batch, dict):
        if "samples" in batch:
            return len(batch["samples"]) + int(batch.get("skipped", 0))
        batch = next((v for v in batch.values() if hasattr(v, "__len__")), [])
    return len(batch)


class StepParts:
    """Wall time of the pieces of each training step, per epoch, by wrapping the functions that
    do them (Lightning's loop, the module's step, the model, `Tensor.backward`). Only calls made
    while the trainer is training count (validation calls the same transfer and forward).

    `per_step_ms()`: ms per step of each piece, averaged over epochs 1.. (epoch 0 fills caches),
    in the plain loop's categories (`overhead.plain_loop` times its own the same way).
    """

    def __init__(self) -> None:
        self.seconds: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.steps: dict[int, int] = defaultdict(int)
        self.undo: list[Callable[[], None]] = []

    def install(self, trainer: Any, pl_module: Any) -> None:
        import torch
        from lightning.pytorch.loops.fetchers import _PrefetchDataFetcher
        from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
        from lightning.pytorch.strategies import Strategy

        self.trainer = trainer
        self.wrap(_TrainingEpochLoop, "advance", "cycle", count=True)
        self.wrap(_PrefetchDataFetcher, "__next__", "fetch")
        self.wrap(Strategy, "batch_to_device", "transfer")
        self.wrap(Strategy, "optimizer_step", "optimizer_step")
        self.wrap(pl_module, "training_step", "training_step")
        self.wrap(pl_module, "log", "log")
        self.wrap(torch.Tensor, "backward", "backward")
        model = getattr(pl_module, "model", None)
        if isinstance(model, torch.nn.Module):
            self.wrap(model, "forward", "forward")

    def wrap(self, owner: Any, name: str, part: str, count: bool = False) -> None:
        original = getattr(owner, name)
        had_own = isinstance(owner, type) or name in vars(owner)
        seconds, steps, trainer = self.seconds, self.steps, self.trainer

        @functools.wraps(original)  # Lightning inspects hook signatures
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not trainer.training:
                return original(*args, **kwargs)
            epoch = trainer.current_epoch  # read first: the call may end the epoch
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[epoch][part] += time.perf_counter() - start
                if count:
                    steps[epoch] += 1

        setattr(owner, name, timed)
        if had_own:
            self.undo.append(lambda: setattr(owner, name, original))
        else:  # an instance's bound method: drop the wrapper, the class's method shows again
            self.undo.append(lambda: delattr(owner, name))

    def remove(self) -> None:
        while self.undo:
            self.undo.pop()()

    def per_step_ms(self) -> dict[str, float]:
        epochs = [e for e in self.seconds if e >= 1 and self.steps[e]] or list(self.seconds)
        steps = sum(self.steps[e] for e in epochs)
        if not steps:
            return {}
        s = {k: 1000 * sum(self.seconds[e][k] for e in epochs) / steps for k in PART_KEYS}
        step_other = s["training_step"] - s["forward"]
        return {
            "fetch": s["fetch"],
            "transfer_and_batch_hooks": s["transfer"],
            "forward": s["forward"],
            "loss_metrics_logging": step_other,
            "of_which_self_log": s["log"],
            "backward": s["backward"],
            # the optimizer's own step, zero_grad and Lightning's closure around the two above
            "optimizer": s["optimizer_step"] - s["training_step"] - s["backward"],
            "loop_and_callbacks": s["cycle"] - s["fetch"] - s["transfer"] - s["optimizer_step"],
            "step": s["cycle"],
        }


PART_KEYS = (
    "cycle",
    "fetch",
    "transfer",
    "optimizer_step",
    "training_step",
    "log",
    "backward",
    "forward",
)
