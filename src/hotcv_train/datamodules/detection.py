"""Object detection data: images with a variable number of boxes each (COCO-style `objects`).

Sources are those of every `HFDataModule` (hub id, `save_to_disk` folder) plus a COCO folder:
images with `annotations.json` or Roboflow's `_annotations.coco.json`, either at the top or in
one subfolder per split (`train/`, `valid/`, `test/`). Boxes become `tv_tensors.BoundingBoxes`,
so torchvision v2 moves them with the image; the model gets class labels and boxes as normalised
`(cx, cy, w, h)` relative to the image's own (resized, unpadded) size, the canvas the module also
rescales predictions with.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import get_bounding_boxes, query_size

from hotcv_train.checks import HubOrPath, Pixels, Positive, Probability, Range, looks_local
from hotcv_train.datamodules.base import HFDataModule, RowDataset, describe_row, missing_columns
from hotcv_train.datamodules.images import upright_size
from hotcv_train.datamodules.preprocessing import to_rgb
from hotcv_train.errors import BadSample, UserError
from hotcv_train.models import load_image_processor

log = logging.getLogger(__name__)

BoxFormat = Literal["xywh", "xyxy", "cxcywh"]
ANNOTATION_FILES = ("_annotations.coco.json", "annotations.json")  # Roboflow's, then plain COCO
SPLIT_ALIASES = {"valid": "validation", "val": "validation"}  # Roboflow / COCO folder names
# A split whose boxes fall outside their image this often is read in the wrong box format;
# below it, the few bad boxes are annotation slips: clipped or dropped, with a warning.
WRONG_FORMAT_SHARE = 0.05
FAR_PAST_EDGE = 0.1  # a box this far (fraction of the image side) past an edge counts as off it
# Fewer boxes than this off their image are annotation slips whatever their share: one bad box
# of 6 says nothing about the format.
MIN_WRONG_FORMAT_BOXES = 3


class SampleError(ValueError):
    """A row whose objects cannot be read (not boxes of 4 numbers, lists of unequal length)."""


# ----------------------------------------------------------------------------------------------
# Boxes


def to_xyxy(
    boxes: torch.Tensor, box_format: BoxFormat, normalized: bool, size: tuple[int, int]
) -> torch.Tensor:
    """`(N, 4)` boxes in `box_format` (fractions of `size` = (h, w) when normalised) as pixel xyxy."""
    boxes = box_convert(boxes.float(), box_format, "xyxy")
    if normalized:
        h, w = size
        boxes = boxes * boxes.new_tensor([w, h, w, h])
    return boxes


def from_xyxy(
    boxes: torch.Tensor, box_format: BoxFormat, normalized: bool, size: tuple[int, int]
) -> torch.Tensor:
    """The inverse of `to_xyxy`."""
    if normalized:
        h, w = size
        boxes = boxes / boxes.new_tensor([w, h, w, h])
    return box_convert(boxes.float(), "xyxy", box_format)


def read_objects(objects: Any, bbox_key: str, category_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One row's objects (a dict of per-box lists, or a list of per-box dicts) as arrays.

    Returns `(N, 4)` float boxes as stored and `(N,)` int category ids.
    """
    if isinstance(objects, dict):
        boxes, categories = objects.get(bbox_key), objects.get(category_key)
    else:
        objects = list(objects or [])
        boxes = [o.get(bbox_key) for o in objects]
        categories = [o.get(category_key) for o in objects]
    boxes = [] if boxes is None else boxes
    categories = [] if categories is None else categories
    try:
        array = (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
        )
    except (TypeError, ValueError):
        raise SampleError(f"{bbox_key!r} must hold boxes of 4 numbers, got {boxes!r}") from None
    if len(array) != len(boxes) or len(categories) != len(array):
        raise SampleError(
            f"{len(boxes)} {bbox_key!r} entries and {len(categories)} {category_key!r} entries; "
            "each box needs 4 numbers and one category"
        )
    return array, np.asarray(categories, dtype=np.int64).reshape(-1)


class RandomBoxSafeCrop(v2.Transform):
    """With probability `p`, crop a random window that contains every box of the image whole.

    Each side of the window is at least `min_side` of the image's, so crops zoom in without
    cutting objects in half; an image without boxes gets a free random crop.
    """

    def __init__(self, min_side: float, p: float):
        super().__init__()
        self.min_side, self.p = min_side, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        if torch.rand(()) >= self.p:
            return {"top": 0, "left": 0, "height": h, "width": w}
        boxes = get_bounding_boxes(flat_inputs)
        xyxy = F.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        if len(xyxy):
            x1, y1 = (float(v) for v in xyxy[:, :2].min(0).values.clamp(min=0))
            x2, y2 = float(xyxy[:, 2].max().clamp(max=w)), float(xyxy[:, 3].max().clamp(max=h))
        else:
            x1, y1, x2, y2 = w / 2, h / 2, w / 2, h / 2
        cw = _uniform(max(x2 - x1, self.min_side * w), w)
        ch = _uniform(max(y2 - y1, self.min_side * h), h)
        left = _uniform(max(0.0, x2 - cw), min(x1, w - cw))
        top = _uniform(max(0.0, y2 - ch), min(y1, h - ch))
        left, top = math.floor(left), math.floor(top)
        return {
            "top": top,
            "left": left,
            "height": max(1, min(h - top, math.ceil(ch))),  # crop_min_side=0: at least a pixel
            "width": max(1, min(w - left, math.ceil(cw))),
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def _uniform(low: float, high: float) -> float:
    return low if high <= low else low + float(torch.rand(())) * (high - low)


# ----------------------------------------------------------------------------------------------
# Samples and batches


def detection_sample(
    row: dict,
    transform: Callable,
    image_column: str,
    objects_column: str,
    bbox_key: str,
    category_key: str,
    box_format: BoxFormat,
    normalized: bool,
    id_column: str | None,
    keep_image: bool,
    index: int | None = None,
) -> dict:
    """A row as model inputs; labels are DETR's: class ids and normalised cxcywh boxes.

    Pixel boxes are drawn on an image of the row's `width`/`height`, where it has them (the hub
    schema; a COCO folder's are checked against its files when it loads): an image decoded at
    another size is a `SampleError`, since its boxes would land on the wrong pixels.
    """
    image = to_rgb(row[image_column])
    size = (image.height, image.width)
    sample_id = (
        str(row[id_column]) if id_column and id_column in row else str(row.get("_id", index))
    )
    given = (row.get("width"), row.get("height"))
    if not normalized and all(given) and given != (image.width, image.height):
        raise SampleError(
            f"image {sample_id} is {given[0]}x{given[1]} by its width/height columns but "
            f"{image.width}x{image.height} decoded; its pixel boxes were drawn on the first: "
            "fix the columns or put the images they were drawn on back"
        )
    pixels = tv_tensors.Image(F.pil_to_tensor(image))
    boxes, categories = read_objects(row.get(objects_column), bbox_key, category_key)
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            to_xyxy(torch.from_numpy(boxes), box_format, normalized, size),
            format="XYXY",
            canvas_size=size,
        ),
        "labels": torch.from_numpy(categories),
    }
    out_pixels, target = transform(pixels, target)
    out_size = tuple(out_pixels.shape[-2:])
    cxcywh = from_xyxy(target["boxes"].as_subclass(torch.Tensor), "cxcywh", True, out_size)
    sample = {
        "pixel_values": out_pixels.as_subclass(torch.Tensor),
        "labels": {"class_labels": target["labels"], "boxes": cxcywh},
        "orig_size": torch.tensor(size),
        "size": torch.tensor(out_size),
        "id": sample_id,
    }
    if keep_image:  # predictions are drawn on the original picture
        sample["image"] = pixels.as_subclass(torch.Tensor)
    return sample


def collate_detection(samples: list[dict | None]) -> dict:
    """Pad images to the batch's largest height and width; `pixel_mask` marks the real pixels.

    Labels stay a list (one dict per image: their box counts differ). Undecodable samples
    (None) are dropped and counted in `skipped`, which the module adds to `<stage>/skipped`;
    an all-bad batch is `{"skipped": n}`.
    """
    skipped = torch.tensor(sum(s is None for s in samples))
    samples = [s for s in samples if s is not None]
    if not samples:
        return {"skipped": skipped}
    height = max(s["pixel_values"].shape[-2] for s in samples)
    width = max(s["pixel_values"].shape[-1] for s in samples)
    channels = samples[0]["pixel_values"].shape[0]
    pixel_values = torch.zeros(len(samples), channels, height, width)
    pixel_mask = torch.zeros(len(samples), height, width, dtype=torch.long)
    for i, s in enumerate(samples):
        h, w = s["pixel_values"].shape[-2:]
        pixel_values[i, :, :h, :w] = s["pixel_values"]
        pixel_mask[i, :h, :w] = 1
    batch = {
        "pixel_values": pixel_values,
        "pixel_mask": pixel_mask,
        "labels": [s["labels"] for s in samples],
        "orig_size": torch.stack([s["orig_size"] for s in samples]),
        "size": torch.stack([s["size"] for s in samples]),
        "id": [s["id"] for s in samples],
    }
    if "image" in samples[0]:
        batch["image"] = [s["image"] for s in samples]
    batch["skipped"] = skipped  # last: the batch size is read from the first value
    return batch


class IndexedRows(RowDataset):
    """Rows of an HF dataset (or images of a folder) passed to `to_sample` with their index.

    A folder's images are turned upright by their EXIF orientation, as the datasets library
    turns those it decodes for training.
    """

    def __getitem__(self, index: int) -> dict | None:
        try:
            row = self.rows[index]
            if isinstance(row, tuple):  # (id, path) of an image folder
                from hotcv_train.datamodules.images import open_image

                row = {"image": open_image(row[1]), "_id": row[0]}
            return self.to_sample(row, index=index)
        except SampleError as e:
            raise BadSample(f"dataset: {self.describe(index)}: {e}") from None
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated/corrupt files
            log.warning("skipping %s: cannot decode it (%s)", self.describe(index), e)
            return None

    def describe(self, index: int) -> str:
        """The file behind sample `index` where there is one, for the user to find it."""
        if isinstance(self.rows, list):
            return f"{self.rows[index][1]} ({self.split})"
        return describe_row(self.rows, index, self.split)


# ----------------------------------------------------------------------------------------------
# COCO folders


def coco_annotation_files(folder: Path) -> dict[str, Path]:
    """Split name -> COCO annotation file of a COCO / Roboflow folder ({} if it is not one).

    `folder` may also be one annotation file of any name (COCO's own `instances_train.json`):
    its images are found beside it, as `file_name` says.
    """

    def annotations_in(path: Path) -> Path | None:
        return next((path / n for n in ANNOTATION_FILES if (path / n).is_file()), None)

    if folder.is_file() and folder.suffix.lower() == ".json":
        return {"train": folder}
    if not folder.is_dir():
        return {}
    top = annotations_in(folder)
    if top is not None:
        return {"train": top}
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        file = annotations_in(sub)
        if file is not None:
            found[SPLIT_ALIASES.get(sub.name, sub.name)] = file
    return found


def read_coco(file: Path) -> dict:
    """A COCO annotation file, its entries checked: each problem is one line naming the entry.

    Images need `id` and `file_name` (`width`/`height` may be left out: the file's header has
    them); annotations need `image_id`, `category_id` and a `bbox` of 4 numbers; categories
    need `id` and `name`. Ids are ints or strings, as JSON allows.
    """
    try:
        coco = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(
            f"dataset.path: {file} is not valid JSON ({e.msg} at line {e.lineno}, column "
            f"{e.colno}); it looks cut short or hand-edited: export or copy it again"
        ) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"dataset.path: {file} is not UTF-8 text ({e.reason}); is it JSON?"
        ) from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise UserError(
            f"dataset.path: {file} has no 'images' list; a COCO annotation file is an object "
            "with 'images', 'annotations' and 'categories' lists"
        )
    for key in ("annotations", "categories"):
        if not isinstance(coco.setdefault(key, []), list):
            raise UserError(f"dataset.path: {file}: {key!r} must be a list")
    for i, image in enumerate(coco["images"]):
        problem = _entry_problem(
            image, {"id": _is_id, "file_name": _is_str}, {"width": _is_side, "height": _is_side}
        )
        if problem:
            raise UserError(f"dataset.path: {file}: images[{i}] {problem}; fix or remove it")
    for i, category in enumerate(coco["categories"]):
        problem = _entry_problem(category, {"id": _is_id, "name": _is_str})
        if problem:
            raise UserError(f"dataset.path: {file}: categories[{i}] {problem}; fix it")
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    for i, ann in enumerate(coco["annotations"]):
        problem = _entry_problem(ann, {"image_id": _is_id, "category_id": _is_id, "bbox": _is_bbox})
        if problem:
            ann = ann if isinstance(ann, dict) else {}
            about = [f"id {ann['id']}"] if "id" in ann else []
            if ann.get("image_id") in names:
                about.append(f"on {names[ann['image_id']]}")
            where = f"annotations[{i}]" + (f" ({', '.join(about)})" if about else "")
            hint = " (a bbox is [x, y, width, height] in pixels)" if "bbox" in problem else ""
            raise UserError(f"dataset.path: {file}: {where} {problem}{hint}; fix or remove it")
    return coco


def _entry_problem(
    entry: Any, required: dict[str, Callable[[Any], bool]], optional: dict | None = None
) -> str | None:
    if not isinstance(entry, dict):
        return f"is {entry!r}, not an object"
    for key, valid in required.items():
        if key not in entry:
            return f"has no {key!r}"
        if not valid(entry[key]):
            return f"has {key} {entry[key]!r}, not {_EXPECTED[valid]}"
    for key, valid in (optional or {}).items():  # absent or null: filled in elsewhere
        if entry.get(key) is not None and not valid(entry[key]):
            return f"has {key} {entry[key]!r}, not {_EXPECTED[valid]}"
    return None


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_side(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_bbox(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


_EXPECTED = {
    _is_id: "an int or a string",
    _is_str: "a file name",
    _is_side: "a positive number of pixels",
    _is_bbox: "4 numbers",
}


def size_on_disk(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image as it is trained (EXIF-upright, from its header); None when
    the file cannot be read (it is skipped, with a warning, when its turn comes)."""
    try:
        return upright_size(path)
    except (OSError, SyntaxError, ValueError):
        return None


def coco_categories(coco: dict, file: Path | None = None) -> list[dict]:
    """The categories that label boxes, sorted by id.

    Roboflow exports list the dataset's name as an extra category (the supercategory of the real
    ones) that no box uses; it is left out, so a one-class export gives one class.
    """
    used = {a["category_id"] for a in coco.get("annotations", [])}
    supers = {c.get("supercategory") for c in coco.get("categories", [])}
    kept, left_out = [], []
    for c in coco.get("categories", []):
        (kept if c["id"] in used or c["name"] not in supers else left_out).append(c)
    if left_out:
        log.info(
            "%s: left out categories %s: no box uses them and they name other categories' "
            "supercategory (as a Roboflow export names the dataset)",
            file or "COCO annotations",
            ", ".join(repr(c["name"]) for c in left_out),
        )
    return sorted(kept, key=lambda c: c["id"])


def load_coco(folder: str) -> Any:
    """A DatasetDict (hub licence-plate schema: COCO xywh pixel boxes) from a COCO folder.

    Rows also carry `file_name`: the image's path under its annotation file's folder, without
    the suffix, which names its predictions. Crowd annotations (`iscrowd: 1`, regions of many
    objects) are left out, as DETR's COCO preprocessing leaves them out.
    """
    import datasets

    files = coco_annotation_files(Path(folder).expanduser())
    cocos = {split: read_coco(file) for split, file in files.items()}
    first = "train" if "train" in cocos else next(iter(cocos))
    categories = coco_categories(cocos[first], files[first])
    index = {c["id"]: i for i, c in enumerate(categories)}
    string_ids = any(isinstance(im["id"], str) for coco in cocos.values() for im in coco["images"])
    features = detection_features(
        [c["name"] for c in categories], id_dtype="string" if string_ids else "int64"
    )
    features["file_name"] = datasets.Value("string")
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                coco_rows(coco, files[split], index, string_ids), features=features
            )
            for split, coco in cocos.items()
        }
    )


def coco_rows(coco: dict, file: Path, index: dict, string_ids: bool) -> dict[str, list]:
    """The columns of one split, from its checked annotation file (`read_coco`)."""
    from hotcv_train.datamodules.images import safe_id

    images = coco["images"]
    seen: dict[Any, str] = {}
    for image in images:
        if image["id"] in seen:
            raise UserError(
                f"dataset.path: {file}: image id {image['id']!r} is given to both "
                f"{seen[image['id']]} and {image['file_name']}; ids must be unique"
            )
        seen[image["id"]] = image["file_name"]
    boxes_of: dict[Any, list[dict]] = {}
    crowd, orphans = 0, []
    for a in coco["annotations"]:
        if a.get("iscrowd"):
            crowd += 1
        elif a["image_id"] not in seen:
            orphans.append(a)
        else:
            boxes_of.setdefault(a["image_id"], []).append(a)
    if crowd:
        log.info(
            "%s: %d crowd annotation(s) (iscrowd: 1) left out, as DETR's COCO preprocessing does",
            file,
            crowd,
        )
    if orphans:
        log.warning(
            "%s: %d annotation(s) left out: their image_id is not in its images list (first: "
            "annotation %s, image_id %r)",
            file,
            len(orphans),
            orphans[0].get("id"),
            orphans[0]["image_id"],
        )
    stems = [Path(image["file_name"]).with_suffix("").as_posix() for image in images]
    clashes = {s for s in stems if stems.count(s) > 1} if len(set(stems)) < len(stems) else set()
    rows: dict[str, list] = {
        k: [] for k in ("image", "image_id", "width", "height", "objects", "file_name")
    }
    resized: list[str] = []
    for image, stem in zip(images, stems):
        name = image["file_name"]
        path = file.parent / name
        if not path.is_file():
            raise UserError(f"dataset.path: {file} lists {name}, which is not in {path.parent}")
        anns = boxes_of.get(image["id"], [])
        unknown = [a["category_id"] for a in anns if a["category_id"] not in index]
        if unknown:
            listed = "categories" if index else "categories (it lists none: add its 'categories')"
            raise UserError(
                f"dataset.path: {file}: image {name} has category id {unknown[0]!r}, which is "
                f"not among its {listed}"
            )
        real = size_on_disk(path)
        given = (image.get("width"), image.get("height"))
        if None in given:
            width, height = real or (0, 0)
        else:
            width, height = round(given[0]), round(given[1])
            if real is not None and (width, height) != real:
                swapped = (width, height) == real[::-1]
                turned = " once turned upright by its EXIF orientation" if swapped else ""
                resized.append(
                    f"{name} is {width}x{height} in it but {real[0]}x{real[1]} on disk{turned}"
                )
        rows["image"].append(str(path))
        rows["image_id"].append(str(image["id"]) if string_ids else image["id"])
        rows["width"].append(width)
        rows["height"].append(height)
        # Outputs are named by the file; stems two files share (a.jpg, a.png) keep the suffix.
        key = safe_id(stem if stem not in clashes else name)
        rows["file_name"].append(key or f"image {image['id']}")
        rows["objects"].append(
            {
                "id": [a["id"] if isinstance(a.get("id"), int) else i for i, a in enumerate(anns)],
                "area": [_area(a) for a in anns],
                "bbox": [[float(v) for v in a["bbox"]] for a in anns],
                "category": [index[a["category_id"]] for a in anns],
            }
        )
    if resized:
        raise UserError(
            f"dataset.path: {file} gives {len(resized)} of {len(images)} images another size "
            f"than their file has, e.g. {resized[0]}; its boxes were drawn on images of its "
            "sizes: export the annotations again for the images as they are now, or put the "
            "original images back"
        )
    return rows


def _area(annotation: dict) -> float:
    area = annotation.get("area")
    _, _, w, h = annotation["bbox"]
    return float(area) if _is_number(area) else float(w) * float(h)


def detection_features(label_names: list[str], id_dtype: str = "int64") -> Any:
    """Features of the hub licence-plate dataset: objects as a dict of per-box lists."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "image_id": datasets.Value(id_dtype),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "objects": {
                "id": datasets.List(datasets.Value("int64")),
                "area": datasets.List(datasets.Value("float32")),
                "bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
                "category": datasets.List(datasets.ClassLabel(names=label_names)),
            },
        }
    )


# ----------------------------------------------------------------------------------------------
# The datamodule


class ObjectDetectionDataModule(HFDataModule):
    """Images and boxes from a hub dataset, a `save_to_disk` folder or a COCO folder.

    Every split is scanned once at setup: boxes partly outside their image are clipped and boxes
    of zero area dropped (counted, with one warning per split); a box format that contradicts the
    data, a category id outside the label list or a missing column stops the run with one line.
    `stage=predict` also takes a plain folder of images.

    Args:
        image_column: Column holding the images.
        objects_column: Column holding each image's objects: a dict of per-box lists (or a list
            of per-box dicts) with `bbox_key` and `category_key`.
        bbox_key: Key of the boxes inside `objects_column`.
        category_key: Key of the category ids inside `objects_column`.
        id_column: Column naming each image in predictions; null uses the row index. A COCO
            folder's images are named by their files (path without suffix) instead.
        box_format: How stored boxes read: `xywh` (COCO), `xyxy` (Pascal VOC) or `cxcywh` (YOLO).
        normalized: Stored boxes are fractions of the image size (YOLO) instead of pixels.
        label_names: Category names, overriding those of the data (`stage=predict` with a
            checkpoint takes the checkpoint's).
        processor: Where size, mean and std come from (the model's name_or_path).
        image_size: Resize target: an int is the shorter side (aspect kept, capped by
            `max_size`), `[height, width]` a fixed size; null reads it from `processor`.
        max_size: Longest side after resizing with an int `image_size`; null reads it from
            `processor` (DETR: 1333).
        image_mean: Normalization mean override; null reads it from `processor`.
        image_std: Normalization std override; null reads it from `processor`.
        scales: Training multi-scale: the shorter side is `image_size` times one of these.
        crop_prob: Probability of a training crop that keeps every box whole.
        crop_min_side: Smallest side of that crop, as a fraction of the image's.
        hflip: Probability of a horizontal flip in training.
        color_jitter: Brightness, contrast, saturation and hue strength of the training jitter
            (image only).
        min_box_size: Boxes smaller than this (pixels, after transforms) are dropped.
        **kwargs: The data source and loader settings of `HFDataModule`.
    """

    def __init__(
        self,
        image_column: str,
        objects_column: str,
        bbox_key: str,
        category_key: str,
        id_column: str | None,
        box_format: BoxFormat,
        normalized: bool,
        label_names: list[str] | None,
        processor: HubOrPath | None,
        image_size: Pixels | list[Pixels] | None,
        max_size: Pixels | None,
        image_mean: list[float] | None,
        image_std: list[Positive] | None,
        scales: list[Positive],
        crop_prob: Probability,
        crop_min_side: Annotated[float, Range(0, 1)],
        hflip: Probability,
        color_jitter: list[Annotated[float, Range(0)]],
        min_box_size: Annotated[float, Range(0)],
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if len(color_jitter) != 4 or color_jitter[3] > 0.5:
            raise UserError(
                "dataset.color_jitter: must be [brightness, contrast, saturation, hue], hue at "
                f"most 0.5; got {color_jitter}"
            )
        if isinstance(image_size, list) and len(image_size) != 2:
            raise UserError(f"dataset.image_size: an int or [height, width]; got {image_size}")
        if not scales:
            raise UserError(
                "dataset.scales: needs at least one scale of dataset.image_size, e.g. [1.0] "
                "(no multi-scale training)"
            )
        self.columns = (image_column, objects_column, bbox_key, category_key, id_column)
        self.box_format, self.normalized = box_format, normalized
        self.label_names_override = label_names
        self.processor = processor
        self.size_settings = (image_size, max_size, image_mean, image_std)
        self.scales, self.crop_prob, self.crop_min_side = scales, crop_prob, crop_min_side
        self.hflip, self.color_jitter, self.min_box_size = hflip, color_jitter, min_box_size
        if self.path is not None and looks_local(self.path):
            folder = Path(self.path).expanduser()
            if coco_annotation_files(folder):  # read by our loader, not the data-files builders
                self.generator = partial(load_coco, str(folder))
                self.columns = (*self.columns[:4], "file_name")  # named by file, not COCO id
        self.label_names: list[str] | None = None
        self.predict_images: list[tuple[str, Path]] | None = None
        self.resolved: tuple[int | tuple[int, int], int | None, list, list] | None = None
        self._max_category = -1

    # -- setup and checks ------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.generator is None and self.predict_images is None:
            from hotcv_train.datamodules.images import images_to_predict

            images = images_to_predict(self.path)  # a COCO folder has a generator: its test split
            if images is not None:
                self.predict_images = list(images.items())
                self.label_names = self.label_names_override
        if self.predict_images is None:
            super().setup(stage)
            if self.label_names is None:
                self.label_names = self.label_names_override or [
                    str(i) for i in range(self._max_category + 1)
                ]
        if self.resolved is None:
            self.resolved = self._resolve_preprocessing()

    def module_kwargs(self) -> dict[str, Any]:
        if not self.label_names:  # an image folder to predict on: the model's own labels
            return {}
        return {"num_labels": len(self.label_names), "label_names": list(self.label_names)}

    def _resolve_preprocessing(self) -> tuple[int | tuple[int, int], int | None, list, list]:
        size, max_size, mean, std = self.size_settings
        if None in (size, mean, std):
            if self.processor is None:
                missing = [
                    f"dataset.{k}"
                    for k, v in (("image_size", size), ("image_mean", mean), ("image_std", std))
                    if v is None
                ]
                raise UserError(
                    f"{', '.join(missing)}: needed when the model is built from scratch "
                    "(module.model.name_or_path=null leaves no image processor to read them from)"
                )
            proc = load_image_processor(self.processor)
            if size is None:
                given = dict(getattr(proc, "size", None) or {})
                if "shortest_edge" in given:
                    size = given["shortest_edge"]
                    max_size = max_size if max_size is not None else given.get("longest_edge")
                elif "height" in given:
                    size = [given["height"], given["width"]]
                else:
                    raise UserError(
                        f"dataset.image_size: cannot read an input size from {self.processor}'s "
                        "image processor; set it"
                    )
            normalizes = getattr(proc, "do_normalize", True) and proc.image_mean is not None
            if mean is None:
                mean = list(proc.image_mean) if normalizes else [0.0, 0.0, 0.0]
            if std is None:
                std = list(proc.image_std) if normalizes else [1.0, 1.0, 1.0]
        if isinstance(size, int) and max_size is not None and max_size <= size:
            raise UserError(
                f"dataset.max_size: {max_size} must exceed dataset.image_size={size} (or be null)"
            )
        return (size if isinstance(size, int) else tuple(size)), max_size, mean, std

    def check(self, rows: Any, split: str) -> list[str]:
        image_column, objects_column, bbox_key, category_key, _ = self.columns
        problems = missing_columns(
            rows, self.source, image_column=image_column, objects_column=objects_column
        )
        if problems:
            return problems
        keys = object_keys(rows.features[objects_column])
        absent = [
            (k, v)
            for k, v in (("bbox_key", bbox_key), ("category_key", category_key))
            if v not in keys
        ]
        if keys is not None and absent:
            return [
                f"dataset.{k}: the {objects_column!r} column of {self.source} has no {v!r} "
                f"(it has: {', '.join(sorted(keys))})"
                for k, v in absent
            ]
        names = self.label_names_override or category_names(rows.features[objects_column])
        if self.label_names is None and names is not None:
            self.label_names = list(names)
        scan = BoxScan(partial(describe_row, rows, split=split))
        sizes = image_sizes(rows, image_column)
        for index, (objects, size) in enumerate(zip(rows[objects_column], sizes)):
            try:
                boxes, categories = read_objects(objects, bbox_key, category_key)
            except SampleError as e:
                where = describe_row(rows, index, split)
                return [f"dataset.objects_column: {where} of {self.source}: {e}"]
            scan.add(index, boxes, categories, size, self.box_format, self.normalized)
        self._max_category = max(self._max_category, scan.max_category)
        where = f"{split} of {self.source}"
        problems = scan.problems(where, self.box_format, self.normalized, names)
        if not problems:
            scan.warn(where)
        return problems

    # -- samples -----------------------------------------------------------------------------

    def transform(self, split: str) -> v2.Compose:
        """Box-aware transforms: called as `transform(image, {"boxes": ..., "labels": ...})`."""
        if self.resolved is None:
            raise UserError("datamodule used before setup()")
        size, max_size, mean, std = self.resolved
        if split == "train":
            brightness, contrast, saturation, hue = self.color_jitter
            if isinstance(size, int):
                sizes = sorted({max(1, round(size * s)) for s in self.scales})
                resize: v2.Transform = v2.RandomShortestSize(sizes, max_size=max_size)
            else:
                resize = v2.Resize(size)
            steps = [
                RandomBoxSafeCrop(self.crop_min_side, self.crop_prob),
                resize,
                v2.RandomHorizontalFlip(self.hflip),
                v2.ColorJitter(brightness, contrast, saturation, hue),  # leaves boxes alone
            ]
        else:
            steps = [v2.Resize(size, max_size=max_size if isinstance(size, int) else None)]
        return v2.Compose(
            [
                v2.ClampBoundingBoxes(),  # boxes past the image edge: clipped (counted at setup)
                *steps,
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=self.min_box_size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ]
        )

    def to_sample(self, split: str) -> Callable[..., dict]:
        image_column, objects_column, bbox_key, category_key, id_column = self.columns
        return partial(
            detection_sample,
            transform=self.transform(split),
            image_column=image_column,
            objects_column=objects_column,
            bbox_key=bbox_key,
            category_key=category_key,
            box_format=self.box_format,
            normalized=self.normalized,
            id_column=id_column,
            keep_image=split == "predict",
        )

    def collate_fn(self, split: str) -> Callable[[list], Any]:
        return collate_detection

    def dataset(self, role: str) -> IndexedRows:
        if role == "predict" and self.predict_images is not None:
            return IndexedRows(self.predict_images, self.to_sample("predict"), role)
        rows = super().dataset("test" if role == "predict" else role)
        if role == "predict":
            log.info(
                "stage=predict: boxes for the %d images of the test split of %s (point "
                "dataset.path at a folder of images, or set dataset.test_split, for others)",
                len(rows),
                self.source,
            )
        return IndexedRows(rows.rows, self.to_sample(role), role)


# ----------------------------------------------------------------------------------------------
# Scanning a split


def category_names(feature: Any) -> list[str] | None:
    """Names of the ClassLabel inside an objects feature, if it has one."""
    from datasets import ClassLabel

    stack = [feature]
    while stack:
        f = stack.pop()
        if isinstance(f, ClassLabel):
            return list(f.names)
        if isinstance(f, dict):
            stack.extend(f.values())
        elif hasattr(f, "feature"):  # List / Sequence
            stack.append(f.feature)
    return None


def image_sizes(rows: Any, image_column: str) -> list[tuple[int, int]]:
    """(height, width) of every image: from `width`/`height` columns, else from file headers."""
    if {"width", "height"} <= set(rows.column_names):
        return list(zip(rows["height"], rows["width"]))
    import io

    from datasets import Image as ImageFeature
    from PIL import Image

    sizes = []
    for cell in rows.cast_column(image_column, ImageFeature(decode=False))[image_column]:
        try:
            source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]
            with Image.open(source) as image:  # reads the header only
                sizes.append((image.height, image.width))
        except (OSError, SyntaxError, TypeError):
            sizes.append((0, 0))  # undecodable: skipped with a warning when it comes up
    return sizes


def object_keys(feature: Any) -> set[str] | None:
    """Keys of an objects feature (a dict, or a list of dicts); None when it has none."""
    while not isinstance(feature, dict) and hasattr(feature, "feature"):
        feature = feature.feature
    return set(feature) if isinstance(feature, dict) else None


class BoxScan:
    """Counts of a split's boxes that are clipped, dropped, or contradict the box format.

    Args:
        name: The file (or row) behind a sample index, to name the first of each problem; only
            called for those, since finding a row's file costs more than scanning it.
    """

    def __init__(self, name: Callable[[int], str] = lambda i: f"sample {i}") -> None:
        self.name = name
        self.boxes = self.clipped = self.dropped = self.outside = 0
        self.first_clipped: tuple[int, list[float], int, int] | None = None  # (sample, box, w, h)
        self.first_outside: tuple[int, list[float], int, int] | None = None
        self.max_category = -1
        self.bad_category: tuple[int, int] | None = None  # (sample, id)
        self.largest_coordinate = 0.0
        self.largest_side = 0

    def add(
        self,
        index: int,
        boxes: np.ndarray,
        categories: np.ndarray,
        size: tuple[int, int],
        box_format: BoxFormat,
        normalized: bool,
    ) -> None:
        if len(categories):
            self.max_category = max(self.max_category, int(categories.max()))
            if categories.min() < 0 and self.bad_category is None:
                self.bad_category = (index, int(categories.min()))
        h, w = size
        if not len(boxes) or not h or not w:
            return
        self.boxes += len(boxes)
        self.largest_coordinate = max(self.largest_coordinate, float(np.abs(boxes).max()))
        self.largest_side = max(self.largest_side, h, w)
        xyxy = to_xyxy(torch.from_numpy(boxes), box_format, normalized, size).numpy()
        # Wrong-format tell-tales: a negative side, or a box far past an edge.
        slack_x, slack_y = FAR_PAST_EDGE * w, FAR_PAST_EDGE * h
        outside = (
            (xyxy[:, 2] < xyxy[:, 0] - 1)
            | (xyxy[:, 3] < xyxy[:, 1] - 1)
            | (xyxy[:, 0] < -slack_x)
            | (xyxy[:, 1] < -slack_y)
            | (xyxy[:, 2] > w + slack_x)
            | (xyxy[:, 3] > h + slack_y)
        )
        if outside.any() and self.first_outside is None:
            box = [round(float(v), 1) for v in boxes[int(np.argmax(outside))]]
            self.first_outside = (index, box, w, h)
        self.outside += int(outside.sum())
        clipped = xyxy.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
        empty = (clipped[:, 2] - clipped[:, 0] <= 0) | (clipped[:, 3] - clipped[:, 1] <= 0)
        moved = (np.abs(clipped - xyxy).max(1) > 1e-3) & ~empty
        self.dropped += int(empty.sum())
        self.clipped += int(moved.sum())
        if (moved.any() or empty.any()) and self.first_clipped is None:
            box = [round(float(v), 1) for v in boxes[int(np.argmax(moved | empty))]]
            self.first_clipped = (index, box, w, h)

    def describe(self, first: tuple[int, list[float], int, int]) -> str:
        index, box, w, h = first
        return f"{self.name(index)}: box {box} on a {w}x{h} image"

    def problems(
        self, where: str, box_format: BoxFormat, normalized: bool, names: list[str] | None
    ) -> list[str]:
        problems = []
        read_as = f"{box_format} {'normalised' if normalized else 'pixels'}"
        if self.wrong_format():
            assert self.first_outside is not None
            problems.append(
                f"dataset.box_format: {self.outside} of {self.boxes} boxes in {where} fall off "
                f"their image when read as {read_as} (e.g. {self.describe(self.first_outside)}); set "
                "dataset.box_format (xywh | xyxy | cxcywh) and dataset.normalized to match "
                "the data"
            )
        elif (
            not normalized
            and self.boxes >= 2
            and self.largest_coordinate <= 1.0
            and self.largest_side > 16
        ):
            problems.append(
                f"dataset.normalized: every box coordinate in {where} is within [0, 1] on "
                f"images up to {self.largest_side} px; the boxes look normalised: set "
                "dataset.normalized=true"
            )
        if self.bad_category is not None:
            index, category = self.bad_category
            problems.append(
                f"dataset.category_key: {self.name(index)} in {where} has category id "
                f"{category}; ids must be 0 or more"
            )
        if names is not None and self.max_category >= len(names):
            problems.append(
                f"dataset.label_names: {where} has category id {self.max_category}, outside the "
                f"{len(names)} label names {names}; list every category in dataset.label_names"
            )
        return problems

    def wrong_format(self) -> bool:
        """Whether enough boxes fall off their image to blame the box format, not the boxes.

        A share alone misleads on small splits: one slip among 6 boxes is 17 %.
        """
        return (
            self.outside >= MIN_WRONG_FORMAT_BOXES
            and self.outside > WRONG_FORMAT_SHARE * self.boxes
        )

    def warn(self, where: str) -> None:
        if self.clipped or self.dropped:
            first = self.first_outside or self.first_clipped  # the worst first
            assert first is not None
            log.warning(
                "%s: %d box(es) extend past their image and are clipped to it, %d of zero area "
                "or with a negative side are dropped (first: %s)",
                where,
                self.clipped,
                self.dropped,
                self.describe(first),
            )
