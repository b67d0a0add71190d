"""Input pipeline: training images/s per CPU core of each fit task's own transforms.

Each row builds the task's datamodule from its real config (`task=<name>`, synthetic rows in the
dataset's schema in place of the hub data) and times what one DataLoader worker does: read a row
(decode the stored image), run `to_sample('train')` and collate batches. One process, one torch
thread: images/s per core. Then: cores needed to feed ViT-L/32-384 at ~3,000 img/s (what an H100
can train).

A new fit task is one more `Pipeline` in `PIPELINES`: a task name, the overrides that make its
data synthetic, and a function returning its rows.

    python benchmarks/input_pipeline.py [--smoke]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, Options, Row, median, standalone

TARGET_IMAGES_PER_S = 3000  # ViT-L/32-384 training on one H100 (see gpu_throughput.py)


def cifar_like(n: int, seed: int = 0) -> Any:
    """CIFAR-10's schema (img: 32x32 RGB PNG, label: ClassLabel) with smooth random images."""
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)  # upscaled: photo-like smoothness
    images = [Image.fromarray(a).resize((32, 32), Image.BILINEAR) for a in small]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
    )
    rows = {"img": images, "label": [i % 10 for i in range(n)]}
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)})


def nyu_like(n: int, seed: int = 0) -> Any:
    """NYU Depth V2's schema at its size (480x640 RGB + float depth): procedural rooms."""
    from hotcv_train.data.synthetic_depth import make_scenes

    return make_scenes(n, 1, 480, 640, seed, 3, 2, 0.3)


@dataclass
class Pipeline:
    name: str  # row name
    task: str  # conf/task/<task>.yaml
    overrides: list[str]  # besides task=...: synthetic data in place of the hub's
    generator: Callable[[int], Any]  # n distinct rows -> DatasetDict with a train split
    what: str


PIPELINES = [
    Pipeline(
        "classification_384",
        "vit_cifar10",
        [
            "dataset.image_size=384",  # ViT-L/32-384's input
            "dataset.image_mean=[0.5,0.5,0.5]",  # its processor's values, without the hub
            "dataset.image_std=[0.5,0.5,0.5]",
        ],
        cifar_like,
        "vit_cifar10 train transforms, 32 px CIFAR-like PNGs -> 384 px (RandomResizedCrop, flip, "
        "normalise)",
    ),
    Pipeline(
        "classification_384_device",
        "vit_cifar10",
        [
            "dataset.image_size=384",
            "dataset.image_mean=[0.5,0.5,0.5]",
            "dataset.image_std=[0.5,0.5,0.5]",
            "dataset.device_transforms=true",
        ],
        cifar_like,
        "vit_cifar10 with dataset.device_transforms=true: the DataLoader only decodes 32 px "
        "PNGs and stacks them as uint8; crop, flip, resize to 384 and normalise run on the device",
    ),
    Pipeline(
        "depth_480x640",
        "glpn_nyu",
        ["dataset.image_mean=[0.0,0.0,0.0]", "dataset.image_std=[1.0,1.0,1.0]"],  # GLPN's
        nyu_like,
        "glpn_nyu train transforms, 480x640 image + float depth map -> 448x576 crop, flip, "
        "colour jitter",
    ),
]


def build_datamodule(pipeline: Pipeline, distinct: int) -> Any:
    """The task's datamodule from the composed config, its rows from `pipeline.generator`."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import hotcv_train  # noqa: F401  (registers the config's resolvers)

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"task={pipeline.task}", "dataset.path=null", *pipeline.overrides],
        )
    datamodule = instantiate(
        cfg.dataset, generator=partial(pipeline.generator, distinct), _convert_="object"
    )
    datamodule.setup("fit")
    return datamodule, int(cfg.dataset.batch_size)


def images_per_second(pipeline: Pipeline, samples: int, distinct: int, repeats: int) -> dict:
    """Median images/s over `repeats` passes of `samples` rows (cycling the `distinct` made)."""
    import torch

    datamodule, batch_size = build_datamodule(pipeline, distinct)
    dataset, collate = datamodule.dataset("train"), datamodule.collate_fn("train")
    distinct = len(dataset)  # what train kept (val/test may be carved from it)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: a DataLoader worker runs one torch thread too
    try:
        collate([dataset[i % distinct] for i in range(2)])  # warm-up
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for first in range(0, samples, batch_size):
                batch = [
                    dataset[i % distinct] for i in range(first, min(first + batch_size, samples))
                ]
                collate(batch)
            rates.append(samples / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(threads)
    return {"rate": median(rates), "rates": [round(r, 1) for r in rates], "batch_size": batch_size}


def rows(opts: Options) -> list[Row]:
    samples, distinct = (16, 4) if opts.smoke else (256, 16)
    out = []
    for p in PIPELINES:
        opts.log(f"input pipeline: {p.name} ({samples} samples)")
        measured = images_per_second(p, samples, distinct, opts.repeats)
        rate = measured["rate"]
        out.append(
            Row(
                f"pipeline.{p.name}",
                rate,
                "img/s/core",
                f"{p.what}; one process, one thread, rows decoded + transformed + collated",
                details=measured,
            )
        )
        out.append(
            Row(
                f"pipeline.{p.name}.cores_for_{TARGET_IMAGES_PER_S}",
                TARGET_IMAGES_PER_S / rate,
                "cores",
                f"DataLoader workers (one core each) to feed {TARGET_IMAGES_PER_S} img/s with "
                f"{p.name}'s transforms",
            )
        )
    return out


def main() -> None:
    standalone(rows, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
