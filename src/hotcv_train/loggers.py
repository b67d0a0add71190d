"""Where a run's numbers go: Lightning's CSV logger made safe for a metrics.csv that another
process already wrote, and lines meant for the run's log file (train.log) only."""

from __future__ import annotations

import csv
import logging
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _MergingWriter(ExperimentWriter):
    """Keeps the columns already in metrics.csv when it adds new ones.

    Under `ddp_spawn` the fit runs in spawned processes and the test in the parent, whose writer
    knows only its own keys: Lightning's rewrite then drops (and crashes on) the fit's columns.
    """

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            existing = reader.fieldnames or []
        self.metrics_keys[:] = sorted(set(existing) | set(fieldnames))
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(LightningCSVLogger):
    """`lightning.pytorch.loggers.CSVLogger` whose metrics.csv survives writers in two processes."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._experiment = _MergingWriter(log_dir=self.log_dir)
        return self._experiment


def log_to_files(logger: logging.Logger, msg: str, *args: Any, level: int = logging.INFO) -> None:
    """Log `msg` to the root logger's file handlers only (Hydra's train.log), not the console.

    For what the console already shows in its own form (the progress bar, the final metrics,
    an `error:` line), so that train.log alone tells what happened.
    """
    record = logger.makeRecord(logger.name, level, "(file)", 0, msg, args, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and level >= handler.level:
            handler.handle(record)
