"""Input size and normalization, read from the model checkpoint's image processor."""

from __future__ import annotations

import functools
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


def crop_boxes(
    sizes: Any, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> Any:
    """RandomResizedCrop's box for every image of a batch at once: (B, 4) x1, y1, x2, y2 pixels.

    torchvision's distribution, vectorised: ten draws of area fraction and log aspect ratio,
    the first that fits the image, else the whole image trimmed to `ratio`, centred.
    `sizes` is (B, 2) heights and widths; draws come from torch's CPU generator.
    """
    import math

    import torch

    tries = 10
    h, w = sizes[:, :1].float().cpu(), sizes[:, 1:].float().cpu()
    n = len(sizes)
    area = h * w * torch.empty(n, tries).uniform_(*scale)
    aspect = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])).exp()
    cw, ch = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.int().argmax(1, keepdim=True)
    cw, ch = cw.gather(1, first), ch.gather(1, first)
    offsets = torch.rand(n, 2)
    x0, y0 = ((w - cw + 1) * offsets[:, :1]).floor(), ((h - ch + 1) * offsets[:, 1:]).floor()
    # No draw fits (a very long image): the whole image trimmed to the ratio, centred.
    wide, tall = w / h > ratio[1], w / h < ratio[0]
    fw = torch.where(wide, (h * ratio[1]).round(), w)
    fh = torch.where(tall, (w / ratio[0]).round(), h)
    none = ~fits.any(1, keepdim=True)
    cw, ch = torch.where(none, fw, cw), torch.where(none, fh, ch)
    x0 = torch.where(none, ((w - fw) / 2).floor(), x0)
    y0 = torch.where(none, ((h - fh) / 2).floor(), y0)
    return torch.cat([x0, y0, x0 + cw, y0 + ch], dim=1)


def draw_boxes(
    sizes: Any, crop_scale: tuple[float, float] | None = None, hflip: float = 0.0
) -> tuple[Any, Any]:
    """What `transform_batch` does to each image, drawn on the CPU: roi_align boxes (B, 5:
    batch index, x1, y1, x2, y2) and flips (B,) bool (None: no flips). Drawn before the batch
    moves to the device and moved with it, so the device never waits for the host (reading
    device tensors back, or copying new ones over, stops the device's queue until the host
    catches up).

    `sizes` (B, 2) heights and widths; with `crop_scale` (training) each box is RandomResizedCrop's
    and each image is flipped with probability `hflip`, else the box is the whole image.
    """
    import torch

    n = len(sizes)
    if crop_scale is not None:
        boxes = crop_boxes(sizes, crop_scale)
    else:
        boxes = torch.cat([torch.zeros(n, 2), sizes.flip(1).float().cpu()], dim=1)
    boxes = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], boxes], dim=1)
    flip = torch.rand(n) < hflip if crop_scale is not None and hflip > 0 else None
    return boxes, flip


def transform_batch(images: Any, boxes: Any, flip: Any | None, p: Preprocessing) -> Any:
    """The classification transforms on a whole uint8 batch, on whatever device it is on.

    `images` (B, C, H, W) hold each image at the top left (smaller images are zero-padded);
    `boxes` and `flip` from `draw_boxes`, on the images' device. One bilinear resample of each
    box (roi_align: averaging several samples per output pixel when shrinking, an antialias) to
    `p.size`, the flips, then normalisation. Saves the per-sample CPU work that keeps a GPU
    waiting: only decoding stays in the DataLoader.
    """
    import torch
    from torchvision.ops import roi_align

    out = roi_align(images.float(), boxes.to(images.device), output_size=p.size, aligned=True)
    if flip is not None:
        out = torch.where(flip.to(images.device)[:, None, None, None], out.flip(-1), out)
    mean, std = channel_stats(p.mean, p.std, images.device)
    return out.mul_(1 / 255).sub_(mean).div_(std)


@functools.cache
def channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: Any) -> tuple[Any, Any]:
    """Mean and std as (C, 1, 1) tensors on `device`, made once: copying them every batch would
    make the device wait for the host."""
    import torch

    return (
        torch.tensor(mean, device=device)[:, None, None],
        torch.tensor(std, device=device)[:, None, None],
    )
