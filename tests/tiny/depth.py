"""A tiny GLPN and a tiny NYU-schema dataset (image, depth_map) with NYU's kinds of invalid depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 64, 96  # multiples of GLPN's size_divisor, so evaluation keeps the full frame


def tiny_glpn(folder: Path) -> Path:
    """A 4-stage GLPN, 8-32 wide (~60k parameters), and its image processor, saved like the hub's."""
    if (folder / "config.json").exists():
        return folder
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    config = GLPNConfig(
        num_encoder_blocks=4,
        depths=[1, 1, 1, 1],
        hidden_sizes=[8, 16, 16, 32],
        num_attention_heads=[1, 1, 2, 2],
        sr_ratios=[8, 4, 2, 1],
        decoder_hidden_size=16,
        drop_path_rate=0.0,
        max_depth=10,
    )
    GLPNForDepthEstimation(config).save_pretrained(folder)
    GLPNImageProcessor().save_pretrained(folder)
    return folder


def tiny_nyu(folder: Path, n_train: int = 24, n_validation: int = 8) -> Path:
    """NYU Depth V2's schema and splits, saved with save_to_disk; depth has 0 and NaN holes.

    The first train sample has no valid pixel at all, which training must skip, not turn into NaN.
    """
    if (folder / "dataset_dict.json").exists():
        return folder
    import datasets
    from PIL import Image

    from hotcv_train.data.synthetic_depth import make_scenes

    scenes = make_scenes(n_train, n_validation, HEIGHT, WIDTH, 0, 2, 2, 0.5)
    splits = {}
    for split, rows in scenes.items():
        depths = [np.asarray(d, dtype=np.float32).copy() for d in rows["depth_map"]]
        for i, depth in enumerate(depths):
            depth[10:14, 20 + i : 30 + i] = np.nan  # NaN holes, as some NYU exports have
        if split == "train":
            depths[0][:] = 0
        splits[split] = datasets.Dataset.from_dict(
            {"image": rows["image"], "depth_map": [Image.fromarray(d, mode="F") for d in depths]},
            features=rows.features,
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def depth_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_glpn(root / 'glpn')}",
        f"dataset.path={tiny_nyu(root / 'nyu')}",
        "dataset.crop_size=[32,64]",
        "dataset.batch_size=4",
    ]


TASKS = {"glpn_nyu": depth_overrides}
EXPERIMENTS = {
    "depth_synthetic": lambda root: [
        "dataset.generator.num_train=16",
        "dataset.generator.num_validation=8",
    ]
}
