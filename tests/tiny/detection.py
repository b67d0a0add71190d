"""A tiny DETR (ResNet backbone built from config) and tiny plate data in the hub's schema."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEIGHT, WIDTH = 64, 80

# A transformers ResNet (no timm, no download), 3 stages, stride 16.
TINY_BACKBONE = {
    "model_type": "resnet",
    "embedding_size": 8,
    "hidden_sizes": [8, 16, 16],
    "depths": [1, 1, 1],
    "layer_type": "basic",
    "out_features": ["stage3"],
}
TINY_TRANSFORMER = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "num_queries": 6,
}


def tiny_detr(folder: Path, model_type: str = "detr") -> Path:
    """A ~30k-parameter DETR-family model with one class and its image processor, saved."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForObjectDetection

    from hotcv_train.modules.detection import processor_class

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        use_timm_backbone=False,
        backbone_config=TINY_BACKBONE,
        num_labels=1,
        id2label={0: "license_plate"},
        label2id={"license_plate": 0},
        **TINY_TRANSFORMER,
    )
    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    AutoModelForObjectDetection.from_config(config).save_pretrained(building)
    processor = processor_class(model_type)(
        size={"shortest_edge": HEIGHT, "longest_edge": 96},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor.save_pretrained(building)
    building.rename(folder)
    return folder


def tiny_plates(folder: Path, n_train: int = 24, n_eval: int = 8) -> Path:
    """Generated plates in the hub schema (train/validation/test), saved with save_to_disk."""
    if (folder / "dataset_dict.json").exists():
        return folder
    from hotcv_train.data.synthetic_plates import make_plates

    make_plates(n_train, n_eval, n_eval, HEIGHT, WIDTH, 2, 0.3, 0.6, seed=1).save_to_disk(
        str(folder)
    )
    return folder


def coco_folder(folder: Path, data_folder: Path) -> Path:
    """The same data as a Roboflow COCO export: `train/ valid/ test/` + `_annotations.coco.json`."""
    if folder.exists():
        return folder
    import datasets

    data = datasets.load_from_disk(str(data_folder))
    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    for split, sub in (("train", "train"), ("validation", "valid"), ("test", "test")):
        images, annotations = [], []
        for row in data[split]:
            name = f"{row['image_id']:05d}.png"  # lossless: samples must match
            (building / sub).mkdir(parents=True, exist_ok=True)
            row["image"].save(building / sub / name)
            images.append(
                {
                    "id": row["image_id"],
                    "file_name": name,
                    "width": row["width"],
                    "height": row["height"],
                }
            )
            objects = row["objects"]
            for box_id, bbox, area in zip(objects["id"], objects["bbox"], objects["area"]):
                annotations.append(
                    {
                        "id": box_id,
                        "image_id": row["image_id"],
                        "category_id": 1,
                        "bbox": bbox,
                        "area": area,
                        "iscrowd": 0,
                    }
                )
        coco = {
            "images": images,
            "annotations": annotations,
            # Roboflow's layout: the dataset's name as category 0, the real class under it
            "categories": [
                {"id": 0, "name": "plates", "supercategory": "none"},
                {"id": 1, "name": "license_plate", "supercategory": "plates"},
            ],
        }
        (building / sub / "_annotations.coco.json").write_text(json.dumps(coco))
    building.rename(folder)
    return folder


def tiny_coco(folder: Path, n: int = 6, edit: Callable[[dict], Any] | None = None) -> Path:
    """A plain COCO folder: `annotations.json` and n 40x32 PNGs (`img_000.png`...), one white
    box each, category 1 `plate`; `edit(coco)` changes the JSON before it is written (a str it
    returns is written instead, for broken files)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        pixels = np.zeros((32, 40, 3), np.uint8)
        pixels[4:12, 4 + i : 16 + i] = 255
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
        images.append({"id": 100 + i, "file_name": f"img_{i:03d}.png", "width": 40, "height": 32})
        annotations.append(
            {"id": i + 1, "image_id": 100 + i, "category_id": 1, "bbox": [4 + i, 4, 12, 8]}
        )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "plate", "supercategory": "none"}],
    }
    text = edit(coco) if edit is not None else None
    (folder / "annotations.json").write_text(text if isinstance(text, str) else json.dumps(coco))
    return folder


def detection_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_detr(root / 'detr')}",
        f"dataset.path={tiny_plates(root / 'plates')}",
        "dataset.batch_size=4",
    ]


def synthetic_overrides(root: Path) -> list[str]:
    return [
        "dataset.generator.num_train=16",
        "dataset.generator.num_validation=8",
        "dataset.generator.num_test=8",
        "dataset.batch_size=4",
        "trainer.max_epochs=1",
    ]


TASKS = {"detr_plates": detection_overrides}
EXPERIMENTS = {"detection_synthetic": synthetic_overrides}
