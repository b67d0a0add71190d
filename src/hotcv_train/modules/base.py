"""What every trainable module shares: optimizer/scheduler wiring, loss logging, a NaN guard."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection, SumMetric

from hotcv_train.errors import NonFiniteLossError, UserError

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test", "predict")


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, num_training_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then cosine decay to zero.

    The warmup is a ratio, not a step count, so one config fits any dataset size and epoch count.
    """
    from transformers import get_cosine_schedule_with_warmup

    warmup = math.ceil(warmup_ratio * num_training_steps)
    return get_cosine_schedule_with_warmup(optimizer, warmup, num_training_steps)


def mean() -> MeanMetric:
    """A running mean without torchmetrics' NaN check: the check reads the value back from the
    device at every update (the host waits for the device each step), and a NaN must show in the
    mean, not be dropped from it."""
    return MeanMetric(nan_strategy="disable")


def total() -> SumMetric:
    """A running sum without the NaN check (see `mean`)."""
    return SumMetric(nan_strategy="disable")


class TaskModule(L.LightningModule):
    """Runs `step` for train/val/test and logs `<stage>/loss`; subclasses add a model and metrics.

    Args:
        optimizer: Partial optimizer, called with the parameters to train.
        scheduler: Partial scheduler, called with the optimizer and `num_training_steps`;
            stepped every optimizer step. Null for a constant learning rate.
        compile: Compile `self.model` with torch.compile (in place, so checkpoints keep their
            keys): faster steps on a GPU after a slower first one.
        channels_last: Keep the model's weights and the batch's images (N, C, H, W) in the
            channels-last layout, which convolutions run fastest in on GPUs (tensor cores) and
            in oneDNN on CPUs; leave off for transformers without convolutions.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        compile: bool,
        channels_last: bool,
    ):
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.compile_model, self.channels_last = compile, channels_last
        self._nonfinite: torch.Tensor | None = None
        self.last_loss: torch.Tensor | None = None  # the last step's, for the progress bar
        self.train_loss, self.val_loss, self.test_loss = mean(), mean(), mean()
        # How many samples an evaluation saw, summed over ranks: proof that none was dropped
        # or counted twice when the data was sharded.
        self.val_samples, self.test_samples = total(), total()
        # Inputs the loader could not decode (a batch's `skipped`: `collate_counting`), summed
        # over ranks. Keyed "<stage>_": a ModuleDict key cannot be "train" (nn.Module.train).
        self.skipped = nn.ModuleDict({f"{s}_": total() for s in STAGES})

    def setup(self, stage: str) -> None:
        """ddp_spawn hands the module to each rank through shared memory: on the CPU every rank
        would step the same weights and add into the same metric states (test/samples came out
        doubled). Each rank takes its own copy before anything trains or counts."""
        for tensor in [*self.parameters(), *self.buffers()]:
            if tensor.is_shared():
                tensor.data = tensor.data.clone()
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        """Loss of one batch; update `stage`'s metrics on the way."""
        raise NotImplementedError

    @property
    def plots_dir(self) -> Path:
        """Where pictures go: `<run folder>/plots`."""
        path = Path(self.trainer.default_root_dir) / "plots"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def configure_model(self) -> None:
        if self.channels_last and not getattr(self, "_channels_last", False):
            self.model.to(memory_format=torch.channels_last)
            self.model.register_forward_pre_hook(_images_channels_last, with_kwargs=True)
            self._channels_last = True
        if self.compile_model and not getattr(self, "_compiled", False):
            self.model.compile()
            self._compiled = True

    def count_skipped(self, batch: dict | None, stage: str) -> bool:
        """Add the batch's undecodable inputs to `<stage>/skipped`; whether nothing is left."""
        if batch is not None and "skipped" in batch:
            metric = self.skipped[f"{stage}_"]
            metric.update(batch["skipped"])
            if stage != "predict":
                self.log_epoch({f"{stage}/skipped": metric})
        return batch is None or "pixel_values" not in batch

    def warn_skipped(self, stage: str) -> None:
        """Once an epoch: how many inputs were skipped (each was named in a warning)."""
        metric = self.skipped[f"{stage}_"]
        if not metric.update_called:
            return
        skipped = int(metric.compute())  # synced over ranks; Lightning logs and resets it
        if stage == "predict":
            metric.reset()
        if skipped and self.trainer.is_global_zero:
            log.warning("%s: skipped %d undecodable input(s) (named above)", stage, skipped)

    def on_train_epoch_end(self) -> None:
        self.warn_skipped("train")

    def on_validation_epoch_end(self) -> None:
        self.warn_skipped("val")

    def on_test_epoch_end(self) -> None:
        self.warn_skipped("test")

    def on_predict_epoch_end(self) -> None:
        self.warn_skipped("predict")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if self.count_skipped(batch, "train"):
            return None  # every input of this batch was undecodable
        loss = self.step(batch, "train")
        self._check_finite(loss, batch_idx)
        self.last_loss = loss.detach()
        if self._logs_step_loss(batch_idx):
            # Not prog_bar=True: Lightning would read it back from the device after every
            # batch; `callbacks.ProgressBar` reads `last_loss` when it redraws.
            self.log("train/loss", loss, on_step=True, on_epoch=False)
        self.train_loss.update(self.last_loss)
        self.log_epoch({"train/loss_epoch": self.train_loss})
        return loss

    def _logs_step_loss(self, batch_idx: int) -> bool:
        """Whether to `self.log` this step's `train/loss`: on the steps Lightning writes step
        values to the loggers (every `trainer.log_every_n_steps`), and on each epoch's first
        and last steps and the run's last (`max_steps`), so callbacks always find it and read
        the last step's at an epoch's end. A `self.log` costs ~0.8 ms of Python (4 % of the
        quickstart's step); on the other steps nothing would read it.
        """
        trainer = self.trainer
        if trainer.fast_dev_run or batch_idx == 0 or trainer.is_last_batch:
            return True
        if 0 < trainer.max_steps <= trainer.global_step + 1:
            return True
        # Lightning's own test (private; if it moves, log every step as before)
        return getattr(trainer._logger_connector, "should_update_logs", True)

    def log_epoch(
        self,
        metrics: Mapping[str, Metric] | MetricCollection,
        prog_bar: bool | Container[str] = False,
    ) -> None:
        """Log the epoch values of torchmetrics objects; call it after each update of `metrics`.

        Lightning keeps a logged Metric, computes it when the epoch ends and resets it, so one
        `self.log` per epoch is enough: it is made at the first update since the last reset.
        Each call costs ~1.5 ms of Python (Lightning walks its metadata); five per step were
        15 % of the quickstart's step. `prog_bar`: show all, or the names it holds.
        """
        if isinstance(metrics, MetricCollection):  # the members, as Lightning's log_dict takes them
            metrics = dict(metrics.items(keep_base=False, copy_state=False))
        if any(metric.update_count == 1 for metric in metrics.values()):
            for name, metric in metrics.items():
                shown = prog_bar if isinstance(prog_bar, bool) else name in prog_bar
                self.log(name, metric, on_step=False, on_epoch=True, prog_bar=shown)

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop at a NaN/inf loss: every later step would be wasted.

        Reading the loss makes the host wait for the device, so on an accelerator a flag
        accumulates on the device and is read every `log_every_n_steps` steps (when Lightning
        reads the logged loss anyway); on the CPU it is read every step.
        """
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        # log_every_n_steps=0 (no step logging): read every step.
        every = 1 if loss.device.type == "cpu" else max(self.trainer.log_every_n_steps, 1)
        if (batch_idx + 1) % every:
            return
        if bool(self._nonfinite):
            within = f" (first non-finite within the last {every} steps)" if every > 1 else ""
            raise NonFiniteLossError(
                f"train/loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step} (batch {batch_idx}){within}; lower module.optimizer.lr, "
                "set trainer.gradient_clip_val, or check the data; the last good weights are "
                "in checkpoints/"
            )
        self._nonfinite = None

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_step(self, batch: dict, stage: str) -> None:
        if self.count_skipped(batch, stage):
            return
        loss = self.step(batch, stage)
        mean, count = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_samples")
        mean.update(loss, weight=_batch_size(batch))
        count.update(_batch_size(batch))
        self.log_epoch({f"{stage}/loss": mean}, prog_bar=stage == "val")
        self.log_epoch({f"{stage}/samples": count})

    def parameter_groups(self) -> list[Any]:
        """What the optimizer trains: parameters, or groups with settings of their own (`lr`)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        try:
            optimizer = self.optimizer_factory(self.parameter_groups())
        except (ValueError, TypeError) as e:  # torch's checks: lr < 0, betas outside [0, 1) ...
            raise UserError(f"module.optimizer: {e}") from None
        if self.scheduler_factory is None:
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps):  # max_epochs=-1, or a loader without a length
            raise UserError(
                "module.scheduler: needs a finite number of training steps; set "
                "trainer.max_steps=N (or trainer.max_epochs=N with a sized dataset), or "
                "module.scheduler=null (a constant learning rate)"
            )
        steps = int(steps)
        scheduler = self.scheduler_factory(optimizer, num_training_steps=steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _images_channels_last(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: the model's (N, C, H, W) float inputs in the channels-last layout."""

    def layout(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point():
            return x.contiguous(memory_format=torch.channels_last)
        return x

    return tuple(layout(a) for a in args), {k: layout(v) for k, v in kwargs.items()}


def _batch_size(batch: dict) -> int:
    return len(next(iter(batch.values())))
