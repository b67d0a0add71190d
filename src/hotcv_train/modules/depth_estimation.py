"""Monocular depth estimation: any `AutoModelForDepthEstimation` that predicts metres (GLPN, ...)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from hotcv_train.checks import NonNegative, Positive
from hotcv_train.errors import UserError
from hotcv_train.metrics.depth import depth_metrics, valid_depth
from hotcv_train.models import ModelSpec, build_model
from hotcv_train.modules.base import TaskModule, total

log = logging.getLogger(__name__)

# Eigen et al.'s evaluation crop of the 480x640 NYU frame (rows 45:471, columns 41:601), as
# fractions so it also applies to a resized frame.
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)
TRAIN_METRICS = ("abs_rel", "rmse", "delta1")  # the headline numbers; all eight in val/test
PROGRESS_BAR = ("/abs_rel", "/delta1")


def silog_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, lambd: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant log loss (Eigen et al., 2014) per sample over its valid pixels.

    Returns the mean over samples with at least one valid pixel and how many had none (a 0-dim
    tensor: nothing here reads a value back, which would make the host wait for the device).
    Invalid pixels never enter a log, so 0 or NaN depth cannot make the loss NaN; a batch with
    nothing valid gives a zero that stays connected to the graph, so DDP's gradient sync runs.
    """
    count = valid.flatten(1).sum(1)
    has_pixels = (count > 0).to(pred.dtype)
    safe_target = torch.where(valid, target, torch.ones_like(target))
    diff = torch.where(valid, pred.log() - safe_target.log(), torch.zeros_like(pred)).flatten(1)
    n = count.clamp(min=1)
    mean, mean_sq = diff.sum(1) / n, (diff**2).sum(1) / n
    per_sample = ((mean_sq - lambd * mean**2).clamp(min=0) + 1e-8).sqrt()
    loss = (per_sample * has_pixels).sum() / has_pixels.sum().clamp(min=1)
    return loss, (1 - has_pixels).sum()


class DepthEstimationModule(TaskModule):
    """Scale-invariant log loss on valid pixels; the eight standard depth metrics; depth pictures.

    Args:
        model: Where the model comes from; it must predict depth in metres.
        min_depth: Ground truth at or below this is invalid; predictions are clamped up to it.
        max_depth: Ground truth above this is invalid; predictions are clamped down to it
            (10 m for NYU, 80 m for KITTI).
        silog_lambda: Variance weight of the loss (GLPN uses 0.5; 1.0 ignores global scale).
        eigen_crop: Validate and test inside Eigen et al.'s crop of the NYU frame only.
        flip_test: Validate and test on the mean of the predictions for the image and its mirror.
        num_plot_samples: Validation samples drawn each epoch (`plots/val_depth_epoch_NNN.png`)
            and test samples (`plots/test_depth.png`).
        **kwargs: `optimizer`, `scheduler`, `compile` and `channels_last` of `TaskModule`.
    """

    def __init__(
        self,
        model: ModelSpec,
        min_depth: Positive,
        max_depth: Positive,
        silog_lambda: float,
        eigen_crop: bool,
        flip_test: bool,
        num_plot_samples: NonNegative,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # Plain values only (the recipe lives in the run's config): checkpoints load weights_only.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.model = build_model(model, _auto_class())
        self.min_depth, self.max_depth = min_depth, max_depth
        self.silog_lambda, self.eigen_crop, self.flip_test = silog_lambda, eigen_crop, flip_test
        self.num_plot_samples = num_plot_samples
        metrics = depth_metrics(min_depth, max_depth)
        train = MetricCollection({k: m for k, m in metrics.items() if k in TRAIN_METRICS})
        self.train_metrics = train.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # Samples without one valid pixel, summed over ranks and reported once an epoch.
        self.train_skipped = total()
        self.val_skipped = total()
        self.test_skipped = total()
        self.plot_samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.units_checked = False

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Depth in metres, `(B, H, W)`, clamped to `[min_depth, max_depth]`."""
        depth = self.model(pixel_values=pixel_values).predicted_depth
        if depth.ndim == 4:
            depth = depth.squeeze(1)
        return depth.clamp(self.min_depth, self.max_depth)

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        images, labels = batch["pixel_values"], batch["labels"]
        pred = self(images)
        if self.flip_test and stage != "train":
            pred = (pred + self(images.flip(-1)).flip(-1)) / 2
        if labels.shape[-2:] != pred.shape[-2:]:  # labels at the model's output resolution
            labels = F.interpolate(labels[:, None], size=pred.shape[-2:], mode="nearest")[:, 0]
        valid = valid_depth(labels, self.min_depth, self.max_depth)
        loss, skipped = silog_loss(pred, labels, valid, self.silog_lambda)
        if not self.units_checked:
            self.units_checked = True
            self.check_units(labels, skipped)

        skipped_metric = getattr(self, f"{stage}_skipped")
        skipped_metric.update(skipped)
        self.log_epoch({f"{stage}/skipped": skipped_metric})
        if self.eigen_crop and stage != "train":
            valid = valid & eigen_mask(labels.shape[-2:], labels.device)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(pred.detach(), labels, valid)
        headline = [k for k in metrics.keys(keep_base=False) if k.endswith(PROGRESS_BAR)]
        self.log_epoch(metrics, prog_bar=headline if stage == "val" else False)
        if stage != "train" and self.global_rank == 0:
            for image, depth, p in zip(images, labels, pred.detach()):
                if len(self.plot_samples) >= self.num_plot_samples:
                    break
                self.plot_samples.append((image.cpu(), depth.cpu(), p.cpu()))
        return loss

    def check_units(self, labels: torch.Tensor, skipped: torch.Tensor) -> None:
        """Stop at the first batch when depth is stored in other units than metres: every pixel
        beyond `max_depth` (16-bit millimetre PNGs read as metres) would train on nothing."""
        if int(skipped) < len(labels) or not bool((labels > self.max_depth).any()):
            return
        raise UserError(
            f"dataset.depth_scale: the first batch has no valid depth pixel: its depth reaches "
            f"{float(labels.max()):g}, beyond module.max_depth={self.max_depth:g} (metres); for "
            "millimetre PNGs set dataset.depth_scale=0.001 (KITTI: 0.00390625), else raise "
            "module.max_depth"
        )

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._warn_invalid_depth("train")

    def on_validation_epoch_start(self) -> None:
        self.plot_samples = []

    def on_test_epoch_start(self) -> None:
        self.plot_samples = []

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._warn_invalid_depth("val")
        if not self.trainer.sanity_checking:
            self._plot(f"val_depth_epoch_{self.current_epoch:03d}.png")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._warn_invalid_depth("test")
        self._plot("test_depth.png")

    def _warn_invalid_depth(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_skipped")
        if not metric.update_called:
            return
        skipped = int(metric.compute())  # synced over ranks; Lightning logs and resets it
        if skipped and self.trainer.is_global_zero:
            log.warning(
                "%s: skipped %d sample(s) with no valid depth pixel (all 0, NaN or outside "
                "(min_depth, max_depth]); they count in no loss or metric",
                stage,
                skipped,
            )

    def _plot(self, filename: str) -> None:
        if self.trainer.is_global_zero and self.plot_samples:
            from hotcv_train import plots

            plots.depth_panels(
                self.plot_samples,
                self.plots_dir / filename,
                self.max_depth,
                self.loggers,
                self.global_step,
            )
        self.plot_samples = []


def eigen_mask(size: torch.Size | tuple[int, int], device: torch.device) -> torch.Tensor:
    """`(H, W)` boolean mask of Eigen et al.'s NYU evaluation crop, scaled to `size`."""
    h, w = size
    top, bottom, left, right = EIGEN_CROP
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[round(top * h) : round(bottom * h), round(left * w) : round(right * w)] = True
    return mask


def _auto_class() -> Any:
    from transformers import AutoModelForDepthEstimation

    return AutoModelForDepthEstimation
