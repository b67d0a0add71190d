"""Procedural indoor scenes with exact depth, in NYU Depth V2's schema (`image`, `depth_map`).

Each scene is ray-cast from a pinhole camera: a checkered floor, a ceiling, brick-textured walls
and boxes standing on the floor at known distances. The image carries the cues a monocular model
learns depth from (perspective of floor tiles and bricks, occlusion, a light at the camera that
dims with distance), so a small model can learn it in minutes on a CPU. Depth is z-depth in metres
as a float (`F`) image; like NYU, some pixels are invalid (0): a border and random holes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def make_scenes(
    num_train: int,
    num_validation: int,
    height: int,
    width: int,
    seed: int,
    max_boxes: int,
    invalid_border: int,
    hole_prob: float,
) -> Any:
    """A DatasetDict with `train` and `validation` splits of `image` (RGB) and `depth_map` (metres).

    Args:
        num_train: Scenes in the train split.
        num_validation: Scenes in the validation split (NYU's test images live in `validation`).
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Seeds every scene; the same seed always gives the same data.
        max_boxes: Up to this many boxes stand on the floor of each scene.
        invalid_border: Pixels of invalid (0) depth along each edge, as NYU has.
        hole_prob: Chance that a scene has one rectangular hole of invalid depth.
    """
    import datasets
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "depth_map": datasets.Image()})
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", num_train), ("validation", num_validation)):
        images, depths = [], []
        for _ in range(n):
            image, depth = render_scene(rng, height, width, max_boxes)
            depth = invalidate(rng, depth, invalid_border, hole_prob)
            images.append(Image.fromarray(image))
            depths.append(Image.fromarray(depth, mode="F"))
        splits[split] = datasets.Dataset.from_dict(
            {"image": images, "depth_map": depths}, features=features
        )
    return datasets.DatasetDict(splits)


def render_scene(
    rng: np.random.Generator, height: int, width: int, max_boxes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One random room: an `(H, W, 3)` uint8 image and its `(H, W)` float32 z-depth in metres."""
    focal = width * rng.uniform(0.75, 0.95)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    # Camera-frame rays with z = 1, so the hit distance along a ray is its z-depth.
    ray_cam = np.stack([(u - width / 2) / focal, -(v - cy) / focal, np.ones_like(u)], -1)
    yaw = rng.uniform(-0.35, 0.35)
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    ray = ray_cam @ rotation.T  # world frame: camera at the origin, y up

    cam_height = rng.uniform(1.2, 1.7)
    ceiling = rng.uniform(2.5, 3.0) - cam_height
    left, right = -rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)
    back = rng.uniform(5.0, 9.0)

    depth = np.full((height, width), np.inf)
    normal = np.zeros((height, width, 3))
    surface = np.zeros((height, width), dtype=np.int64)  # 0 floor, 1 ceiling, 2 wall, 3+ box
    # Axis-aligned planes: (axis, position, surface id).
    planes = [(1, -cam_height, 0), (1, ceiling, 1), (0, left, 2), (0, right, 2), (2, back, 2)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, position, surface_id in planes:
            t = position / ray[..., axis]
            hit = (t > 0) & (t < depth)
            depth = np.where(hit, t, depth)
            surface = np.where(hit, surface_id, surface)
            normal[hit] = np.eye(3)[axis]
        colours = [_random_colour(rng) for _ in range(3 + max_boxes)]
        for b in range(rng.integers(1, max_boxes + 1)):
            size = rng.uniform([0.4, 0.4, 0.4], [1.2, 1.6, 1.2])
            centre_x = rng.uniform(left + size[0] / 2, right - size[0] / 2)
            centre_z = rng.uniform(1.2, back - size[2] / 2 - 0.2)
            low = np.array([centre_x - size[0] / 2, -cam_height, centre_z - size[2] / 2])
            t1, t2 = low / ray, (low + size) / ray
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_in, t_out = near.max(-1), far.min(-1)
            hit = (t_in <= t_out) & (t_in > 0) & (t_in < depth)
            depth = np.where(hit, t_in, depth)
            surface = np.where(hit, 3 + b, surface)
            normal[hit] = np.eye(3)[near.argmax(-1)[hit]]

    point = ray * depth[..., None]
    image = np.empty((height, width, 3))
    floor_tile = rng.uniform(0.4, 0.7)
    checker = (np.floor(point[..., 0] / floor_tile) + np.floor(point[..., 2] / floor_tile)) % 2
    floor = np.where(checker[..., None] > 0, colours[0], 0.45 * colours[0])
    brick = _bricks(point, normal)
    texture = {
        0: floor,
        1: np.broadcast_to(colours[1], image.shape),
        2: brick[..., None] * colours[2],
    }
    for surface_id, values in texture.items():
        image = np.where((surface == surface_id)[..., None], values, image)
    boxes = surface >= 3
    grid = 0.75 + 0.25 * ((np.abs(point) % 0.2) > 0.03).all(-1)  # thin lines 20 cm apart
    image[boxes] = np.array(colours)[surface[boxes]] * grid[boxes][:, None]

    # A light at the camera: Lambertian shading that dims with distance.
    direction = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    lambert = np.abs((direction * normal).sum(-1))
    light = (0.3 + 0.7 * lambert) / (1 + 0.03 * depth**2)
    image = image * light[..., None] + rng.normal(0, 0.015, image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return image, depth.astype(np.float32)


def invalidate(
    rng: np.random.Generator, depth: np.ndarray, border: int, hole_prob: float
) -> np.ndarray:
    """Zero (invalid) depth along the border and, with `hole_prob`, in one random rectangle."""
    depth = depth.copy()
    if border > 0:
        depth[:border], depth[-border:], depth[:, :border], depth[:, -border:] = 0, 0, 0, 0
    if rng.random() < hole_prob:
        h, w = depth.shape
        hh, ww = rng.integers(2, max(3, h // 4)), rng.integers(2, max(3, w // 4))
        top, left = rng.integers(0, h - hh), rng.integers(0, w - ww)
        depth[top : top + hh, left : left + ww] = 0
    return depth


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.35, 1.0, 3)


def _bricks(point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Brightness of a brick wall (25 x 12.5 cm bricks, dark mortar) at world `point`."""
    along = np.where(normal[..., 0] > 0, point[..., 2], point[..., 0])  # the wall's horizontal axis
    row = np.floor(point[..., 1] / 0.125)
    offset = (row % 2) * 0.125
    mortar = ((point[..., 1] % 0.125) < 0.02) | (((along + offset) % 0.25) < 0.02)
    return np.where(mortar, 0.45, 0.9)
