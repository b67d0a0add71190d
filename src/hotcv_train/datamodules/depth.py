"""Monocular depth data: an RGB image column and a per-pixel depth column in metres (NYU's schema)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from hotcv_train.checks import Count, HubOrPath, Pixels, Positive, Probability
from hotcv_train.datamodules.base import HFDataModule, RowDataset, describe_row, missing_columns
from hotcv_train.datamodules.preprocessing import Preprocessing, resolve_preprocessing, to_rgb
from hotcv_train.errors import BadSample, UserError
from hotcv_train.models import load_image_processor


class SampleError(ValueError):
    """A row that cannot become a sample; `DepthRows` names the split and index."""


def read_depth(value: Any, scale: float) -> np.ndarray:
    """A depth cell (float image, 16-bit PNG, array or nested list) as `(H, W)` float32 metres."""
    if hasattr(value, "getbands"):  # a PIL image
        if len(value.getbands()) != 1:
            raise SampleError(
                f"depth is a {len(value.getbands())}-channel {value.mode} image; "
                "it must be one channel of depth values"
            )
        depth = np.asarray(value, dtype=np.float32)
    else:
        depth = np.asarray(value, dtype=np.float32)
        if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
            depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:-1])
        if depth.ndim != 2:
            raise SampleError(
                f"depth has shape {depth.shape}; it must be one channel of depth values (H, W)"
            )
    # NaN marks invalid pixels as 0 does; one marker keeps resizing and padding simple.
    return np.nan_to_num(depth * scale, nan=0.0, posinf=0.0, neginf=0.0)


def read_pair(row: dict, image_column: str, depth_column: str, depth_scale: float) -> tuple:
    """A row's RGB image (PIL) and depth (`(H, W)` metres), checked to match pixel for pixel."""
    image = to_rgb(row[image_column])
    depth = read_depth(row[depth_column], depth_scale)
    if depth.shape != (image.height, image.width):
        raise SampleError(
            f"image is {image.height}x{image.width} but depth is {depth.shape[0]}x{depth.shape[1]} "
            "(height x width); they must match pixel for pixel"
        )
    return image, depth


def depth_sample(
    row: dict, transform: Callable, image_column: str, depth_column: str, depth_scale: float
) -> dict:
    image, depth = read_pair(row, image_column, depth_column, depth_scale)
    pixels, labels = transform(
        tv_tensors.Image(v2.functional.pil_to_tensor(image)),
        tv_tensors.Mask(torch.from_numpy(depth)[None]),
    )
    return {
        "pixel_values": pixels.as_subclass(torch.Tensor),
        "labels": labels.as_subclass(torch.Tensor)[0],
    }


class DepthRows(RowDataset):
    """`RowDataset` whose bad samples fail with one line naming the file (or split and row)."""

    def __init__(self, rows: Any, to_sample: Callable[[dict], dict], split: str, source: str):
        super().__init__(rows, to_sample, split)
        self.source = source

    def __getitem__(self, index: int) -> dict | None:
        try:
            return super().__getitem__(index)
        except SampleError as e:
            where = describe_row(self.rows, index, self.split)
            raise BadSample(f"dataset: {where} of {self.source}: {e}") from None


class DepthEstimationDataModule(HFDataModule):
    """Images and depth maps from any `HFDataModule` source, augmented in pairs (torchvision v2).

    Depth travels as a `tv_tensors.Mask`, so every geometric transform moves image and depth
    together and resizes depth with nearest neighbours (never averaging across invalid pixels),
    while colour jitter touches the image only. Invalid depth (0 or NaN) arrives as 0.

    Args:
        image_column: Column holding the RGB images.
        depth_column: Column holding depth maps (float image, 16-bit PNG or array), same size.
        depth_scale: Multiplies stored depth values into metres (0.001 for millimetre PNGs).
        processor: Where mean/std come from (the model's name_or_path).
        image_mean: Normalization mean override; null reads it from `processor`.
        image_std: Normalization std override; null reads it from `processor`.
        size_divisor: Model inputs must have sides divisible by this (32 for GLPN).
        crop_size: Training crop [height, width], multiples of `size_divisor`; padded with
            invalid depth when an image is smaller.
        eval_size: Val/test resize [height, width]; null rounds each image's sides down to a
            multiple of `size_divisor` (NYU's 480x640 stays as it is).
        hflip: Probability of a horizontal flip in training.
        color_jitter: Brightness, contrast, saturation and hue strength of the training jitter.
        **kwargs: The data source and loader settings of `HFDataModule`.
    """

    def __init__(
        self,
        image_column: str,
        depth_column: str,
        depth_scale: Positive,
        processor: HubOrPath | None,
        image_mean: list[float] | None,
        image_std: list[float] | None,
        size_divisor: Count,
        crop_size: list[Pixels],
        eval_size: list[Pixels] | None,
        hflip: Probability,
        color_jitter: list[float],
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        for key, size in (("crop_size", crop_size), ("eval_size", eval_size)):
            if size is not None and (
                len(size) != 2 or any(s % size_divisor or s <= 0 for s in size)
            ):
                raise UserError(
                    f"dataset.{key}: must be [height, width], positive multiples of "
                    f"dataset.size_divisor={size_divisor}; got {size}"
                )
        if len(color_jitter) != 4:
            raise UserError(
                f"dataset.color_jitter: must be [brightness, contrast, saturation, hue]; got "
                f"{color_jitter}"
            )
        self.image_column, self.depth_column = image_column, depth_column
        self.depth_scale = depth_scale
        self.processor, self.normalization = processor, (image_mean, image_std)
        self.size_divisor, self.crop_size, self.eval_size = size_divisor, crop_size, eval_size
        self.hflip, self.color_jitter = hflip, color_jitter
        self.preprocessing: Preprocessing | None = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.preprocessing is None:
            self.preprocessing = self._resolve_preprocessing()

    def _resolve_preprocessing(self) -> Preprocessing:
        """Mean/std from the processor; identity when it does not normalize (GLPN only rescales)."""
        mean, std = self.normalization
        if self.processor is not None and (mean is None or std is None):
            proc = load_image_processor(self.processor)
            if getattr(proc, "do_normalize", None) and proc.image_mean is not None:
                defaults = list(proc.image_mean), list(proc.image_std)
            else:
                defaults = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
            mean = defaults[0] if mean is None else mean
            std = defaults[1] if std is None else std
        return resolve_preprocessing(self.processor, list(self.crop_size), mean, std)

    def check(self, rows: Any, split: str) -> list[str]:
        missing = missing_columns(
            rows, self.source, image_column=self.image_column, depth_column=self.depth_column
        )
        if missing:
            return missing
        try:  # the first row shows a wrong schema (RGB depth, other sizes) before any model loads
            read_pair(rows[0], self.image_column, self.depth_column, self.depth_scale)
        except SampleError as e:
            return [f"dataset.depth_column: {split} sample 0 of {self.source}: {e}"]
        except (OSError, SyntaxError, ValueError):
            pass  # undecodable: `RowDataset` skips it with a warning when it comes up
        return []

    def transform(self, split: str) -> v2.Compose:
        """Paired transforms for `split`: called as `transform(image, depth_mask)`."""
        p = self.preprocessing
        if p is None:
            raise UserError("datamodule used before setup()")
        if split == "train":
            brightness, contrast, saturation, hue = self.color_jitter
            steps = [
                v2.RandomCrop(p.size, pad_if_needed=True, fill=0),
                v2.RandomHorizontalFlip(self.hflip),
                v2.ColorJitter(brightness, contrast, saturation, hue),  # images only, not masks
            ]
        elif self.eval_size is not None:
            steps = [v2.Resize(self.eval_size, antialias=True)]
        else:
            steps = [ResizeToMultiple(self.size_divisor)]
        return v2.Compose(
            [*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(p.mean, p.std)]
        )

    def to_sample(self, split: str) -> Callable[[dict], dict]:
        return partial(
            depth_sample,
            transform=self.transform(split),
            image_column=self.image_column,
            depth_column=self.depth_column,
            depth_scale=self.depth_scale,
        )

    def dataset(self, role: str) -> DepthRows:
        rows = super().dataset(role)
        return DepthRows(rows.rows, rows.to_sample, rows.split, self.source)


class ResizeToMultiple(v2.Transform):
    """Resize so both sides round down to multiples of `divisor`, as GLPN's processor does.

    Masks (depth) are resized with nearest neighbours, like every v2 geometric transform.
    """

    def __init__(self, divisor: int):
        super().__init__()
        self.divisor = divisor

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        h, w = v2.functional.get_size(inpt)
        size = [max(self.divisor, s // self.divisor * self.divisor) for s in (h, w)]
        if size == [h, w]:
            return inpt
        return self._call_kernel(v2.functional.resize, inpt, size, antialias=True)
