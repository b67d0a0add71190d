"""Image classification data: an image column and an integer label column."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torchvision.transforms import v2

from hotcv_train.checks import HubOrPath
from hotcv_train.datamodules.base import HFDataModule, missing_columns
from hotcv_train.datamodules.preprocessing import Preprocessing, resolve_preprocessing
from hotcv_train.errors import UserError


def classification_sample(row: dict, transform: Callable, image_column: str, label_column: str):
    return {
        "pixel_values": transform(row[image_column].convert("RGB")),
        "labels": torch.tensor(row[label_column]),
    }


class ImageClassificationDataModule(HFDataModule):
    """Images and labels from any `HFDataModule` source, augmented on tensors (torchvision v2).

    An image folder (class subfolders) arrives as `image`/`label` columns and is renamed to the
    configured ones, so `dataset.path=<image folder>` works with any task.

    Args:
        image_column: Column holding the images.
        label_column: Column holding integer class ids.
        num_labels: Number of classes; checked against the data.
        processor: Where mean/std/size come from (the model's name_or_path).
        image_size: Input size override (int or [h, w]); null reads it from `processor`.
        image_mean: Normalization mean override; null reads it from `processor`.
        image_std: Normalization std override; null reads it from `processor`.
        crop_scale: Area range of the training RandomResizedCrop.
        hflip: Probability of a horizontal flip in training (0 for digits, text, ...).
        **kwargs: The data source and loader settings of `HFDataModule`.
    """

    def __init__(
        self,
        image_column: str,
        label_column: str,
        num_labels: int,
        processor: HubOrPath | None,
        image_size: int | list[int] | None,
        image_mean: list[float] | None,
        image_std: list[float] | None,
        crop_scale: list[float],
        hflip: float,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.image_column, self.label_column, self.num_labels = (
            image_column,
            label_column,
            num_labels,
        )
        self.processor = processor
        self.overrides = (image_size, image_mean, image_std)
        self.crop_scale, self.hflip = tuple(crop_scale), hflip
        self.preprocessing: Preprocessing | None = None
        self.label_names: list[str] = [str(i) for i in range(num_labels)]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.preprocessing is None:
            self.preprocessing = resolve_preprocessing(self.processor, *self.overrides)

    def adapt(self, rows: Any) -> Any:
        if (
            rows.info.builder_name == "imagefolder"
            and {"image", "label"} <= set(rows.column_names)
            and (self.image_column, self.label_column) != ("image", "label")
        ):
            return rows.rename_columns({"image": self.image_column, "label": self.label_column})
        return rows

    def check(self, rows: Any, split: str) -> list[str]:
        from datasets import ClassLabel

        problems = missing_columns(
            rows, self.source, image_column=self.image_column, label_column=self.label_column
        )
        if problems:
            return problems
        feature = rows.features[self.label_column]
        if isinstance(feature, ClassLabel):
            found = feature.num_classes
            self.label_names = list(feature.names)
        else:
            found = max(rows.unique(self.label_column)) + 1
        if found != self.num_labels:
            return [
                f"dataset.num_labels: is {self.num_labels} but column {self.label_column!r} of "
                f"{self.source} has {found} classes; set dataset.num_labels={found}"
            ]
        return []

    def to_sample(self, split: str) -> Callable[[dict], dict]:
        p = self.preprocessing
        if p is None:
            raise UserError("datamodule used before setup()")
        if split == "train":
            geometry = [
                v2.RandomResizedCrop(p.size, scale=self.crop_scale, antialias=True),
                v2.RandomHorizontalFlip(self.hflip),
            ]
        else:
            geometry = [v2.Resize(p.size, antialias=True)]
        transform = v2.Compose(
            [
                v2.ToImage(),
                *geometry,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(p.mean, p.std),
            ]
        )
        return partial(
            classification_sample,
            transform=transform,
            image_column=self.image_column,
            label_column=self.label_column,
        )
