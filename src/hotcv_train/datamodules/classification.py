"""Image classification data: an image column and an integer label column."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import torch
from torchvision.transforms import v2

from hotcv_train.checks import HubOrPath, Pixels, Probability, Range
from hotcv_train.datamodules.base import (
    HFDataModule,
    collate_counting,
    describe_row,
    missing_columns,
)
from hotcv_train.datamodules.images import images_to_predict
from hotcv_train.datamodules.preprocessing import (
    Preprocessing,
    draw_boxes,
    resolve_preprocessing,
    to_rgb,
    transform_batch,
)
from hotcv_train.errors import UserError

log = logging.getLogger(__name__)


def classification_sample(
    row: dict, transform: Callable, image_column: str, label_column: str | None
):
    sample = {"pixel_values": transform(to_rgb(row[image_column]))}
    if label_column is not None and row.get(label_column) is not None:
        sample["labels"] = torch.tensor(row[label_column])
    return sample


def blank_rows(rows: Any, column: str) -> list[int]:
    """Positions of the rows with nothing in `column`: null (an empty CSV cell, a JSON null),
    NaN, blank text, or a ClassLabel's -1 (datasets' "no label"). One Arrow column: cheap."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import ClassLabel

    values = rows.with_format("arrow")[column]
    blank = values.is_null()
    if pa.types.is_floating(values.type):
        blank = pc.or_(blank, pc.fill_null(pc.is_nan(values), False))
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        blank = pc.or_(blank, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False))
    elif isinstance(rows.features[column], ClassLabel):
        blank = pc.or_(blank, pc.fill_null(pc.less(values, 0), False))
    return pc.indices_nonzero(blank).to_pylist()


def image_rows(files: list[Path], image_column: str) -> Any:
    """Image files as an HF dataset with one lazily decoded image column (no labels)."""
    import datasets

    features = datasets.Features({image_column: datasets.Image()})
    return datasets.Dataset.from_dict({image_column: [str(f) for f in files]}, features=features)


SPLIT_FOLDERS = {
    "train",
    "training",
    "test",
    "testing",
    "val",
    "valid",
    "validation",
    "dev",
    "eval",
}


def top_folder_classes(data: Any, root: Path) -> Any:
    """An image folder's splits labelled by the folder right below `root` (or below a split
    folder).

    datasets labels each image by its parent folder, so `cats/2019/a.jpg` would be a class
    `2019`; a demanding user means `cats`. Names come from the whole tree, so every split
    numbers the classes alike.
    """
    from datasets import ClassLabel, DatasetDict, Image

    classes = {}
    for split, rows in data.items():
        paths = [Path(v["path"]) for v in rows.cast_column("image", Image(decode=False))["image"]]
        try:
            classes[split] = [class_of(p, root) for p in paths]
        except ValueError:  # files outside the folder (links): keep datasets' labels
            return data
    if all(
        found == [rows.features["label"].names[i] for i in rows["label"]]
        for found, rows in zip(classes.values(), data.values())
    ):
        return data  # one folder level per class: as loaded
    names = sorted({c for found in classes.values() for c in found})
    log.info("dataset: classes are the folders right below %s: %s", root, names)
    index = {name: i for i, name in enumerate(names)}
    return DatasetDict(
        {
            split: rows.remove_columns("label")
            .add_column("label", [index[c] for c in classes[split]])
            .cast_column("label", ClassLabel(names=names))
            for split, rows in data.items()
        }
    )


def file_in(path: str | None, folder: str, column: str) -> dict:
    """A listed image path, made absolute against the list's folder."""
    return {column: str(Path(folder, path).expanduser()) if path else path}


def class_of(path: Path, root: Path) -> str:
    parts = path.resolve().relative_to(root.resolve()).parts
    return parts[1] if len(parts) > 2 and parts[0].lower() in SPLIT_FOLDERS else parts[0]


def image_tensor(image: Any) -> torch.Tensor:
    """A PIL image as a (3, H, W) uint8 tensor: all the per-sample work of `device_transforms`."""
    return v2.functional.pil_to_tensor(to_rgb(image))


def collate_padded(samples: list[dict | None]) -> dict:
    """`collate_counting` for uint8 images of any sizes: each at the top left of one batch tensor,
    its last row and column repeated into the padding (so resampling near its edge sees only its
    own pixels), with `image_sizes` (B, 2) for `transform_batch`."""
    images = [s.pop("pixel_values") for s in samples if s is not None]
    batch = collate_counting(samples)
    if not images:
        return batch
    sizes = torch.tensor([i.shape[-2:] for i in images])
    if all(i.shape == images[0].shape for i in images):  # a dataset of one size: nothing to pad
        return {**batch, "pixel_values": torch.stack(images), "image_sizes": sizes}
    height, width = sizes.amax(0).tolist()
    padded = images[0].new_empty(len(images), images[0].shape[0], height, width)
    for out, image in zip(padded, images):
        h, w = image.shape[-2:]
        out[:, :h, :w] = image
        out[:, :h, w:] = image[:, :, -1:]
        out[:, h:] = out[:, h - 1 : h]
    return {**batch, "pixel_values": padded, "image_sizes": sizes}


class ImageClassificationDataModule(HFDataModule):
    """Images and labels from any `HFDataModule` source, augmented on tensors (torchvision v2).

    An image folder (class subfolders) arrives as `image`/`label` columns and is renamed to the
    configured ones, so `dataset.path=<image folder>` works with any task. `stage=predict`
    classifies every image under a local folder (any layout, labels not needed) or one image
    file, each named by its path under `dataset.path`; any other source, its test split.

    Args:
        image_column: Column holding the images.
        label_column: Column holding integer class ids.
        num_labels: Number of classes; null takes it from the data, a number is checked against it.
        label_names: Class names in label order; null takes them from the data (a `ClassLabel`
            column, or an image folder's subfolder names), else `0`, `1`, ...
        processor: Where mean/std/size come from (the model's name_or_path).
        image_size: Input size override (int or [h, w]); null reads it from `processor`.
        image_mean: Normalization mean override; null reads it from `processor`.
        image_std: Normalization std override; null reads it from `processor`.
        crop_scale: Area range of the training RandomResizedCrop.
        hflip: Probability of a horizontal flip in training (0 for digits, text, ...).
        device_transforms: Crop, flip, resize and normalise whole batches on the training
            device (`transform_batch`) instead of each image in the DataLoader: workers only
            decode, and small images travel to the GPU small. The same augmentations, drawn
            from the same distributions.
        cache_images: Keep each decoded image in memory after its first use, so later epochs
            skip reading and decoding (data that fits in RAM: digits, CIFAR-10's 150 MB; each
            DataLoader worker keeps its own). Needs `device_transforms` (the per-image
            transforms are random).
        **kwargs: The data source and loader settings of `HFDataModule`.
    """

    def __init__(
        self,
        image_column: str,
        label_column: str,
        num_labels: int | None,
        label_names: list[str] | None,
        processor: HubOrPath | None,
        image_size: Pixels | list[Pixels] | None,
        image_mean: list[float] | None,
        image_std: list[float] | None,
        crop_scale: list[Annotated[float, Range(0, 1, open=False)]],
        hflip: Probability,
        device_transforms: bool,
        cache_images: bool,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if cache_images and not device_transforms:
            raise UserError(
                "dataset.cache_images: keeps decoded images, but the per-image transforms are "
                "random; set dataset.device_transforms=true with it"
            )
        self.image_column, self.label_column, self.num_labels = (
            image_column,
            label_column,
            num_labels,
        )
        self.processor = processor
        self.overrides = (image_size, image_mean, image_std)
        self.crop_scale, self.hflip = tuple(crop_scale), hflip
        self.device_transforms, self.cache_images = device_transforms, cache_images
        self.preprocessing: Preprocessing | None = None
        self.label_names = label_names
        self.predicting = False

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.splits is None:
            self.predicting = True
            images = images_to_predict(self.path)
            if images is not None:
                self.splits = {"predict": image_rows(list(images.values()), self.image_column)}
                self.predict_ids = list(images)
        super().setup(stage)
        if self.preprocessing is None:
            self.preprocessing = resolve_preprocessing(self.processor, *self.overrides)

    def prepare(self, data: Any) -> Any:
        """Classes numbered alike in every split: an image folder's by its top folders, a CSV/JSON
        list's (image paths relative to it, class names or ids) by sorted name."""
        from datasets import ClassLabel, Image, Value

        first = next(iter(data.values()))
        if first.info.builder_name == "imagefolder" and {"image", "label"} <= set(first.features):
            return top_folder_classes(data, Path(self.path).expanduser())
        image, label = (first.features.get(c) for c in (self.image_column, self.label_column))
        if isinstance(image, Value) and image.dtype in ("string", "large_string") and self.path:
            source = Path(self.path).expanduser()
            folder = source if source.is_dir() else source.parent
            # Before the paths are made absolute and train is carved: rows as the list has them.
            problems = self.blank_cells(data, "image_column", "image path", source)
            if label is not None and not self.predicting:
                problems += self.blank_cells(data, "label_column", "label", source)
            if problems:
                raise UserError(*problems)
            data = data.map(
                file_in,
                input_columns=self.image_column,
                fn_kwargs={"folder": str(folder), "column": self.image_column},
            )
            missing = [
                p
                for rows in data.values()
                for p in rows[self.image_column]
                if not Path(p).is_file()
            ]
            if missing:
                raise UserError(
                    f"dataset.image_column: {len(missing)} file(s) listed in {self.path} do not "
                    f"exist (first: {missing[0]}); paths are read relative to {folder}"
                )
            data = data.cast_column(self.image_column, Image())
        if isinstance(label, Value) and label.dtype in ("string", "large_string"):
            names = sorted(
                {v for rows in data.values() for v in rows.unique(self.label_column) if v}
            )
            data = data.cast_column(self.label_column, ClassLabel(names=names))
        return data

    def blank_cells(self, data: Any, key: str, what: str, source: Path) -> list[str]:
        """One line per split of a CSV/JSON list whose `dataset.<key>` column is empty in some
        rows, naming them as the user finds them: a CSV file's line numbers (its header is
        line 1), else row numbers from 0; each with the image path it lists, if any."""
        column, problems = getattr(self, key), []
        for split, rows in data.items():
            positions = blank_rows(rows, column)
            if not positions:
                continue
            if source.is_file():
                where = source.name
                unit, first = ("line", 2) if source.suffix.lower() == ".csv" else ("row", 0)
            else:
                where, unit, first = f"{self.path} ({split} split)", "row", 0
            paths = rows.select(positions[:3])[self.image_column]
            named = ", ".join(
                f"{unit} {i + first}" + (f" ({p})" if p else "") for i, p in zip(positions, paths)
            )
            if len(positions) > 3:
                named += f" and {len(positions) - 3} more"
            fix = (
                "fill it in or drop the row" if len(positions) == 1 else "fill them in or drop them"
            )
            if key == "label_column":
                fix += " (stage=predict needs no labels)"
            problems.append(f"dataset.{key}: {where} {named}: empty {what}; {fix}")
        return problems

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

        if self.predicting:  # labels, where there are any, are not used
            return missing_columns(rows, self.source, image_column=self.image_column)
        if rows.info.builder_name == "imagefolder" and "label" not in rows.column_names:
            return [
                f"dataset.path: the images in {self.source} are not in class folders (or not all "
                "at the same depth); put each class's images in a folder named after it, "
                "optionally inside train/ val/ test/ folders"
            ]
        problems = missing_columns(
            rows, self.source, image_column=self.image_column, label_column=self.label_column
        )
        if problems:
            return problems
        blank = blank_rows(rows, self.label_column)
        if blank:  # a saved or hub dataset's split without (all) its labels
            return [
                f"dataset.{split}_split: {len(blank)} of {len(rows)} rows of {split} of "
                f"{self.source} have no label in column {self.label_column!r} (first: "
                f"{describe_row(rows, blank[0], split)}); choose a labelled split, or "
                "stage=predict"
            ]
        feature = rows.features[self.label_column]
        if isinstance(feature, ClassLabel):
            names = list(feature.names)
        else:
            labels = [v for v in rows.unique(self.label_column) if v is not None]
            if not all(isinstance(v, int) and v >= 0 for v in labels):
                bad = next(v for v in labels if not (isinstance(v, int) and v >= 0))
                return [
                    f"dataset.label_column: {self.label_column!r} of {self.source} holds {bad!r}; "
                    "labels must be class ids 0, 1, ... (or a ClassLabel column)"
                ]
            names = [str(i) for i in range(max(labels, default=-1) + 1)]
        if self.num_labels is not None and len(names) != self.num_labels:
            return [
                f"dataset.num_labels: is {self.num_labels} but column {self.label_column!r} of "
                f"{self.source} has {len(names)} classes; set dataset.num_labels={len(names)} "
                "or null (from the data)"
            ]
        if split == "train":  # checked first: the other splits must fit its classes
            if self.label_names is None:
                self.label_names = names
            present = set(rows.unique(self.label_column))
            unseen = [n for i, n in enumerate(names) if i not in present]
            if unseen:  # e.g. a class folder misspelt in test/, or a class of one carved image
                log.warning(
                    "dataset: class(es) %s of %s have no training images; the model cannot "
                    "learn them (check the class folder names)",
                    unseen,
                    self.source,
                )
            elif len(self.label_names) != len(names):
                return [
                    f"dataset.label_names: {len(self.label_names)} names for {len(names)} classes "
                    f"in {self.source}; give one per class or null (from the data)"
                ]
        elif self.label_names is not None and len(names) > len(self.label_names):
            return [
                f"dataset.{split}_split: {split} of {self.source} has class ids up to "
                f"{len(names) - 1} but train has {len(self.label_names)} classes; "
                "fix the labels or set dataset.num_labels"
            ]
        return []

    def module_kwargs(self) -> dict[str, Any]:
        if self.label_names is None:  # predicting: the classes are the model's (or checkpoint's)
            return {}
        return {"num_labels": len(self.label_names), "label_names": list(self.label_names)}

    def cached(self, split: str) -> bool:
        return self.cache_images

    def collate_fn(self, split: str) -> Callable[[list], Any]:
        # The module counts undecodable images into `<stage>/skipped`.
        return collate_padded if self.device_transforms else collate_counting

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if "image_sizes" in batch:  # device_transforms: each image's crop and flip, drawn here
            training = self.trainer is not None and self.trainer.training
            batch["boxes"], batch["flip"] = draw_boxes(  # flip: None for none
                batch.pop("image_sizes"),
                crop_scale=self.crop_scale if training else None,
                hflip=self.hflip,
            )
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if "boxes" in batch:  # device_transforms: the batch is uint8 images, on the device
            batch["pixel_values"] = transform_batch(
                batch["pixel_values"], batch.pop("boxes"), batch.pop("flip"), self.preprocessing
            )
        return batch

    def to_sample(self, split: str) -> Callable[[dict], dict]:
        p = self.preprocessing
        if p is None:
            raise UserError("datamodule used before setup()")
        return partial(
            classification_sample,
            transform=image_tensor if self.device_transforms else self.transform(split, p),
            image_column=self.image_column,
            # Predictions need no labels; some rows having one would not batch with the rest.
            label_column=None if split == "predict" else self.label_column,
        )

    def transform(self, split: str, p: Preprocessing) -> Callable[[Any], torch.Tensor]:
        """One image's transforms in the DataLoader (without `device_transforms`)."""
        if split == "train":
            geometry = [v2.RandomResizedCrop(p.size, scale=self.crop_scale, antialias=True)]
            if self.hflip:  # a no-op transform still costs ~0.2 ms of dispatch per sample
                geometry.append(v2.RandomHorizontalFlip(self.hflip))
        else:
            geometry = [v2.Resize(p.size, antialias=True)]
        return v2.Compose(
            [
                v2.ToImage(),
                *geometry,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(p.mean, p.std),
            ]
        )
