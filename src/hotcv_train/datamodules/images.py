"""Inputs of the eval-only jobs: an image folder, an HF dataset or a list of files, with references."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hotcv_train.checks import Count, HubOrPath, Workers, looks_local
from hotcv_train.datamodules.base import (
    load_source,
    missing_columns,
    resolve_workers,
    shard_sampler,
)
from hotcv_train.datamodules.preprocessing import to_rgb
from hotcv_train.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}


def find_images(folder: Path) -> dict[str, Path]:
    """Images under `folder`, recursively, keyed by relative path without suffix (`sub/name`)."""
    found: dict[str, Path] = {}
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
            key = file.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                raise UserError(
                    f"dataset.path: {found[key].name} and {file.name} in {file.parent} share the "
                    "stem that names their outputs; rename one"
                )
            found[key] = file
    return found


def images_to_predict(path: str | None) -> dict[str, Path] | None:
    """`path` as the inputs of `stage=predict`, keyed as `find_images` keys them: one image file,
    or every image under a local folder that is not a saved dataset (any layout: flat, nested,
    class folders). None for anything else (a hub id, a saved dataset, a folder of data files),
    whose test split is predicted instead."""
    if path is None or not looks_local(path):
        return None
    target = Path(path).expanduser()
    if target.is_file():
        return {target.stem: target} if target.suffix.lower() in IMAGE_SUFFIXES else None
    if not target.is_dir() or _is_saved_dataset(target):
        return None
    return find_images(target) or None


def open_image(path: Path) -> Any:
    """A PIL image the way it is seen: turned upright by its EXIF orientation (phone photos), as
    datasets' Image feature decodes the training data."""
    from PIL import Image, ImageOps

    image = Image.open(path)
    return ImageOps.exif_transpose(image) if image.getexif().get(0x0112) else image


def safe_id(raw: Any) -> str | None:
    """`raw` as a relative output name (`a/b`), or None when it could name a place outside the run
    folder (`..`, an absolute path, a drive letter) or is empty."""
    text = str(raw).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts or ":" in parts[0] or "\0" in text:
        return None
    return "/".join(parts)


def to_tensor(image: Any, mode: str) -> torch.Tensor:
    """A PIL image as a uint8 tensor: CHW for RGB, HW for single-channel modes (masks).

    A palette image read as `L` keeps its indices: in label masks (VOC, ours) they are the labels,
    which converting through the palette's colours would scramble.
    """
    keep_indices = image.mode == "P" and mode == "L"
    if keep_indices:
        array = np.asarray(image)
    else:
        array = np.asarray(to_rgb(image) if mode == "RGB" else image.convert(mode))
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor


class ImageInputs(Dataset):
    """(id, image, reference) samples; an input that fails to decode is skipped with a warning.

    Images and references are file paths, or row indices into `rows` (an HF dataset) that are
    decoded only in the worker that needs them.
    """

    def __init__(
        self,
        items: list[tuple[str, Path | int, Path | int | None]],
        rows: Any,
        columns: tuple[str, str | None],
        modes: tuple[str, str],
    ):
        self.items, self.rows, self.columns, self.modes = items, rows, columns, modes

    def __len__(self) -> int:
        return len(self.items)

    def _open(self, source: Path | int, column: str | None, mode: str) -> torch.Tensor:
        image = open_image(source) if isinstance(source, Path) else self.rows[source][column]
        return to_tensor(image, mode)

    def __getitem__(self, index: int) -> dict | None:
        key, image, reference = self.items[index]
        try:
            return {
                "id": key,
                "image": self._open(image, self.columns[0], self.modes[0]),
                "reference": None
                if reference is None
                else self._open(reference, self.columns[1], self.modes[1]),
            }
        except (OSError, SyntaxError, ValueError) as e:
            log.warning("skipping input %s: cannot decode it (%s)", key, e)
            return None


def collate_list(samples: list[dict | None]) -> list[dict]:
    """Inputs keep their own sizes: a batch is a list of samples (undecodable ones dropped)."""
    return [s for s in samples if s is not None]


class ImageInputsDataModule(L.LightningDataModule):
    """Images to run a pretrained model on, sharded across ranks with each input seen once.

    Args:
        path: An image folder (searched recursively), a `save_to_disk` folder, or a hub dataset id.
        files: Explicit list of image files, instead of `path`.
        split: Split of an HF dataset.
        image_column: Image column of an HF dataset.
        id_column: Column naming each row's outputs; null uses the row index.
        references: Folder of references (masks, clean images) matched to inputs by relative
            stem, or the reference column of an HF dataset. Null: no scoring.
        missing_reference: `error` stops before work; `skip` evaluates that input without one.
        image_mode: PIL mode inputs are converted to (RGB).
        reference_mode: PIL mode references are converted to (L for label masks, RGB for images).
        max_inputs: Keep only the first N inputs (null: all).
        batch_size: Inputs per device per step.
        num_workers: DataLoader processes per device.
    """

    def __init__(
        self,
        path: HubOrPath | None,
        files: list[str] | None,
        split: str,
        image_column: str,
        id_column: str | None,
        references: str | None,
        missing_reference: Literal["error", "skip"],
        image_mode: str,
        reference_mode: str,
        max_inputs: Count | None,
        batch_size: Count,
        num_workers: Workers | Literal["auto"],
    ):
        super().__init__()
        if (path is None) == (files is None):
            raise UserError("dataset.path: set exactly one of dataset.path and dataset.files")
        self.path, self.files, self.split = path, files, split
        self.image_column, self.id_column = image_column, id_column
        self.references, self.missing_reference = references, missing_reference
        self.image_mode, self.reference_mode = image_mode, reference_mode
        self.max_inputs, self.batch_size, self.num_workers = max_inputs, batch_size, num_workers
        self.items: list[tuple[str, Path | int, Path | int | None]] | None = None
        self.rows: Any = None  # the HF dataset, when inputs come from one

    def setup(self, stage: str | None = None) -> None:
        if self.items is None:
            self.items = self._load_items()

    def _load_items(self) -> list[tuple[str, Path | int, Path | int | None]]:
        if self.files is not None:
            missing = [f for f in self.files if not Path(f).expanduser().is_file()]
            if missing:
                raise UserError(*(f"dataset.files: no such file: {f}" for f in missing))
            inputs = {Path(f).with_suffix("").name: Path(f).expanduser() for f in self.files}
            items = self._match_folder_references(inputs)
        elif looks_local(self.path) and not _is_saved_dataset(Path(self.path).expanduser()):
            folder = Path(self.path).expanduser()
            if not folder.is_dir():
                raise UserError(f"dataset.path: not a folder of images: {self.path}")
            items = self._match_folder_references(find_images(folder))
        else:
            items = self._dataset_items()
        if self.max_inputs is not None:
            items = items[: self.max_inputs]
        if not items:
            raise UserError(f"dataset.path: no images found in {self.path or self.files}")
        return items

    def _match_folder_references(
        self, inputs: dict[str, Path]
    ) -> list[tuple[str, Path, Path | None]]:
        refs: dict[str, Path] = {}
        if self.references is not None:
            folder = Path(self.references).expanduser()
            if not folder.is_dir():
                raise UserError(f"dataset.references: no such folder: {self.references}")
            refs = find_images(folder)
            by_name = {Path(k).name: v for k, v in refs.items()}
            refs = {k: refs.get(k) or by_name.get(Path(k).name) for k in inputs}
            missing = [k for k, v in refs.items() if v is None]
            if missing and self.missing_reference == "error":
                raise UserError(
                    f"dataset.references: no reference for {len(missing)} input(s) in "
                    f"{self.references} (first: {missing[0]}); add them or set "
                    "dataset.missing_reference=skip to evaluate those inputs unscored"
                )
        return [(k, v, refs.get(k)) for k, v in inputs.items()]

    def _dataset_items(self) -> list[tuple[str, int, int | None]]:
        data = load_source(self.path, None, None)
        if self.split not in data:
            raise UserError(
                f"dataset.split: no split {self.split!r} in {self.path} (has: {', '.join(data)})"
            )
        rows = data[self.split]
        needed = {"image_column": self.image_column, "id_column": self.id_column}
        if self.references is not None:
            needed["references"] = self.references
        problems = missing_columns(rows, str(self.path), **needed)
        if problems:
            raise UserError(*problems)
        raw = rows[self.id_column] if self.id_column else [f"{i:06d}" for i in range(len(rows))]
        ids = [safe_id(r) for r in raw]
        if None in ids:
            row = ids.index(None)
            raise UserError(
                f"dataset.id_column: {raw[row]!r} (row {row}) cannot name output files: ids are "
                "relative names without '..', a leading '/' or a drive letter; fix the column "
                "or set dataset.id_column=null (row numbers)"
            )
        if len(set(ids)) != len(ids):
            raise UserError(
                f"dataset.id_column: values of {self.id_column!r} are not unique as file names "
                "(after dropping empty and '.' path parts); fix the column or set "
                "dataset.id_column=null (row numbers)"
            )
        self.rows = rows
        has_refs = self.references is not None
        return [(str(ids[i]), i, i if has_refs else None) for i in range(len(rows))]

    def _dataset(self) -> ImageInputs:
        assert self.items is not None, "call setup() first"
        return ImageInputs(
            self.items,
            self.rows,
            (self.image_column, self.references),
            (self.image_mode, self.reference_mode),
        )

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()

    def _loader(self) -> DataLoader:
        dataset = self._dataset()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=shard_sampler(dataset),
            shuffle=False,
            num_workers=resolve_workers(self.num_workers, getattr(self, "trainer", None)),
            collate_fn=collate_list,
        )


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()
