"""Run a fixed-size image model on images of any size: overlapping tiles, blended without seams.

Pure numpy, so it serves any framework: `fn` maps a batch of tiles `(N, th, tw, C)` to outputs of
the same spatial size. A tile's outputs are least trustworthy near its borders (the model pads
there, and sees no context beyond them), so neighbouring tiles overlap and cross-fade: the first
quarter of each inner overlap is discarded, the middle half ramps with a raised cosine, and the
windows of two neighbours sum to one. A model whose receptive field reaches at most
`overlap // 4` pixels from a pixel gives exactly its untiled result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

TileFn = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile offsets covering `[0, length)`, neighbours sharing >= `overlap` pixels.

    The last tile ends flush with the image, so no tile reaches past it (`length >= tile`).
    """
    if length < tile:
        raise ValueError(f"length {length} is shorter than the tile {tile}; pad first")
    if length == tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def ramp(overlap: int) -> np.ndarray:
    """Weights rising from 0 to 1 across an overlap: zeros, a raised cosine, then ones.

    `ramp(k) + ramp(k)[::-1] == 1`, so two neighbours overlapping by exactly `k` pixels already
    form a partition of unity; wider overlaps are normalized by the sum of weights.
    """
    margin = overlap // 4
    width = overlap - 2 * margin
    weights = np.zeros(overlap)
    weights[margin : margin + width] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    weights[margin + width :] = 1.0
    return weights


def blend_window(size: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """One axis of a tile's weights: ramps on the sides that have a neighbour, ones elsewhere."""
    weights = np.ones(size)
    if overlap > 0:
        if before:
            weights[:overlap] = ramp(overlap)
        if after:
            weights[-overlap:] = ramp(overlap)[::-1]
    return weights


def pad_to_tile(image: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad an HWC image, centred, to at least the tile size; return it and its offset."""
    pads = [
        (max(0, t - n) // 2, max(0, t - n) - max(0, t - n) // 2) for n, t in zip(image.shape, tile)
    ]
    if not any(sum(p) for p in pads):
        return image, (0, 0)
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"  # reflect needs two pixels
    padded = np.pad(image, [*pads, (0, 0)], mode=mode)
    return padded, (pads[0][0], pads[1][0])


def tiled_apply(
    images: Sequence[np.ndarray],
    fn: TileFn,
    tile: tuple[int, int],
    overlap: int,
    batch_size: int,
) -> list[np.ndarray]:
    """Apply `fn` to HWC float images of any size through overlapping `tile`-sized crops.

    Tiles of all `images` are pooled and passed to `fn` in batches of up to `batch_size`, so many
    small images cost as few calls as one large one.

    Args:
        images: HWC float arrays, any sizes (smaller than a tile: reflect-padded, then cropped).
        fn: Maps `(N, th, tw, C)` tiles to `(N, th, tw, C_out)` outputs.
        tile: The model's input height and width.
        overlap: Pixels neighbouring tiles share (at most half a tile).
        batch_size: Tiles per call of `fn`.

    Returns:
        One `(H, W, C_out)` float32 array per image.
    """
    th, tw = tile
    if not 0 <= overlap <= min(th, tw) // 2:
        raise ValueError(
            f"overlap {overlap} must be within [0, {min(th, tw) // 2}] for tile {tile}"
        )
    plans = []  # (padded image, offset, tiles as (y, x, window))
    for image in images:
        padded, offset = pad_to_tile(image, tile)
        ys = tile_starts(padded.shape[0], th, overlap)
        xs = tile_starts(padded.shape[1], tw, overlap)
        tiles = []
        for i, y in enumerate(ys):
            wy = blend_window(th, overlap, i > 0, i < len(ys) - 1)
            for j, x in enumerate(xs):
                wx = blend_window(tw, overlap, j > 0, j < len(xs) - 1)
                tiles.append((y, x, np.outer(wy, wx)[..., None]))
        plans.append((padded, offset, tiles))

    jobs = [(k, y, x, w) for k, (_, _, tiles) in enumerate(plans) for y, x, w in tiles]
    sums: list[np.ndarray | None] = [None] * len(plans)
    weights = [np.zeros((*p.shape[:2], 1)) for p, _, _ in plans]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        crops = np.stack([plans[k][0][y : y + th, x : x + tw] for k, y, x, _ in chunk])
        outputs = np.asarray(fn(crops))
        if outputs.ndim != 4 or outputs.shape[:3] != crops.shape[:3]:
            raise ValueError(
                f"the model maps tiles of shape {crops.shape} to {outputs.shape}; tiling needs "
                "outputs of the same batch, height and width"
            )
        for (k, y, x, w), out in zip(chunk, outputs):
            if sums[k] is None:
                sums[k] = np.zeros((*plans[k][0].shape[:2], out.shape[-1]))
            sums[k][y : y + th, x : x + tw] += w * out
            weights[k][y : y + th, x : x + tw] += w

    results = []
    for image, (_, (top, left), _), total, weight in zip(images, plans, sums, weights):
        h, w = image.shape[:2]
        blended = total[top : top + h, left : left + w] / weight[top : top + h, left : left + w]
        results.append(blended.astype(np.float32))
    return results
