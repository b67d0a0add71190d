"""A tiny ViT and a tiny CIFAR-10-schema dataset (img, label) whose classes are learnable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_LABELS = 4


def tiny_vit(folder: Path, image_size: int = 32) -> Path:
    """A 2-layer, 32-wide ViT and its image processor, saved like a hub checkpoint."""
    if (folder / "config.json").exists():
        return folder
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=NUM_LABELS,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)
    return folder


def colour_images(n: int, seed: int, size: int = 32) -> tuple[list, list[int]]:
    """Noisy images whose class is their dominant colour channel (or grey): easy to learn."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        label = i % NUM_LABELS
        pixels = rng.integers(0, 80, (size, size, 3))
        if label < 3:
            pixels[..., label] += 150
        else:
            pixels += 90
        images.append(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
        labels.append(label)
    return images, labels


def tiny_cifar(folder: Path, n_train: int = 48, n_test: int = 17) -> Path:
    """A DatasetDict with `train`/`test` in CIFAR-10's schema, saved with save_to_disk."""
    if (folder / "dataset_dict.json").exists():
        return folder
    import datasets

    features = datasets.Features(
        {
            "img": datasets.Image(),
            "label": datasets.ClassLabel(names=["red", "green", "blue", "grey"]),
        }
    )
    splits = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = colour_images(n, seed)
        splits[split] = datasets.Dataset.from_dict(
            {"img": images, "label": labels}, features=features
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def classification_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_vit(root / 'vit')}",
        f"dataset.path={tiny_cifar(root / 'cifar')}",
        "dataset.batch_size=8",
    ]


TASKS = {"vit_cifar10": classification_overrides}
EXPERIMENTS = {"quickstart": lambda root: []}  # offline and small already
