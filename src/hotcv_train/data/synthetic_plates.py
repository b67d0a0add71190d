"""Generated "licence plates" on real photo crops, with exact boxes, in the hub plates' schema.

Each image is a random crop of one of scikit-learn's sample photos (a temple, a flower), resized,
with 0 to `max_plates` plates pasted on it: light rectangles with a dark rim and dark glyph-like
stripes (character strokes), of varied size, aspect ratio and position, never overlapping. The
boxes are the pasted rectangles themselves, so they are exact. The schema is that of
`keremberke/license-plate-object-detection`: `image`, `image_id`, `width`, `height` and `objects`
= {`id`, `area`, `bbox` (COCO `[x, y, w, h]` in pixels), `category`}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LABEL_NAMES = ["license_plate"]


def make_plates(
    num_train: int,
    num_validation: int,
    num_test: int,
    height: int,
    width: int,
    max_plates: int,
    min_width: float,
    max_width: float,
    seed: int,
) -> Any:
    """A DatasetDict with `train`, `validation` and `test` splits of generated plate images.

    Args:
        num_train: Images in the train split.
        num_validation: Images in the validation split.
        num_test: Images in the test split.
        height: Image height in pixels.
        width: Image width in pixels.
        max_plates: Each image has 0..max_plates plates (uniformly).
        min_width: Smallest plate width, as a fraction of the image width.
        max_width: Largest plate width, as a fraction of the image width.
        seed: Seeds every image; the same seed always gives the same data.
    """
    import datasets
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(p) for p in load_sample_images().images]
    from hotcv_train.datamodules.detection import detection_features

    features = detection_features(LABEL_NAMES)
    rng = np.random.default_rng(seed)
    splits, next_id, next_box = {}, 0, 0
    for split, n in (("train", num_train), ("validation", num_validation), ("test", num_test)):
        rows: dict[str, list] = {k: [] for k in features}
        for _ in range(n):
            image, boxes = render_image(
                rng, photos, height, width, max_plates, (min_width, max_width)
            )
            rows["image"].append(Image.fromarray(image))
            rows["image_id"].append(next_id)
            rows["width"].append(width)
            rows["height"].append(height)
            rows["objects"].append(
                {
                    "id": list(range(next_box, next_box + len(boxes))),
                    "area": [float(w * h) for _, _, w, h in boxes],
                    "bbox": [[float(v) for v in box] for box in boxes],
                    "category": [0] * len(boxes),
                }
            )
            next_id, next_box = next_id + 1, next_box + len(boxes)
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict(splits)


def render_image(
    rng: np.random.Generator,
    photos: list[np.ndarray],
    height: int,
    width: int,
    max_plates: int,
    plate_width: tuple[float, float],
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One `(H, W, 3)` uint8 image and its plates' `(x, y, w, h)` boxes in pixels."""
    image = background(rng, photos, height, width)
    boxes: list[tuple[int, int, int, int]] = []
    wanted = int(rng.integers(0, max_plates + 1))
    for _ in range(50 * wanted):  # rejection sampling of non-overlapping places
        if len(boxes) == wanted:
            break
        w = round(width * rng.uniform(*plate_width))
        h = max(4, round(w / rng.uniform(2.0, 4.5)))
        if w >= width or h >= height:
            continue
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        if any(_overlap((x, y, w, h), b, margin=2) for b in boxes):
            continue
        image[y : y + h, x : x + w] = plate(rng, h, w)
        boxes.append((x, y, w, h))
    return image, boxes


def background(
    rng: np.random.Generator, photos: list[np.ndarray], height: int, width: int
) -> np.ndarray:
    """A random crop (25-100% of the shorter side) of a random photo, resized to `height x width`."""
    from PIL import Image

    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    side = int(min(ph, pw) * rng.uniform(0.25, 1.0))
    ch, cw = (
        (side, round(side * width / height))
        if width <= height
        else (
            round(side * height / width),
            side,
        )
    )
    ch, cw = min(ch, ph), min(cw, pw)
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = Image.fromarray(photo[top : top + ch, left : left + cw])
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.array(crop.resize((width, height), Image.Resampling.BILINEAR))


def plate(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A light plate with a dark rim and a row of dark glyph strokes, `(h, w, 3)` uint8."""
    base = rng.uniform(190, 250) + rng.uniform(-15, 15, 3)  # white to slightly yellow / blue
    pixels = np.broadcast_to(base, (h, w, 3)).copy()
    ink = rng.uniform(10, 70, 3)
    rim = max(1, round(min(h, w) * 0.06))
    pixels[:rim], pixels[-rim:], pixels[:, :rim], pixels[:, -rim:] = ink, ink, ink, ink
    top, bottom = round(h * 0.25), max(round(h * 0.25) + 1, round(h * 0.78))
    x = rim + max(1, round(w * 0.05))
    right = w - rim - max(1, round(w * 0.05))
    glyph = max(2, round(w * rng.uniform(0.07, 0.11)))
    while x + glyph <= right:
        strokes = rng.integers(1, 4)  # 1-3 vertical strokes, sometimes a bar: a character's look
        for s in range(strokes):
            sx = x + round(s * (glyph - 1) / max(1, strokes - 1)) if strokes > 1 else x + glyph // 2
            pixels[top:bottom, sx : sx + max(1, glyph // 4)] = ink
        if rng.random() < 0.5:
            row = int(rng.integers(top, bottom))
            pixels[row : row + max(1, (bottom - top) // 6), x : x + glyph] = ink
        x += glyph + max(1, glyph // 3)
    pixels += rng.normal(0, 6, pixels.shape)
    return pixels.clip(0, 255).astype(np.uint8)


def _overlap(a: tuple[int, ...], b: tuple[int, ...], margin: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return not (
        ax + aw + margin <= bx
        or bx + bw + margin <= ax
        or ay + ah + margin <= by
        or by + bh + margin <= ay
    )
