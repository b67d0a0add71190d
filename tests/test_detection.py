"""Object detection: boxes through transforms, sources, mAP, DDP, learning, and bad input."""

from __future__ import annotations

import csv
import json
import logging
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hotcv_train.datamodules.detection import (
    ObjectDetectionDataModule,
    detection_features,
    from_xyxy,
    to_xyxy,
)
from hotcv_train.errors import UserError
from hotcv_train.modules.detection import denormalize, mean_average_precision
from hotcv_train.run import run
from tests.conftest import newest_run, train_py
from tests.tiny.detection import coco_folder, detection_overrides, tiny_coco, tiny_detr, tiny_plates

pytest.importorskip("scipy", reason="the Hungarian matcher needs the detection extra")
pytest.importorskip("pycocotools", reason="COCO mAP needs the detection extra")

MAP_KEYS = ("test/map", "test/map_50", "test/map_75", "test/mar_100")


def datamodule(generator: Any = None, path: str | None = None, stage: str = "fit", **settings: Any):
    """A datamodule on a generator or a path, sized explicitly (no image processor needed)."""
    args = {
        "path": path,
        "name": None,
        "revision": None,
        "data_dir": None,
        "generator": generator,
        "train_split": "train",
        "val_split": "validation",
        "test_split": "test",
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "split_seed": 0,
        "seed": 0,
        "batch_size": 4,
        "eval_batch_size": 4,
        "num_workers": 0,
        "image_column": "image",
        "objects_column": "objects",
        "bbox_key": "bbox",
        "category_key": "category",
        "id_column": "image_id",
        "box_format": "xywh",
        "normalized": False,
        "label_names": None,
        "processor": None,
        "image_size": 64,
        "max_size": None,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "scales": [0.75, 1.0],
        "crop_prob": 1.0,
        "crop_min_side": 0.5,
        "hflip": 0.5,
        "color_jitter": [0.0, 0.0, 0.0, 0.0],
        "min_box_size": 1.0,
        **settings,
    }
    dm = ObjectDetectionDataModule(**args)
    dm.setup(stage)
    return dm


def plate_rows(
    boxes_per_image: list[list[list[float]]], size=(48, 64), categories=None, names=("plate",)
) -> Any:
    """A DatasetDict (train/validation/test alike) of dark images with a white box per `bbox`.

    Boxes are xywh pixels; every box is painted, so a box that lands elsewhere is visible.
    """
    import datasets
    from PIL import Image

    h, w = size
    rows: dict[str, list] = {k: [] for k in ("image", "image_id", "width", "height", "objects")}
    for i, boxes in enumerate(boxes_per_image):
        pixels = np.zeros((h, w, 3), np.uint8)
        for x, y, bw, bh in boxes:
            x0, y0 = max(0, int(x)), max(0, int(y))
            pixels[y0 : max(y0, int(y + bh)), x0 : max(x0, int(x + bw))] = 255
        rows["image"].append(Image.fromarray(pixels))
        rows["image_id"].append(i)
        rows["width"].append(w)
        rows["height"].append(h)
        cats = categories[i] if categories else [0] * len(boxes)
        rows["objects"].append(
            {
                "id": list(range(len(boxes))),
                "area": [b[2] * b[3] for b in boxes],
                "bbox": boxes,
                "category": cats,
            }
        )
    split = datasets.Dataset.from_dict(rows, features=detection_features(list(names)))
    return datasets.DatasetDict({"train": split, "validation": split, "test": split})


def boxes_in_pixels(sample: dict) -> torch.Tensor:
    h, w = sample["pixel_values"].shape[-2:]
    return denormalize(sample["labels"]["boxes"], torch.tensor([h, w]))


# ----------------------------------------------------------------------------------------------
# Boxes


def test_train_transforms_keep_boxes_on_their_objects() -> None:
    """Crops, multi-scale resizes and flips move boxes with the image: each box stays white.

    An off-centre box: a flip of the image alone (or a crop not applied to the boxes) would
    leave the box on dark pixels.
    """
    dm = datamodule(lambda: plate_rows([[[4, 6, 20, 10], [44, 34, 6, 6]]] * 3), hflip=0.5)
    dataset = dm.dataset("train")
    flipped_seen = False
    for seed in range(12):
        torch.manual_seed(seed)
        sample = dataset[0]
        image = sample["pixel_values"][0]
        assert len(sample["labels"]["boxes"]) == 2, "a crop that keeps boxes whole loses none"
        for x1, y1, x2, y2 in boxes_in_pixels(sample).round().int().tolist():
            inside = image[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
            assert inside.numel() and inside.mean() > 0.9, f"seed {seed}: box off its object"
            assert image[y1:y2, x1:x2].mean() > 0.7
        half = image.shape[1] // 2
        flipped_seen |= bool(image[:, :half].mean() < image[:, half:].mean())
    assert flipped_seen, "hflip=0.5 over 12 draws flipped none"


def test_box_formats_round_trip() -> None:
    size = (48, 64)
    xyxy = torch.tensor([[10.0, 20.0, 40.0, 30.0], [0.0, 0.0, 64.0, 48.0]])
    assert to_xyxy(torch.tensor([[10.0, 20.0, 30.0, 10.0]]), "xywh", False, size).tolist() == [
        [10.0, 20.0, 40.0, 30.0]
    ]
    assert to_xyxy(torch.tensor([[0.5, 0.5, 1.0, 1.0]]), "cxcywh", True, size).tolist() == [
        [0.0, 0.0, 64.0, 48.0]
    ]
    for box_format in ("xywh", "xyxy", "cxcywh"):
        for normalized in (False, True):
            stored = from_xyxy(xyxy, box_format, normalized, size)
            assert torch.allclose(to_xyxy(stored, box_format, normalized, size), xyxy)


def test_coco_folder_and_save_to_disk_give_the_same_samples(tiny_dir: Path) -> None:
    saved = tiny_plates(tiny_dir / "plates")
    coco = coco_folder(tiny_dir / "plates_coco", saved)
    from_disk = datamodule(path=str(saved))
    from_coco = datamodule(path=str(coco))
    assert from_disk.label_names == from_coco.label_names == ["license_plate"]
    for role in ("train", "val", "test"):
        a, b = from_disk.dataset(role), from_coco.dataset(role)
        assert len(a) == len(b) > 0
        if role == "train":
            continue  # random crops
        for i in range(len(a)):
            sa, sb = a[i], b[i]
            assert torch.equal(sa["pixel_values"], sb["pixel_values"])
            assert torch.equal(sa["labels"]["class_labels"], sb["labels"]["class_labels"])
            assert torch.allclose(sa["labels"]["boxes"], sb["labels"]["boxes"])
            assert sb["id"] == f"{int(sa['id']):05d}"  # a COCO image is named by its file


def test_collate_pads_with_a_mask_and_keeps_boxes_relative_to_each_image() -> None:
    from hotcv_train.datamodules.detection import collate_detection

    small = {
        "pixel_values": torch.ones(3, 20, 30),
        "labels": {
            "class_labels": torch.tensor([0]),
            "boxes": torch.tensor([[0.5, 0.5, 1.0, 1.0]]),
        },
        "orig_size": torch.tensor([40, 60]),
        "size": torch.tensor([20, 30]),
        "id": "a",
    }
    large = {
        **small,
        "pixel_values": torch.ones(3, 32, 24),
        "size": torch.tensor([32, 24]),
        "id": "b",
    }
    batch = collate_detection([small, None, large])
    assert batch["pixel_values"].shape == (2, 3, 32, 30)
    assert batch["pixel_mask"][0].sum() == 20 * 30 and batch["pixel_mask"][1].sum() == 32 * 24
    assert batch["pixel_mask"][0, 20:].sum() == 0 and batch["pixel_values"][0, :, :, 24:].sum() > 0
    assert batch["labels"][0]["boxes"].tolist() == [[0.5, 0.5, 1.0, 1.0]]  # own image, not canvas
    assert int(batch["skipped"]) == 1, "an undecodable image is counted, not just dropped"
    assert next(iter(batch)) == "pixel_values"  # the base module reads the batch size from it
    assert {k: int(v) for k, v in collate_detection([None, None]).items()} == {"skipped": 2}


# ----------------------------------------------------------------------------------------------
# mAP


def test_map_matches_a_hand_computed_value() -> None:
    """Two images, one plate each: hits at scores 0.9 and 0.7, a false alarm at 0.8.

    Ranked: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. COCO's 101-point AP:
    recalls 0..0.50 (51 points) at precision 1, 0.51..1 (50 points) at 2/3.
    """
    metric = mean_average_precision(1)
    plate = torch.tensor([[10.0, 10.0, 50.0, 30.0]])
    metric.update(
        [
            {
                "boxes": torch.tensor([[10.0, 10.0, 50.0, 30.0], [60.0, 60.0, 90.0, 80.0]]),
                "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([0, 0]),
            },
            {"boxes": plate.clone(), "scores": torch.tensor([0.7]), "labels": torch.tensor([0])},
        ],
        [
            {"boxes": plate.clone(), "labels": torch.tensor([0])},
            {"boxes": plate.clone(), "labels": torch.tensor([0])},
        ],
    )
    result = metric.compute()
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    for key in ("map", "map_50", "map_75"):
        assert float(result[key]) == pytest.approx(expected, abs=1e-4)
    assert float(result["mar_100"]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> tuple[Path, list[str]]:
    """The tiny DETR finetuned on tiny plates through task=detr_plates (fit, then test)."""
    from tests.conftest import compose_config

    overrides = [*detection_overrides(tiny_dir), "trainer.max_epochs=2"]
    run_dir = tmp_path_factory.mktemp("detr_fit") / "run"
    run(compose_config(run_dir, "task=detr_plates", *overrides))
    return run_dir, overrides


def test_fit_writes_map_plots_and_resumes(fitted, make_config, tmp_path: Path) -> None:
    run_dir, overrides = fitted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (*MAP_KEYS, "val/map_50", "train/loss_ce", "train/loss_bbox", "train/loss_giou"):
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
    assert metrics["test/samples"] == 8
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {"test_boxes.png", "val_boxes_epoch_000.png", "val_boxes_epoch_001.png"} <= plots

    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = make_config(
        "task=detr_plates", *overrides, "trainer.max_epochs=3", f"ckpt_path={last}"
    )
    run(resumed)
    restored = torch.load(last, weights_only=False)["epoch"]
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        epochs = {
            int(r["epoch"]) for r in csv.DictReader(f) if r["epoch"] and r["train/loss_epoch"]
        }
    assert epochs == set(range(restored + 1, 3)), "resumed after the saved epoch, up to epoch 3"


def test_predict_on_an_image_folder_writes_boxes(fitted, make_config, tmp_path: Path) -> None:
    from PIL import Image

    run_dir, overrides = fitted
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (70, 50), (200, 30, 30)).save(folder / "a.png")
    Image.new("RGB", (40, 60), (20, 90, 200)).save(folder / "sub" / "b.jpg")
    cfg = make_config(
        "task=detr_plates",
        *overrides,
        "stage=predict",
        f"dataset.path={folder}",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",  # its classes: [license_plate]
        "dataset.num_workers=auto",  # the default: worker processes, as users run it
        "module.threshold=0.0",
    )
    run(cfg)
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "sub/b"]
    for record, (w, h) in zip(records, ((70, 50), (40, 60))):
        assert (out / record["output"]).is_file()
        assert len(record["boxes"]) == len(record["scores"]) == len(record["labels"]) > 0
        boxes = np.array(record["boxes"])  # original-image pixels
        assert (boxes[:, [0, 2]] <= w + 1e-3).all() and (boxes[:, [1, 3]] <= h + 1e-3).all()
        assert set(record["labels"]) == {"license_plate"}


def test_a_checkpoint_with_other_classes_names_the_fix(fitted, make_config, tmp_path: Path) -> None:
    run_dir, overrides = fitted
    cfg = make_config(
        "task=detr_plates",
        *overrides,
        "stage=test",
        "dataset.label_names=[plate,car,bus]",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
    )
    with pytest.raises(
        UserError, match=r"checkpoint detects 1 classes .*label_names=\[license_plate\]"
    ):
        run(cfg)


@pytest.mark.slow
def test_ddp_scores_every_image_once(tiny_dir: Path, tmp_path: Path) -> None:
    """2 CPU ranks give the mAP of one process on an odd test split (7 images: 4 and 3).

    The untrained tiny DETR puts every box at the image centre, half its size (its box head
    starts at zero), so plates near the centre are found at various IoUs and the rest missed:
    an mAP strictly between 0 and 1 that would change if an image were dropped or doubled.
    """
    central = [[20, 16, 40, 32]], [[18, 14, 44, 36]], [[24, 18, 36, 28]], [[10, 10, 60, 44]]
    boxes = [*central[:2], [], [*central[2], [2, 2, 14, 10]], [], central[3], [[22, 17, 38, 30]]]
    data = tmp_path / "plates_odd"
    plate_rows(boxes, size=(64, 80), names=("license_plate",)).save_to_disk(str(data))
    args = [
        "task=detr_plates",
        f"module.model.name_or_path={tiny_detr(tiny_dir / 'detr')}",
        f"dataset.path={data}",
        "stage=test",
        "dataset.batch_size=2",
    ]
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        done = train_py(*args, f"trainer={trainer}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        out = newest_run(tmp_path, "detr_plates")
        results[trainer] = json.loads((out / "metrics.json").read_text())
    one, two = results["cpu"], results["ddp_cpu"]
    assert one["test/samples"] == two["test/samples"] == 7
    for key in (*MAP_KEYS, "test/mar_10"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert 0 < one["test/map_50"] < 1 and one["test/mar_100"] > 0, "the check would be void"


@pytest.mark.slow
def test_training_beats_the_untrained_model(tmp_path: Path) -> None:
    """The synthetic experiment's recipe, shortened to 320 images for 8 epochs (320 steps, ~70 s
    with OMP_NUM_THREADS=1, hence slow): the boxes move onto the plates (GIoU and L1 box losses
    on the test split fall well below the untrained model's) and mAP@50 rises above its 0
    (measured: GIoU 1.07 -> 0.74, L1 0.80 -> 0.29, mAP@50 0 -> 0.07). mAP itself takes off after
    ~1,000 steps; the full recipe scores 0.75 (README).
    """
    from tests.conftest import compose_config

    shrink = [
        "experiment=detection_synthetic",
        "dataset.generator.num_train=320",
        "dataset.generator.num_validation=32",
        "dataset.generator.num_test=100",
    ]
    untrained = run(compose_config(tmp_path / "untrained", *shrink, "trainer.max_epochs=0"))
    trained = run(compose_config(tmp_path / "trained", *shrink, "trainer.max_epochs=8"))
    assert untrained["test/map_50"] < 0.01, untrained
    assert trained["test/loss_giou"] < untrained["test/loss_giou"] - 0.2, (untrained, trained)
    assert trained["test/loss_bbox"] < 0.75 * untrained["test/loss_bbox"], (untrained, trained)
    assert trained["test/map_50"] > untrained["test/map_50"], (untrained, trained)


# ----------------------------------------------------------------------------------------------
# Bad input


def test_boxes_off_the_image_are_clipped_or_dropped_with_one_warning(caplog) -> None:
    rows = [[[50, 10, 18, 20], [5, 5, 0, 10]], [[4, 4, 10, 10]]]  # 4 px past the edge; zero width
    with caplog.at_level(logging.WARNING):
        dm = datamodule(partial(plate_rows, rows), image_size=48, crop_prob=0.0, hflip=0.0)
    lines = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert any(
        line.startswith("train of")
        and "1 box(es) extend past their image" in line
        and "1 of zero area or with a negative side are dropped" in line
        and "(first: train row 0: box [50.0, 10.0, 18.0, 20.0] on a 64x48 image)" in line
        for line in lines
    ), lines
    sample = dm.dataset("test")[0]
    assert len(sample["labels"]["boxes"]) == 1
    x1, _, x2, _ = boxes_in_pixels(sample)[0].tolist()
    assert (x1, x2) == (50, 64)


def test_boxes_read_in_the_wrong_format_name_the_setting() -> None:
    # xyxy boxes (x2, y2 near the far edges) read as xywh run off the image
    rows = [[[30, 20, 60, 44]], [[20, 10, 56, 40]], [[40, 30, 62, 46]]]
    with pytest.raises(UserError) as raised:
        datamodule(partial(plate_rows, rows))
    message = str(raised.value)
    assert message.count("\n") == 2  # one line per split
    assert message.splitlines()[0].startswith("dataset.box_format: 3 of 3 boxes in train")
    assert "read as xywh pixels" in message and "dataset.normalized" in message
    datamodule(partial(plate_rows, rows), box_format="xyxy")  # the named fix works


def saved_plates_of_another_size(boxes: list[list[list[float]]], scale: int, rows: list[int]):
    """`plate_rows` whose `rows` have images `scale` times smaller than their width/height (and
    pixel boxes) say: a save_to_disk folder whose images were shrunk after annotating."""
    from PIL import Image

    data = plate_rows(boxes, size=(48 * scale, 64 * scale))

    def shrink(row: dict, index: int) -> dict:
        if index in rows:
            row["image"] = row["image"].resize((64, 48), Image.Resampling.NEAREST)
        return row

    return data.map(shrink, with_indices=True)


def test_images_of_another_size_than_their_width_height_columns_are_one_error() -> None:
    """Hub-schema rows (`image`, `width`, `height`, pixel boxes) whose image decodes at another
    size: named with both sizes when the sample is made (it costs nothing: the image is decoded
    anyway), not trained on boxes that land elsewhere. Normalised boxes do not depend on it."""
    from hotcv_train.errors import BadSample

    boxes = [[[8, 8, 40, 24]], [[80, 40, 32, 24]], [[16, 56, 48, 16]]]  # on 128x96 images
    dm = datamodule(partial(saved_plates_of_another_size, boxes, 2, [1]), crop_prob=0.0)
    train = dm.dataset("train")
    assert len(train[0]["labels"]["boxes"]) == 1  # rows of the right size are as they were
    with pytest.raises(BadSample) as raised:
        train[1]
    assert str(raised.value) == (
        "dataset: train row 1: image 1 is 128x96 by its width/height columns but 64x48 "
        "decoded; its pixel boxes were drawn on the first: fix the columns or put the images "
        "they were drawn on back"
    )
    with pytest.raises(BadSample, match=r"image 1 is 128x96 by its width/height columns"):
        for _ in dm.test_dataloader():
            pass

    normalised = [
        [[b / s for b, s in zip(box, (128, 96, 128, 96))] for box in row] for row in boxes
    ]
    dm = datamodule(
        partial(saved_plates_of_another_size, normalised, 2, [0, 1, 2]), normalized=True
    )
    assert all(len(dm.dataset("test")[i]["labels"]["boxes"]) == 1 for i in range(3))


def test_missing_objects_column_is_one_line() -> None:
    def without_objects():
        return plate_rows([[[1, 1, 5, 5]]]).remove_columns("objects")

    with pytest.raises(UserError) as raised:
        datamodule(without_objects)
    assert (
        str(raised.value)
        .splitlines()[0]
        .startswith("dataset.objects_column: no column 'objects' in without_objects")
    )


def test_category_outside_the_label_list_is_one_line() -> None:
    rows = [[[1, 1, 5, 5]], [[2, 2, 6, 6]]]
    data = partial(plate_rows, rows, categories=[[0], [1]], names=["plate", "car"])
    with pytest.raises(UserError) as raised:
        datamodule(data, label_names=["plate"])
    assert str(raised.value).splitlines()[0] == (
        "dataset.label_names: train of plate_rows has category id 1, outside the 1 label names "
        "['plate']; list every category in dataset.label_names"
    )


def test_a_few_bad_boxes_name_the_image_not_the_box_format(caplog) -> None:
    """One negative-width box of 6 is a slip: dropped with a warning naming it and the box.

    17 % of the boxes fail, more than the wrong-format share, but one box says nothing about the
    format; 3 of 3 still does (test above).
    """
    rows = [[[4, 4, 10, 10]], [[10, 10, -5, 8]], [[6, 6, 12, 12]], [[2, 2, 8, 8]]]
    rows += [[[20, 20, 10, 10]], [[30, 10, 10, 10]]]
    with caplog.at_level(logging.WARNING):
        dm = datamodule(partial(plate_rows, rows), crop_prob=0.0, hflip=0.0)
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("detection")]
    assert any(
        "1 of zero area or with a negative side are dropped (first: train row 1: box "
        "[10.0, 10.0, -5.0, 8.0] on a 64x48 image)" in w
        for w in warnings
    ), warnings
    assert len(dm.dataset("test")[1]["labels"]["boxes"]) == 0


# ----------------------------------------------------------------------------------------------
# COCO folders


def coco_datamodule(folder: Path, **settings: Any):
    """A datamodule on a one-folder COCO export: val and test carved from train."""
    return datamodule(path=str(folder), val_split=None, test_split=None, **settings)


def every(dm: ObjectDetectionDataModule, column: str) -> list:
    """A column's values over all splits (carved splits hold any image)."""
    return [value for rows in dm.splits.values() for value in rows[column]]


def _cut_short(coco: dict) -> str:
    return json.dumps(coco)[:-20]


def _three_number_bbox(coco: dict) -> None:
    coco["annotations"][2]["bbox"] = [1, 2, 3]


def _segmentation_only(coco: dict) -> None:
    del coco["annotations"][1]["bbox"]
    coco["annotations"][1]["segmentation"] = [[1, 1, 10, 1, 10, 10]]


def _no_file_name(coco: dict) -> None:
    del coco["images"][4]["file_name"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _cut_short,
            r"annotations\.json is not valid JSON \(.* at line 1, column \d+\); it looks ",
        ),
        (
            _three_number_bbox,
            r"annotations\.json: annotations\[2\] \(id 3, on img_002\.png\) has bbox \[1, 2, 3\], "
            r"not 4 numbers \(a bbox is \[x, y, width, height\] in pixels\); fix or remove it$",
        ),
        (
            _segmentation_only,
            r"annotations\.json: annotations\[1\] \(id 2, on img_001\.png\) has no 'bbox' ",
        ),
        (_no_file_name, r"annotations\.json: images\[4\] has no 'file_name'; fix or remove it$"),
    ],
)
def test_coco_mistakes_are_one_line_naming_the_file_and_entry(
    tmp_path: Path, edit: Any, expected: str
) -> None:
    folder = tiny_coco(tmp_path / "coco", edit=edit)
    with pytest.raises(UserError) as raised:
        coco_datamodule(folder)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"dataset.path: {folder}/annotations.json")
    assert re.search(expected, message), message


def test_coco_sizes_and_string_ids_come_as_they_are(tmp_path: Path) -> None:
    """Sizes left out are read from the files; string image ids are kept (legal JSON)."""

    def loose(coco: dict) -> None:
        for image in coco["images"]:
            del image["width"], image["height"]
            image["id"] = f"im{image['id']}"
        for ann in coco["annotations"]:
            ann["image_id"] = f"im{ann['image_id']}"

    dm = coco_datamodule(tiny_coco(tmp_path / "coco", edit=loose))
    assert set(every(dm, "width")) == {40} and set(every(dm, "height")) == {32}
    assert sorted(every(dm, "image_id")) == [f"im{100 + i}" for i in range(6)]
    assert all(len(o["bbox"]) == 1 for o in every(dm, "objects")), "every box found its image"


def test_one_coco_annotation_file_of_any_name_is_a_source(tmp_path: Path) -> None:
    """`dataset.path=.../instances_train.json`: COCO's own file names, images beside it."""
    folder = tiny_coco(tmp_path / "coco")
    (folder / "annotations.json").rename(folder / "instances_train.json")
    dm = coco_datamodule(folder / "instances_train.json")
    assert sum(len(rows) for rows in dm.splits.values()) == 6
    assert dm.label_names == ["plate"]


def test_coco_sizes_that_differ_from_the_files_stop_the_run(tmp_path: Path) -> None:
    """Images resized after the export: its boxes would land on the wrong pixels."""

    def four_times(coco: dict) -> None:
        for image in coco["images"]:
            image["width"], image["height"] = 160, 128
        for ann in coco["annotations"]:
            ann["bbox"] = [4 * v for v in ann["bbox"]]

    folder = tiny_coco(tmp_path / "coco", edit=four_times)
    with pytest.raises(
        UserError,
        match=r"gives 6 of 6 images another size than their file has, "
        r"e.g. img_000.png is 160x128 in it but 40x32 on disk; .* export the "
        r"annotations again",
    ):
        coco_datamodule(folder)


def test_coco_sizes_are_those_of_the_upright_image(tmp_path: Path) -> None:
    """A phone photo stored sideways (EXIF orientation 6) is trained upright: its JSON size is
    the upright one, and the stored one is named as what differs."""
    from PIL import Image

    def sideways(coco: dict) -> None:
        coco["images"][0].update(file_name="turned.jpg", width=32, height=40)

    folder = tiny_coco(tmp_path / "coco", edit=sideways)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 32)).save(folder / "turned.jpg", exif=exif)
    dm = coco_datamodule(folder)
    assert (32, 40) in zip(every(dm, "width"), every(dm, "height"))

    def stored_size(coco: dict) -> None:
        sideways(coco)
        coco["images"][0].update(width=40, height=32)

    folder = tiny_coco(tmp_path / "coco2", edit=stored_size)
    Image.new("RGB", (40, 32)).save(folder / "turned.jpg", exif=exif)
    with pytest.raises(UserError, match="40x32 in it but 32x40 on disk once turned upright"):
        coco_datamodule(folder)


def test_crowd_and_unused_categories_are_left_out_with_one_line_each(
    tmp_path: Path, caplog
) -> None:
    def crowd(coco: dict) -> None:
        for ann in coco["annotations"][:2]:
            ann["iscrowd"] = 1
        coco["categories"] += [{"id": 7, "name": "vehicle", "supercategory": "vehicle"}]
        coco["categories"][0]["supercategory"] = "vehicle"

    folder = tiny_coco(tmp_path / "coco", edit=crowd)
    with caplog.at_level(logging.INFO, logger="hotcv_train.datamodules.detection"):
        dm = coco_datamodule(folder)
    assert dm.label_names == ["plate"]
    boxes = [len(objects["bbox"]) for objects in every(dm, "objects")]
    assert sorted(boxes) == [0, 0, 1, 1, 1, 1], "the two crowd regions are no objects"
    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"{folder}/annotations.json: 2 crowd annotation(s) (iscrowd: 1) left out, as DETR's COCO preprocessing does"
        in messages
    )
    assert any(
        m.startswith(f"{folder}/annotations.json: left out categories 'vehicle': no box uses them")
        for m in messages
    ), messages


def test_undecodable_images_are_named_by_their_file(tmp_path: Path, caplog) -> None:
    folder = tiny_coco(tmp_path / "coco")
    (folder / "img_003.png").write_bytes(b"")
    dm = coco_datamodule(folder, val_fraction=0.5)
    roles = {role: dm.dataset(role) for role in ("train", "val", "test")}
    with caplog.at_level(logging.WARNING):
        samples = [ds[i] for ds in roles.values() for i in range(len(ds))]
    assert sum(s is None for s in samples) == 1
    assert re.search(
        rf"skipping {folder}/img_003\.png \((train|val|test) row \d\): cannot decode it",
        caplog.text,
    ), caplog.text


def test_predict_on_a_coco_folder_names_images_by_file_and_says_which_split(
    tmp_path: Path, caplog
) -> None:
    folder = tiny_coco(tmp_path / "coco")
    (folder / "sub").mkdir()
    (folder / "img_002.png").rename(folder / "sub" / "img_002.png")
    text = (folder / "annotations.json").read_text().replace('"img_002.png"', '"sub/img_002.png"')
    (folder / "annotations.json").write_text(text)
    with caplog.at_level(logging.INFO, logger="hotcv_train.datamodules.detection"):
        dm = datamodule(
            path=str(folder), stage="predict", val_split=None, test_split=None, test_fraction=0.5
        )
        dataset = dm.dataset("predict")
    assert sorted(dataset[i]["id"] for i in range(len(dataset))) == sorted(
        dm.splits["test"]["file_name"]
    )
    assert sorted(every(dm, "file_name")) == [
        "img_000",
        "img_001",
        "img_003",
        "img_004",
        "img_005",
        "sub/img_002",
    ]
    assert f"stage=predict: boxes for the 3 images of the test split of {folder}" in caplog.text


def test_predict_on_an_image_folder_turns_photos_upright(tmp_path: Path) -> None:
    """Training sees EXIF-rotated photos upright (datasets' decoding): so must predict."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide, 20 high; shown turned a quarter: 20 wide, 40 high
    Image.new("RGB", (40, 20)).save(folder / "phone.jpg", exif=exif)
    dm = datamodule(path=str(folder), stage="predict")
    sample = dm.dataset("predict")[0]
    assert sample["orig_size"].tolist() == [40, 20]
    assert tuple(sample["image"].shape[-2:]) == (40, 20)


# ----------------------------------------------------------------------------------------------
# Settings


def test_out_of_range_settings_are_listed_before_anything_loads(
    make_config, tiny_dir: Path
) -> None:
    from hotcv_train.checks import check_config

    cfg = make_config(
        "task=detr_plates",
        *detection_overrides(tiny_dir),
        "dataset.image_size=-32",
        "dataset.hflip=1.5",
        "dataset.min_box_size=-1",
        "dataset.crop_prob=2",
        "dataset.scales=[0.5,0]",
        "module.threshold=2",
        "module.backbone_lr=-1",
    )
    with pytest.raises(UserError) as raised:
        check_config(cfg)
    assert sorted(raised.value.problems) == [
        "dataset.crop_prob: must be in [0, 1], got 2",
        "dataset.hflip: must be in [0, 1], got 1.5",
        "dataset.image_size: must be in [1, 16384], got -32",
        "dataset.min_box_size: must be >= 0, got -1",
        "dataset.scales: each value must be > 0, got [0.5, 0]",
        "module.backbone_lr: must be >= 0, got -1",
        "module.threshold: must be in [0, 1], got 2",
    ]


def test_no_training_scales_is_one_line() -> None:
    with pytest.raises(UserError, match=r"^dataset.scales: needs at least one scale"):
        datamodule(partial(plate_rows, [[[1, 1, 5, 5]]]), scales=[])


def test_a_zero_backbone_lr_freezes_the_backbone_not_unfreezes_it(tiny_dir: Path) -> None:
    """0 is a learning rate (the backbone stays put), not "unset": the optimizer's must not win."""
    from hotcv_train.models import ModelSpec
    from hotcv_train.modules.detection import ObjectDetectionModule

    spec = ModelSpec(name_or_path=str(tiny_detr(tiny_dir / "detr")))
    module = ObjectDetectionModule(
        spec,
        None,
        None,
        backbone_lr=0.0,
        threshold=0.5,
        num_plot_images=0,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=None,
        compile=False,
        channels_last=False,
    )
    groups = module.parameter_groups()
    assert [g.get("lr") for g in groups] == [None, 0.0]


def test_undecodable_images_are_counted_and_predictions_named_by_file(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """A Roboflow-style folder whose test split has an empty file: `test/skipped` counts it, and
    predict writes one picture per decodable test image, named by its file."""
    folder = tmp_path / "coco"
    for sub in ("train", "valid", "test"):
        tiny_coco(folder / sub, n=4)
    (folder / "test" / "img_002.png").write_bytes(b"")
    args = [
        "task=detr_plates",
        f"module.model.name_or_path={tiny_detr(tiny_dir / 'detr')}",
        f"dataset.path={folder}",
        "module.threshold=0.0",
    ]
    from tests.conftest import compose_config

    metrics = run(compose_config(tmp_path / "test", *args, "stage=test"))
    assert metrics["test/samples"] == 3 and metrics["test/skipped"] == 1
    out = tmp_path / "predict"
    run(compose_config(out, *args, "stage=predict"))
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["img_000", "img_001", "img_003"]
    assert sorted(r["output"] for r in records) == [f"predictions/img_00{i}.png" for i in (0, 1, 3)]
