"""A tiny SavedModel shaped like MAXIM's export, and smooth noisy/clean image pairs (SIDD-style).

The stand-in keeps what the loader relies on: a `serving_default` signature with one named NHWC
input of fixed tile size, and several outputs named like Keras layers (multi-stage, multi-scale),
of which the final image is the last-built one at full size. Its final output is a fixed 3x3
Gaussian blur, which really denoises smooth images, so PSNR must rise over the noisy input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TILE = 32
NOISE = 0.08
BLUR = np.outer([1, 2, 1], [1, 2, 1]) / 16
FINAL, EARLY, COARSE = "tf.__operators__.add_12", "tf.__operators__.add_3", "resizing_2"
# (relative stem, height, width): sizes that are not multiples of the tile, one smaller than it
PAIRS = [("a", 45, 70), ("scene/b", 32, 37), ("c", 20, 27)]


def require_tensorflow() -> None:
    """Skip the calling test where the `tf` extra is not installed."""
    # torch and Lightning first: the CUDA build of torch (its triton, loaded by Lightning) crashes
    # when TensorFlow was imported before it.
    import lightning  # noqa: F401
    import torch  # noqa: F401

    pytest.importorskip(
        "tensorflow", reason="the maxim_denoise task needs TensorFlow: pip install -e '.[tf]'"
    )


def blur_kernel(channels: int = 3) -> np.ndarray:
    """The blur as a depthwise HWC1 kernel."""
    return np.repeat(BLUR[:, :, None, None], channels, axis=2).astype(np.float32)


def tiny_denoiser(folder: Path, tile: int = TILE, batch: int | None = None) -> Path:
    """Export the stand-in with `tf.saved_model.save` and a `serving_default` signature."""
    if (folder / "saved_model.pb").exists():
        return folder
    import tensorflow as tf

    class TinyMaxim(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(blur_kernel(), name="stage_1_output_conv_0")

        @tf.function
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            blurred = tf.nn.depthwise_conv2d(images, self.kernel, [1, 1, 1, 1], "SAME")
            return {
                EARLY: images + 0.0,  # an earlier stage's output: full size, not denoised
                COARSE: tf.nn.avg_pool2d(images, 2, 2, "VALID"),  # a coarser scale
                FINAL: blurred,
            }

    model = TinyMaxim()
    spec = tf.TensorSpec([batch, tile, tile, 3], tf.float32, name="input_1")
    signatures = {"serving_default": model.serve.get_concrete_function(spec)}
    tf.saved_model.save(model, str(folder), signatures=signatures)
    return folder


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A clean HWC float image of gentle gradients and waves, within [0.15, 0.85]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / 24.0
    channels = [
        np.sin(fy * y + fx * x + phase)
        for fy, fx, phase in rng.uniform([0.2, 0.2, 0], [1.0, 1.0, 6.28], (3, 3))
    ]
    return 0.5 + 0.35 * np.stack(channels, axis=-1)


def noisy_pairs(root: Path) -> tuple[Path, Path]:
    """`root/noisy/<stem>.png` with Gaussian noise and the clean `root/clean/<stem>.png`."""
    noisy_dir, clean_dir = root / "noisy", root / "clean"
    if clean_dir.is_dir():
        return noisy_dir, clean_dir
    from PIL import Image

    for seed, (stem, height, width) in enumerate(PAIRS):
        clean = smooth_image(height, width, seed)
        noisy = clean + np.random.default_rng(100 + seed).normal(0, NOISE, clean.shape)
        for folder, image in ((noisy_dir, noisy), (clean_dir, clean)):
            path = folder / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image.clip(0, 1) * 255).round().astype(np.uint8)).save(path)
    return noisy_dir, clean_dir


def maxim_overrides(root: Path) -> list[str]:
    require_tensorflow()
    noisy, clean = noisy_pairs(root / "denoise_pairs")
    return [
        f"module.model.name_or_path={tiny_denoiser(root / 'tiny_maxim')}",
        "module.batch_tiles=4",
        f"dataset.path={noisy}",
        f"dataset.references={clean}",
        "dataset.batch_size=2",
    ]


TASKS = {"maxim_denoise": maxim_overrides}
