"""Masked video pretraining (VideoMAE): hide most space-time tubes of a clip, learn to rebuild them.

This is how VideoMAE adapts to a user's own unlabelled footage before finetuning: the encoder
sees only the visible tubes, a small decoder predicts the pixels of the hidden ones, and the loss
is their mean squared error. At the end of fit the model is saved with `save_pretrained` (plus an
image processor) to `<run>/pretrained/`, which the classification task loads as
`module.model.name_or_path=<run>/pretrained`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hotcv_train.models import ModelSpec, build_model
from hotcv_train.modules.base import TaskModule
from hotcv_train.modules.classification import check_num_frames

log = logging.getLogger(__name__)

# VideoMAEForPreTraining un-normalizes its input with these before computing its targets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tube_mask(
    batch_size: int, config: Any, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`(B, sequence length)` booleans, True = hidden: the same patches in every tubelet.

    Hiding a patch in every frame at once (a tube) stops the model from copying it from the
    neighbouring frames, which are nearly identical. Every clip hides the same number of patches,
    as VideoMAEForPreTraining requires.
    """
    per_frame = (config.image_size // config.patch_size) ** 2
    tubes = config.num_frames // config.tubelet_size
    hidden = min(max(round(mask_ratio * per_frame), 1), per_frame - 1)
    order = torch.rand(batch_size, per_frame, generator=generator).argsort(1)
    mask = torch.zeros(batch_size, per_frame, dtype=torch.bool)
    mask.scatter_(1, order[:, :hidden], True)
    return mask.repeat(1, tubes)  # the sequence is time-major: tubelet, then row, then column


def patchify(frames: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """`(B, T, C, H, W)` -> `(B, patches, tubelet * patch * patch, C)`, VideoMAE's patch order."""
    b, t, c, h, w = frames.shape
    x = frames.reshape(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)
    return x.reshape(b, -1, tubelet * patch * patch, c)


def unpatchify(patches: torch.Tensor, shape: torch.Size, tubelet: int, patch: int) -> torch.Tensor:
    """The inverse of `patchify`, back to `shape` `(B, T, C, H, W)`."""
    b, t, c, h, w = shape
    x = patches.reshape(b, t // tubelet, h // patch, w // patch, tubelet, patch, patch, c)
    return x.permute(0, 1, 4, 7, 2, 5, 3, 6).reshape(b, t, c, h, w)


class MaskedVideoModule(TaskModule):
    """Reconstruction loss on hidden tubes; `plots/masking.png`; the model saved for finetuning.

    Args:
        model: Where the model comes from; built as `AutoModelForPreTraining`
            (VideoMAEForPreTraining, with its decoder).
        mask_ratio: Share of each frame's patches hidden, as tubes through time (0.9 in VideoMAE).
        num_plot_clips: Validation clips drawn in `plots/masking.png` each epoch.
        **kwargs: `optimizer`, `scheduler`, `compile` and `channels_last` of `TaskModule`.
    """

    def __init__(self, model: ModelSpec, mask_ratio: float, num_plot_clips: int, **kwargs: Any):
        super().__init__(**kwargs)
        from hotcv_train.errors import UserError

        if not 0 < mask_ratio < 1:
            raise UserError(f"module.mask_ratio: must be in (0, 1), got {mask_ratio}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.model = build_model(model, _auto_class())
        self.mask_ratio, self.num_plot_clips = mask_ratio, num_plot_clips
        self.eval_masks: torch.Generator | None = None
        self.plot_batch: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_num_frames(self.model.config, self.trainer.datamodule)

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if "views" in batch:  # evaluation clips: each one is a sample here
            pixels = pixels.flatten(0, 1)
        generator = None if stage == "train" else self.eval_masks
        mask = tube_mask(len(pixels), self.model.config, self.mask_ratio, generator)
        if stage == "val" and self.plot_batch is None:
            self.plot_batch = pixels[: self.num_plot_clips].detach()
        return self.model(pixel_values=pixels, bool_masked_pos=mask.to(pixels.device)).loss

    def _fixed_masks(self) -> None:
        """The same masks every evaluation, so val/loss compares across epochs."""
        self.eval_masks = torch.Generator().manual_seed(0)

    def on_validation_epoch_start(self) -> None:
        self._fixed_masks()
        self.plot_batch = None

    def on_test_epoch_start(self) -> None:
        self._fixed_masks()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking or self.plot_batch is None:
            return
        if self.trainer.is_global_zero:
            self.plot_masking(self.plot_batch, self.plots_dir / "masking.png")
        self.plot_batch = None

    @torch.no_grad()
    def plot_masking(self, pixels: torch.Tensor, path: Path) -> Path | None:
        """Original | masked input | reconstruction (hidden patches predicted, the rest as seen)."""
        from hotcv_train import plots

        config = self.model.config
        mask = tube_mask(len(pixels), config, self.mask_ratio, torch.Generator().manual_seed(1))
        mask = mask.to(pixels.device)
        predicted = self.model(pixel_values=pixels, bool_masked_pos=mask).logits
        mean = pixels.new_tensor(IMAGENET_MEAN)[None, None, :, None, None]
        std = pixels.new_tensor(IMAGENET_STD)[None, None, :, None, None]
        frames = pixels * std + mean  # the space the model's targets live in
        tubelet, patch = config.tubelet_size, config.patch_size
        patches = patchify(frames, tubelet, patch)
        rebuilt = patches.clone()
        guess = predicted.reshape(-1, *patches.shape[2:])
        if config.norm_pix_loss:  # targets were normalized per patch: undo with the patch's stats
            hidden = patches[mask]
            guess = guess * (hidden.var(dim=-2, keepdim=True).sqrt() + 1e-6)
            guess = guess + hidden.mean(dim=-2, keepdim=True)
        rebuilt[mask] = guess
        masked = patches.clone()
        masked[mask] = frames.mean()
        lo, hi = frames.amin(), frames.amax()

        def show(p: torch.Tensor) -> torch.Tensor:
            video = unpatchify(p, frames.shape, tubelet, patch)
            return ((video - lo) / (hi - lo).clamp(min=1e-8)).float().cpu()

        rows = list(zip(show(patches), show(masked), show(rebuilt)))
        return plots.masking_panels(rows, path, self.loggers, self.global_step)

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            folder = Path(self.trainer.default_root_dir) / "pretrained"
            self.model.save_pretrained(folder)
            save_processor(folder, self.trainer.datamodule, self.hparams.model)
            log.info(
                "saved the pretrained model to %s; finetune it with module.model.name_or_path=%s",
                folder,
                folder,
            )


def save_processor(folder: Path, datamodule: Any, spec: ModelSpec) -> None:
    """Save the image processor the clips were prepared with, so the folder loads like the hub's."""
    from transformers import AutoImageProcessor, VideoMAEImageProcessor

    if spec.name_or_path is not None:
        try:
            AutoImageProcessor.from_pretrained(spec.name_or_path).save_pretrained(folder)
            return
        except (OSError, ValueError):
            pass  # no processor there: describe the clips' preprocessing instead
    p = datamodule.preprocessing
    VideoMAEImageProcessor(
        size={"shortest_edge": min(p.size)},
        crop_size={"height": p.size[0], "width": p.size[1]},
        image_mean=list(p.mean),
        image_std=list(p.std),
    ).save_pretrained(folder)


def _auto_class() -> Any:
    from transformers import AutoModelForPreTraining

    return AutoModelForPreTraining
