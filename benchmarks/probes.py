"""A Lightning callback that the benchmarks add to `train.py` runs to time them from the inside.

Added with an override (the benchmark module must be importable: `PYTHONPATH=<repo root>`):

    python train.py experiment=quickstart '+callbacks.probe={_target_: benchmarks.probes.Probe,
        path: /tmp/probe.json}'

It writes one JSON file when the run ends: seconds from process start (`BENCH_T0`, the
`time.time()` the benchmark took just before starting the process; else the process's creation
time) to each phase (callbacks built, setup, sanity check, first training step, end), the time
and epoch of every training step, RSS (and anonymous RSS) after every training epoch, and the predict window
(start, end, inputs) of eval-only runs.
"""

from __future__ import annotations

import json
import os
import time
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
    """

    def __init__(self, path: str):
        self.path = Path(path)
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
        self.data["predict"]["inputs"] += len(batch)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self.data["predict"]["end_s"] = time.time() - self.t0

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.mark(f"{getattr(stage, 'value', stage)}_end")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data))
