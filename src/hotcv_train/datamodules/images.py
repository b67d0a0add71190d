"""Inputs of the eval-only jobs: an image folder, an HF dataset or a list of files, with references."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
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

EXIF_ORIENTATION = 0x0112  # the EXIF tag phones write instead of turning the pixels
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}
# PIL modes with 8 bits per channel: what `to_tensor` can hand on as uint8 tensors.
ImageMode = Literal["RGB", "RGBA", "L", "LA", "CMYK", "YCbCr", "LAB", "HSV"]
# What decoding a broken file raises (PIL, and datasets' Image feature through PIL).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def _image_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) of the images under `folder`, sorted. Hidden files and folders (`.git`,
    macOS `._x.jpg` forks, `.DS_Store`) are left out, as the classification loader leaves them."""
    hidden = 0
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts):
            hidden += 1
            continue
        yield relative.with_suffix("").as_posix(), file
    if hidden:
        log.info(
            "%s: left out %d hidden image file(s) (a path part starting with '.')", folder, hidden
        )


def find_images(folder: Path) -> dict[str, Path]:
    """Images under `folder`, recursively, keyed by relative path without suffix (`sub/name`)."""
    found: dict[str, Path] = {}
    for key, file in _image_files(folder):
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


def upright_size(source: Any) -> tuple[int, int]:
    """(width, height) of an image file (a path or a binary file object) as `open_image` turns
    it, read from its header without decoding the pixels.

    A PNG's EXIF counts only when it precedes the pixels: Pillow decodes the file to look for a
    later one (and phones write JPEG, whose EXIF is in the header).
    """
    from PIL import Image

    with Image.open(source) as image:
        width, height = image.size
        exif_read = image.format != "PNG" or "exif" in image.info
        turned = exif_read and image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def open_image(path: Path) -> Any:
    """A PIL image the way it is seen: turned upright by its EXIF orientation (phone photos), as
    datasets' Image feature decodes the training data."""
    from PIL import Image, ImageOps

    image = Image.open(path)
    return ImageOps.exif_transpose(image) if image.getexif().get(EXIF_ORIENTATION) else image


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
    decoded only in the worker that needs them, one column at a time (a broken reference must
    not take its input down). A reference that fails to decode (or an empty reference cell)
    leaves its input unscored under `missing_reference="skip"`, and skips it under `"error"`.
    """

    def __init__(
        self,
        items: list[tuple[str, Path | int, Path | int | None]],
        rows: Any,
        columns: tuple[str, str | None],
        modes: tuple[str, str],
        missing_reference: str = "error",
        max_image_pixels: int | None = None,
    ):
        self.items, self.columns, self.modes = items, columns, modes
        self.missing_reference, self.max_image_pixels = missing_reference, max_image_pixels
        self.views = {}  # per column, so a row access decodes that column only
        if rows is not None:
            self.views = {c: rows.select_columns([c]) for c in columns if c is not None}

    def __len__(self) -> int:
        return len(self.items)

    def _open(self, source: Path | int, column: str | None, mode: str) -> torch.Tensor:
        if isinstance(source, Path):
            image = open_image(source)
        else:
            image = self.views[column][source][column]
            if image is None:
                raise ValueError("the cell is empty")
        return to_tensor(image, mode)

    def _name(self, source: Path | int, column: str | None) -> str:
        return str(source) if isinstance(source, Path) else f"row {source} ({column!r})"

    def limit_pixels(self) -> None:
        """Apply `max_image_pixels` in this process (a DataLoader worker has its own PIL)."""
        from PIL import Image

        if self.max_image_pixels is not None:
            Image.MAX_IMAGE_PIXELS = self.max_image_pixels

    def __getitem__(self, index: int) -> dict | None:
        from PIL import Image

        self.limit_pixels()
        key, image_source, reference_source = self.items[index]
        try:
            image = self._open(image_source, self.columns[0], self.modes[0])
        except Image.DecompressionBombError as e:
            log.warning(
                "skipping input %s: %s: %s; if you trust it, raise dataset.max_image_pixels "
                "(PIL's Image.MAX_IMAGE_PIXELS, %d; twice that is the limit)",
                key,
                self._name(image_source, self.columns[0]),
                str(e).rstrip("."),
                Image.MAX_IMAGE_PIXELS,
            )
            return None
        except DECODE_ERRORS as e:
            name = self._name(image_source, self.columns[0])
            log.warning("skipping input %s: cannot decode %s (%s)", key, name, e)
            return None
        reference = None
        if reference_source is not None:
            try:
                reference = self._open(reference_source, self.columns[1], self.modes[1])
            except (*DECODE_ERRORS, Image.DecompressionBombError) as e:
                name = self._name(reference_source, self.columns[1])
                if self.missing_reference != "skip":
                    log.warning(
                        "skipping input %s: cannot decode its reference %s (%s); fix it, or set "
                        "dataset.missing_reference=skip to evaluate such inputs unscored",
                        key,
                        name,
                        e,
                    )
                    return None
                log.warning(
                    "dataset.references: cannot decode %s (%s); input %s is evaluated unscored",
                    name,
                    e,
                    key,
                )
        return {"id": key, "image": image, "reference": reference}


def collate_list(samples: list[dict | None]) -> dict:
    """Inputs keep their own sizes: a batch holds a list of samples and how many of its inputs
    were undecodable (dropped here, counted by the module)."""
    kept = [s for s in samples if s is not None]
    return {"samples": kept, "skipped": len(samples) - len(kept)}


class ImageInputsDataModule(L.LightningDataModule):
    """Images to run a pretrained model on, sharded across ranks with each input seen once.

    Args:
        path: An image folder (searched recursively; hidden files and folders left out), a
            `save_to_disk` folder, or a hub dataset id. Null when `files` are given.
        files: Explicit list of image files, instead of `path`; named by their path below the
            folder they all share (just the file name when they share their folder).
        split: Split of an HF dataset.
        image_column: Image column of an HF dataset.
        id_column: Column naming each row's outputs; null uses the row index.
        references: Folder of references (masks, clean images) matched to inputs by relative
            stem, else by file name when exactly one reference has it; or the reference column
            of an HF dataset. Null: no scoring. Ignored at `stage=predict`.
        missing_reference: `error` stops before work (and skips an input whose reference cannot
            be decoded); `skip` evaluates such inputs unscored. A reference its job cannot use
            (`check_reference_sizes`) counts as missing.
        image_mode: PIL mode inputs are converted to (RGB).
        reference_mode: PIL mode references are converted to (L for label masks, RGB for images).
        max_inputs: Keep only the first N inputs (null: all).
        batch_size: Inputs per device per step.
        num_workers: DataLoader processes per device.
        max_image_pixels: PIL's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`): an image of
            more than twice this many pixels is skipped; null keeps PIL's 89478485.
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
        image_mode: ImageMode,
        reference_mode: ImageMode,
        max_inputs: Count | None,
        batch_size: Count,
        num_workers: Workers | Literal["auto"],
        max_image_pixels: Count | None,
    ):
        super().__init__()
        if path is None and files is None:
            raise UserError(
                "dataset.path: no inputs given; set dataset.path=<image folder | save_to_disk "
                "folder | hub dataset id> or dataset.files=[a.png,b.png]"
            )
        if path is not None and files is not None:
            raise UserError(
                f"dataset.files: given together with dataset.path={path}; give one of them "
                "(dataset.path=null runs on the listed files)"
            )
        if files is not None and not files:
            raise UserError("dataset.files: empty list; list image files, e.g. [a.png,b.png]")
        self.path, self.files, self.split = path, files, split
        self.image_column, self.id_column = image_column, id_column
        self.references, self.missing_reference = references, missing_reference
        self.image_mode, self.reference_mode = image_mode, reference_mode
        self.max_inputs, self.batch_size, self.num_workers = max_inputs, batch_size, num_workers
        self.max_image_pixels = max_image_pixels
        self.items: list[tuple[str, Path | int, Path | int | None]] | None = None
        self.rows: Any = None  # the HF dataset, when inputs come from one

    def setup(self, stage: str | None = None) -> None:
        if self.items is None:
            if stage == "predict" and self.references is not None:
                log.info(
                    "dataset.references: ignored at stage=predict, which writes outputs only "
                    "(stage=test scores against them)"
                )
                self.references = None
            self.items = self._load_items()

    def _load_items(self) -> list[tuple[str, Path | int, Path | int | None]]:
        if self.files is not None or (
            looks_local(self.path) and not _is_saved_dataset(Path(self.path).expanduser())
        ):
            if self.files is not None:
                inputs = self._listed_files()
            else:
                folder = Path(self.path).expanduser()
                if not folder.is_dir():
                    raise UserError(f"dataset.path: not a folder of images: {self.path}")
                inputs = find_images(folder)
            if self.max_inputs is not None:  # before matching: the others need no reference
                inputs = dict(list(inputs.items())[: self.max_inputs])
            items = self._match_folder_references(inputs)
        else:
            items = self._dataset_items()[: self.max_inputs]
        if not items:
            raise UserError(f"dataset.path: no images found in {self.path or self.files}")
        return items

    def _listed_files(self) -> dict[str, Path]:
        """`dataset.files` keyed by their path below the folder they share, without suffix, so
        `a/x.png` and `b/x.png` get outputs of their own (`a/x`, `b/x`), as under `dataset.path`."""
        assert self.files is not None
        problems, paths = [], [Path(f).expanduser() for f in self.files]
        for given, path in zip(self.files, paths):
            if not path.is_file():
                problems.append(f"dataset.files: no such file: {given}")
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(
                    f"dataset.files: {given} is not an image file (suffixes: "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}); list image files only"
                )
        if problems:
            raise UserError(*problems)
        absolute = [Path(os.path.abspath(p)) for p in paths]  # links keep their own names
        root = Path(os.path.commonpath([p.parent for p in absolute]))
        found: dict[str, Path] = {}
        for given, path, full in zip(self.files, paths, absolute):
            key = full.relative_to(root).with_suffix("").as_posix()
            if key in found:
                same = Path(os.path.abspath(found[key])) == full
                raise UserError(
                    f"dataset.files: {given} is listed twice; list each file once"
                    if same
                    else f"dataset.files: {found[key]} and {given} share the stem that names "
                    "their outputs; rename one"
                )
            found[key] = path
        return found

    def _match_folder_references(
        self, inputs: dict[str, Path]
    ) -> list[tuple[str, Path, Path | None]]:
        """Each input's reference: the one at its relative stem, else the only one with its file
        name (a flat folder of masks for nested inputs, or the other way round)."""
        if self.references is None:
            return [(k, v, None) for k, v in inputs.items()]
        folder = Path(self.references).expanduser()
        if not folder.is_dir():
            raise UserError(f"dataset.references: no such folder: {self.references}")
        by_key: dict[str, list[Path]] = {}
        by_name: dict[str, list[str]] = {}
        for key, file in _image_files(folder):
            by_key.setdefault(key, []).append(file)
        for key in by_key:
            by_name.setdefault(Path(key).name, []).append(key)
        refs: dict[str, Path | None] = {}
        problems: dict[str, None] = {}  # ordered, each once
        for key in inputs:
            found = by_key.get(key)
            if found is None:
                names = by_name.get(Path(key).name, [])
                if len(names) > 1:
                    problems[
                        f"dataset.references: input {key} has no reference at {key}.* and "
                        f"{len(names)} with its file name ({', '.join(names)}); put its "
                        f"reference at {key}.<suffix> in {self.references}"
                    ] = None
                found = by_key[names[0]] if names else None
            if found is not None and len(found) > 1:
                problems[
                    f"dataset.references: {found[0].name} and {found[1].name} in "
                    f"{found[0].parent} share a stem, so both would match input {key}; keep one"
                ] = None
            refs[key] = found[0] if found else None
        if problems:
            raise UserError(*problems)
        missing = [k for k, v in refs.items() if v is None]
        if missing and self.missing_reference == "error":
            raise UserError(
                f"dataset.references: no reference for {len(missing)} input(s) in "
                f"{self.references} (first: {missing[0]}); add them or set "
                "dataset.missing_reference=skip to evaluate those inputs unscored"
            )
        if len(missing) == len(inputs):
            log.warning(
                "dataset.references: none of the %d input(s) has a reference in %s, so nothing "
                "is scored; references match by path without suffix (e.g. %s.png)",
                len(inputs),
                self.references,
                missing[0],
            )
        elif missing:
            log.warning(
                "dataset.references: %d of %d input(s) have no reference in %s and are "
                "evaluated unscored (first: %s)",
                len(missing),
                len(inputs),
                self.references,
                missing[0],
            )
        return [(k, v, refs[k]) for k, v in inputs.items()]

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
            self.missing_reference,
            self.max_image_pixels,
        )

    def decoded_references(self) -> Iterator[tuple[str, str, torch.Tensor]]:
        """(input id, where its reference is, the reference as the run decodes it) for every
        input with a reference, so a job can check them all before any input is processed.

        A reference that cannot be decoded is left out: the run names it when its turn comes
        and applies `dataset.missing_reference`.
        """
        from PIL import Image

        assert self.items is not None, "call setup() first"
        dataset = self._dataset()
        dataset.limit_pixels()
        for key, _, source in self.items:
            if source is None:
                continue
            try:
                reference = dataset._open(source, self.references, self.reference_mode)
            except (*DECODE_ERRORS, Image.DecompressionBombError):
                continue
            yield key, dataset._name(source, self.references), reference

    def check_reference_sizes(self) -> None:
        """Every reference must be the size of its input (jobs that score pixel by pixel).

        Sizes come from file headers, so this costs a fraction of decoding. A mismatched pair
        stops the run before any input is processed, naming both files and their sizes; under
        `dataset.missing_reference=skip` its input is evaluated unscored, with a warning.
        """
        assert self.items is not None, "call setup() first"
        dataset = self._dataset()
        dataset.limit_pixels()
        columns = (self.image_column, self.references)
        modes = (self.image_mode, self.reference_mode)
        inputs, references = (self._header_sizes(dataset, i, columns[i]) for i in (0, 1))
        mismatched: list[str] = []
        for index, (key, image, reference) in enumerate(self.items):
            sizes = inputs[index], references[index]
            if None in sizes or sizes[0] == sizes[1]:
                continue
            # A header can miss the EXIF turn of a PNG whose EXIF follows its pixels: decode both
            # before calling the pair mismatched.
            sizes = tuple(
                self._decoded_size(dataset, source, columns[i], modes[i])
                for i, source in enumerate((image, reference))
            )
            if None in sizes or sizes[0] == sizes[1]:
                continue
            (iw, ih), (rw, rh) = sizes
            mismatched.append(
                f"reference {dataset._name(reference, columns[1])} is {rw}x{rh} px but its input "
                f"{dataset._name(image, columns[0])} is {iw}x{ih} px"
            )
            if self.missing_reference == "skip":
                self.items[index] = (key, image, None)
        if not mismatched:
            return
        more = f" (and {len(mismatched) - 1} more pair(s))" if len(mismatched) > 1 else ""
        if self.missing_reference == "error":
            raise UserError(
                f"dataset.references: {mismatched[0]}{more}; a reference must be the size of its "
                "input: pair the right files or resize them, or set "
                "dataset.missing_reference=skip to evaluate such inputs unscored"
            )
        log.warning(
            "dataset.references: %s%s; such inputs are evaluated unscored "
            "(dataset.missing_reference=skip)",
            mismatched[0],
            more,
        )

    def _header_sizes(
        self, dataset: ImageInputs, which: int, column: str | None
    ) -> list[tuple[int, int] | None]:
        """Upright (width, height) of every item's input (`which`=0) or reference (1), from
        file headers where they can be read; None where there is none or it cannot be read."""
        import io

        from PIL import Image

        cells = None  # an HF image column, undecoded: each cell's bytes or file path
        if self.rows is not None and column is not None:
            from datasets import Image as ImageFeature

            if isinstance(self.rows.features.get(column), ImageFeature):
                view = self.rows.select_columns([column])
                cells = view.cast_column(column, ImageFeature(decode=False))
        sizes: list[tuple[int, int] | None] = []
        for item in self.items or []:
            source, size = item[which + 1], None
            try:
                if isinstance(source, Path):
                    size = upright_size(source)
                elif source is not None:
                    cell = cells[source][column] if cells is not None else None
                    if cell and cell.get("bytes"):
                        size = upright_size(io.BytesIO(cell["bytes"]))
                    elif cell and cell.get("path") and Path(cell["path"]).is_file():
                        size = upright_size(cell["path"])
                    else:  # a remote file, or not an image column: decode it
                        mode = (self.image_mode, self.reference_mode)[which]
                        size = self._decoded_size(dataset, source, column, mode)
            except (*DECODE_ERRORS, Image.DecompressionBombError):
                size = None  # named, and skipped or left unscored, when its turn comes
            sizes.append(size)
        return sizes

    @staticmethod
    def _decoded_size(
        dataset: ImageInputs, source: Path | int, column: str | None, mode: str
    ) -> tuple[int, int] | None:
        from PIL import Image

        try:
            height, width = dataset._open(source, column, mode).shape[-2:]
        except (*DECODE_ERRORS, Image.DecompressionBombError):
            return None
        return width, height

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
