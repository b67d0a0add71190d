"""Generated motion clips written as real video files: the class lives in the motion.

Each video shows a striped, corner-marked square on a textured background that either moves
(left, right, up, down) or turns about a point beside it (cw, ccw: clockwise on screen). Position, angle, colours,
speed and background are random, so any single frame fits every class: only how the frames change
tells them apart. Videos are encoded with PyAV into `<folder>/{train,val,test}/<class>/*.avi`,
the layout of UCF101 (`dataset=ucf101`), and reused while the generator's settings are unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from hotcv_train.errors import UserError

log = logging.getLogger(__name__)

MOTIONS = ("left", "right", "up", "down", "cw", "ccw")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPLITS = ("train", "val", "test")
MANIFEST = "synthetic_video.json"
BIT_RATE = 2_000_000  # high for the frame size: the texture survives the codec


def make_videos(
    folder: str,
    classes: list[str],
    num_train: int,
    num_val: int,
    num_test: int,
    size: int,
    frames_per_video: int,
    fps: float,
    speed: list[float],
    spin: list[float],
    seed: int,
) -> str:
    """Write the videos (once) and return `folder`, a split/class/video tree.

    Args:
        folder: Where the videos go; reused when it holds videos made with the same settings.
        classes: Motions to generate, from left, right, up, down, cw, ccw.
        num_train: Videos in the train split, spread evenly over the classes.
        num_val: Videos in the val split.
        num_test: Videos in the test split.
        size: Frame height and width in pixels.
        frames_per_video: Frames in each video.
        fps: Frame rate written to the files.
        speed: [min, max] distance moved per frame, as a fraction of the frame size.
        spin: [min, max] turn per frame in degrees (cw, ccw).
        seed: Seeds every video; the same settings always give the same files.
    """
    unknown = sorted(set(classes) - set(MOTIONS))
    if unknown or not classes:
        raise UserError(
            f"dataset.generator.classes: {unknown or 'empty'}; choose from {', '.join(MOTIONS)}"
        )
    settings = {
        "classes": list(classes),
        "counts": [num_train, num_val, num_test],
        "size": size,
        "frames_per_video": frames_per_video,
        "fps": fps,
        "speed": list(speed),
        "spin": list(spin),
        "seed": seed,
        "version": 3,
    }
    root = Path(folder).expanduser()
    manifest = root / MANIFEST
    if manifest.exists():
        if json.loads(manifest.read_text()) == settings:
            return str(root)
        for split in SPLITS:  # ours, made with other settings: make them again
            shutil.rmtree(root / split, ignore_errors=True)
        manifest.unlink()
    elif root.exists() and any(root.iterdir()):
        raise UserError(
            f"dataset.generator.folder: {root} holds files the generator did not make; "
            "point it at an empty or new folder"
        )
    from hotcv_train.video_io import write_video

    log.info("writing synthetic videos to %s", root)
    rng = np.random.default_rng(seed)
    for split, count in zip(SPLITS, (num_train, num_val, num_test)):
        for i in range(count):
            motion = classes[i % len(classes)]
            frames = render_clip(rng, motion, size, frames_per_video, speed, spin)
            path = root / split / motion / f"{motion}_{i:04d}.avi"
            write_video(path, frames, fps, bit_rate=BIT_RATE)
    manifest.write_text(json.dumps(settings, indent=1))
    return str(root)


def render_clip(
    rng: np.random.Generator,
    motion: str,
    size: int,
    num_frames: int,
    speed: list[float],
    spin: list[float],
) -> np.ndarray:
    """`(num_frames, size, size, 3)` uint8 frames of one textured square doing `motion`."""
    half = size * rng.uniform(0.11, 0.16)  # half the square's side
    colours = rng.uniform(0, 255, (3, 3))
    while np.abs(colours[0] - colours[1]).sum() < 150:  # stripes that show
        colours[1] = rng.uniform(0, 255, 3)
    background = _background(rng, size)
    angle = rng.uniform(0, 2 * np.pi)
    turn = np.deg2rad(rng.uniform(*spin)) * {"cw": 1, "ccw": -1}.get(motion, 0)
    step = np.array(DIRECTIONS.get(motion, (0, 0)), dtype=float) * rng.uniform(*speed) * size
    travel = np.abs(step) * (num_frames - 1)
    margin = half * 1.45  # the square's corner stays inside the frame at any angle
    centre = np.array(
        [rng.uniform(margin, max(margin, size - margin - travel[axis])) for axis in (0, 1)]
    )
    centre += np.where(step < 0, travel, 0)  # moving left/up starts on the right/bottom
    # Turning is a rigid rotation about a pivot beside the square, so the square both spins and
    # sweeps an arc: a spin in place alone moves too few pixels for a small model to see.
    radius = half * rng.uniform(0.8, 1.3) if turn else 0.0
    pivot = rng.uniform(margin + radius, size - margin - radius, 2)
    phase = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(float) + 0.5
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        cx, cy = centre + step * t
        if turn:  # y points down on screen: a growing angle turns clockwise
            cx, cy = pivot + radius * np.array([np.cos(phase + turn * t), np.sin(phase + turn * t)])
        theta = angle + turn * t
        # Pixel -> square coordinates (rotate back by theta): u along the stripes' normal.
        u = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
        v = -np.sin(theta) * (x - cx) + np.cos(theta) * (y - cy)
        inside = (np.abs(u) < half) & (np.abs(v) < half)
        stripe = (np.floor((u + half) / (half / 2)) % 2).astype(int)
        pixel = colours[stripe]
        marker = (u > half * 0.4) & (v > half * 0.4)
        pixel[marker] = colours[2]
        frames[t] = np.where(inside[..., None], pixel, background).astype(np.uint8)
    return frames


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture, dimmer than the square, so the motion is all that differs."""
    coarse = rng.uniform(40, 90, (size // 8 + 2, size // 8 + 2, 3))
    upsampled = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
    return upsampled + rng.normal(0, 4, (size, size, 3))
