"""Input size and normalization, read from the model checkpoint's image processor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hotcv_train.errors import UserError
from hotcv_train.models import load_image_processor


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]


def resolve_preprocessing(
    processor: str | None,
    image_size: int | list[int] | None,
    image_mean: list[float] | None,
    image_std: list[float] | None,
) -> Preprocessing:
    """Explicit values win; the rest come from `processor`'s config (a hub id or local folder)."""
    given = {"image_size": image_size, "image_mean": image_mean, "image_std": image_std}
    if None in given.values():
        if processor is None:
            missing = ", ".join(f"dataset.{k}" for k, v in given.items() if v is None)
            raise UserError(
                f"{missing}: needed when the model is built from scratch "
                "(module.model.name_or_path=null leaves no image processor to read them from)"
            )
        proc = load_image_processor(processor)
        image_size = image_size if image_size is not None else _processor_size(proc)
        image_mean = image_mean if image_mean is not None else list(proc.image_mean)
        image_std = image_std if image_std is not None else list(proc.image_std)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return Preprocessing(size=size, mean=tuple(image_mean), std=tuple(image_std))


def _processor_size(proc: object) -> tuple[int, int]:
    size = getattr(proc, "crop_size", None) or getattr(proc, "size", None) or {}
    if "height" in size:
        return size["height"], size["width"]
    if "shortest_edge" in size:
        return size["shortest_edge"], size["shortest_edge"]
    raise UserError(
        f"dataset.image_size: cannot read an input size from processor {proc!r}; set it"
    )


def to_rgb(image: Any) -> Any:
    """Any PIL image as 8-bit RGB: 16-bit and float greys are rescaled instead of clipped to
    white, transparency is flattened onto black, CMYK/palette/grey are converted."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        grey = (pixels / top * 255).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when palette transparency is dropped directly
    return image.convert("RGB")
