"""Callbacks the run folder relies on: training-curve plots, a checkpoint on interruption, a
progress bar that costs nothing per step."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from hotcv_train.checks import Range
from hotcv_train.errors import BadSample, UserError
from hotcv_train.loggers import log_to_files

log = logging.getLogger(__name__)


class TrainingCurves(L.Callback):
    """Records every epoch-level train/val metric and plots them to `plots/training_curves.png`.

    A redraw costs ~0.3 s of matplotlib, as much as a short epoch: the picture is redrawn at most
    every `every_s` seconds while training, and always when fit ends.
    """

    def __init__(
        self, filename: str = "training_curves.png", every_s: Annotated[float, Range(0)] = 30.0
    ):
        self.filename, self.every_s = filename, every_s
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._drawn_at = float("-inf")

    def _record(self, trainer: L.Trainer, prefix: str) -> None:
        if trainer.sanity_checking:
            return
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix) and value.numel() == 1 and not key.endswith("_step"):
                points = self.history.setdefault(key, [])
                points[:] = [p for p in points if p[0] != trainer.current_epoch]
                points.append((trainer.current_epoch, float(value)))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drawn_at = time.monotonic()  # first picture after `every_s`: a short fit draws once

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "train/")
        if time.monotonic() - self._drawn_at >= self.every_s:
            self._plot(trainer)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "val/")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer)

    def _plot(self, trainer: L.Trainer) -> None:
        self._drawn_at = time.monotonic()
        if trainer.is_global_zero and self.history:
            from hotcv_train import plots

            # "train/loss" is logged per step; its epoch mean is "train/loss_epoch".
            history = {k: v for k, v in self.history.items() if k != "train/loss"}
            plots.training_curves(history, Path(trainer.default_root_dir) / "plots" / self.filename)


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C, SIGTERM or a crash mid-fit, save the weights and say how to resume.

    Not Lightning's OnExceptionCheckpoint: its presence turns every `fit(ckpt_path=None)` into
    `fit(ckpt_path="last")`, with warnings on each fresh run.
    """

    def __init__(self, dirpath: str, filename: str):
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A config or NaN problem: those weights are not worth resuming from. One bad file
        # (BadSample) is: once it is fixed, the run goes on from where it stopped.
        if trainer.state.fn != "fit" or (
            isinstance(exception, UserError) and not isinstance(exception, BadSample)
        ):
            return
        if trainer.global_step == 0 or not (
            trainer.training or trainer.validating or trainer.sanity_checking
        ):
            return  # nothing trained yet, or restoring a checkpoint failed: nothing to save
        trainer.save_checkpoint(self.ckpt_path)
        if trainer.is_global_zero:  # a log line (console and train.log), not a Python warning
            from hotcv_train.sweeps import in_multirun

            # A sweep's job is resumed by resuming the sweep, which says how (sweeps.run_job).
            hint = "" if in_multirun() else f"; resume with ckpt_path={self.ckpt_path}"
            what = type(exception).__name__
            what = {"KeyboardInterrupt": "Ctrl-C", "SIGTERMException": "SIGTERM"}.get(what, what)
            log.warning(
                "%s in %s (step %d): saved %s%s",
                what,
                epoch_of(trainer),
                trainer.global_step,
                self.ckpt_path,
                hint,
            )


class CtrlCStops(L.Callback):
    """Ctrl-C stops the run even when the KeyboardInterrupt it raises is lost.

    Python raises it wherever the main thread happens to be; inside a `__del__`, a weakref or
    GC callback or a C extension's callback it is only printed ("Exception ignored in ...")
    and training went on, so a Ctrl-C sometimes did nothing. Each Ctrl-C is also recorded,
    and a recorded one is raised again at the next batch boundary, where Lightning's graceful
    shutdown (and `SaveOnInterrupt`) takes it. Always on: `run.py` adds it.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.pressed = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning ignores further Ctrl-Cs while it shuts down: leave its handler in place.
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def _raise_if_pressed(self, *args: Any) -> None:
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt

    on_train_batch_start = on_train_batch_end = _raise_if_pressed
    on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_pressed


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, redrawn at most every `every_s` seconds; plain log lines
    when the output is not a terminal.

    Lightning's recomputes every logged metric and repaints after each batch: ~5 ms a step,
    10 % of the quickstart's training time on 2 cores. The last batch of a loop is always shown.
    Piped to a file (nohup, SLURM, `| tee`) a rich bar shows nothing until the loop ends: there
    it logs a line at most every `log_every_s` seconds instead. Either way each epoch ends with a
    line of its metrics, which also goes to the run's train.log.
    """

    def __init__(
        self,
        every_s: Annotated[float, Range(0)] = 0.5,
        log_every_s: Annotated[float, Range(0)] = 60.0,
        **kwargs: Any,
    ):
        # Its repaint thread wakes `refresh_rate` times a second (100 by default) for the GIL.
        kwargs.setdefault("refresh_rate", max(1, round(1 / every_s)) if every_s else 100)
        super().__init__(**kwargs)
        self.every_s, self.log_every_s = every_s, log_every_s
        self._shown_at = float("-inf")
        self._start()
        self.plain = not is_terminal()

    @property
    def is_enabled(self) -> bool:  # the rich bar; plain lines are written by the hooks below
        return not self.plain and super().is_enabled

    def get_metrics(self, trainer: L.Trainer, pl_module: Any) -> dict[str, Any]:
        """Lightning's progress-bar metrics and the last step's `train/loss`, read from the
        device only here, when a line or a redraw shows it (see `TaskModule.training_step`)."""
        metrics = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_loss", None)
        if not isinstance(loss, torch.Tensor):  # a module of another kind: what it logged
            loss = trainer.callback_metrics.get("train/loss")
        if isinstance(loss, torch.Tensor):
            metrics["train/loss"] = loss.item()
        return metrics

    def _due(self, batch_idx: int, total: float) -> bool:
        now = time.monotonic()
        if batch_idx + 1 < total and now - self._shown_at < self.every_s:
            return False
        self._shown_at = now
        return True

    def _log_line(self, trainer: L.Trainer, what: str, batch_idx: int, total: float) -> None:
        """A plain progress line when one is due: `epoch 3/30 20/41 batches, 7.6 it/s, ...`."""
        now = time.monotonic()
        if not self.plain or not trainer.is_global_zero or now - self._logged_at < self.log_every_s:
            return
        self._logged_at = now
        rate = self._batches / max(now - self._started_at, 1e-9)
        line = f"{what} {batch_idx + 1}/{total if total != float('inf') else '?'} batches"
        if trainer.training:  # the step's own metrics: the last validation's show at epoch end
            metrics = self.get_metrics(trainer, None)
            line += metrics_text({k: v for k, v in metrics.items() if not k.startswith("val/")})
        log.info("%s, %.2f it/s", line, rate)

    def _start(self) -> None:
        """A loop starts: batches and time are counted from here (for rates and epoch lines)."""
        self._started_at = self._logged_at = time.monotonic()
        self._batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._start()  # a resumed run's first epoch starts mid-way, with no epoch start hook
        super().on_train_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._start()
        super().on_train_epoch_start(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._start()
        super().on_test_start(trainer, pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._start()
        super().on_predict_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._started_at
        steps = f"{self._batches} steps in {seconds:.1f} s"
        line = f"{epoch_of(trainer)}: {steps}{metrics_text(self.get_metrics(trainer, pl_module))}"
        if self.plain:
            log.info(line)
        else:  # the bar shows it on the console
            log_to_files(log, line)

    # Lightning passes (outputs, batch, batch_idx[, dataloader_idx]) after trainer and module.
    # On ranks > 0 the bar is disabled and its batch totals are never set: nothing to show.
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self._batches += 1
        self._log_line(trainer, epoch_of(trainer), args[2], self.total_train_batches)
        if not self.is_disabled and self._due(args[2], self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, *args)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if not self.is_disabled and self._due(args[2], self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, *args)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self._batches += 1
        total = trainer.num_test_batches[args[3] if len(args) > 3 else 0]
        self._log_line(trainer, "testing", args[2], total)
        if not self.is_disabled and self._due(args[2], self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, *args)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self._batches += 1
        total = trainer.num_predict_batches[args[3] if len(args) > 3 else 0]
        self._log_line(trainer, "predicting", args[2], total)
        if not self.is_disabled and self._due(
            args[2], self.total_predict_batches_current_dataloader
        ):
            super().on_predict_batch_end(trainer, pl_module, *args)


def epoch_of(trainer: L.Trainer) -> str:
    """`epoch 3/30`: counted from 1 for people (checkpoint names keep Lightning's count from 0)."""
    of = f"/{trainer.max_epochs}" if (trainer.max_epochs or -1) > 0 else ""
    return f"epoch {trainer.current_epoch + 1}{of}"


def is_terminal() -> bool:
    """Whether rich draws live on stdout (a terminal or a notebook; FORCE_TERMINAL is honoured)."""
    from rich.console import Console

    console = Console()
    return console.is_terminal or console.is_jupyter


def metrics_text(metrics: dict[str, Any]) -> str:
    """`, train/loss 0.512, val/acc 0.913`: the progress-bar metrics as a log line's tail."""
    shown = [(k, v) for k, v in sorted(metrics.items()) if k != "v_num" and not k.endswith("_step")]
    return "".join(
        f", {k} {v:.4g}" if isinstance(v, (int, float)) else f", {k} {v}" for k, v in shown
    )
