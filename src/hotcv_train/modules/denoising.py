"""Image denoising (restoration) with a TensorFlow SavedModel, e.g. MAXIM, tiled to any image size."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torchmetrics import MeanMetric
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image import StructuralSimilarityIndexMeasure

from hotcv_train.checks import Count, looks_local
from hotcv_train.errors import UserError
from hotcv_train.models import KEY, ModelSpec
from hotcv_train.modules.inference import InferenceModule
from hotcv_train.tiling import tiled_apply

log = logging.getLogger(__name__)

TF_MISSING = "module: this task runs TensorFlow, not installed here; pip install -e '.[tf]'"
ANY_SIZE_TILE = 256  # tile side for models that take any input size: bounded memory per call
SSIM_KERNEL = 11  # torchmetrics' default Gaussian window; smaller images get no SSIM


def natural_key(name: str) -> list[Any]:
    """Sort key that orders `add_9` before `add_10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def pick_output(shapes: dict[str, tuple[int | None, ...]], size: tuple[int, int]) -> str:
    """The signature output holding the final image, when the signature has several.

    Multi-stage models such as MAXIM return every stage at every scale; Keras names the outputs
    after the layers that made them (`tf.__operators__.add_12`) or their position (`output_8`),
    numbered in build order. The final image is the last-built output at the input's resolution.
    """
    full = [k for k, shape in shapes.items() if len(shape) == 4 and tuple(shape[1:3]) == size]
    if not full:
        full = [k for k, shape in shapes.items() if len(shape) == 4 and None in shape[1:3]]
    if not full:
        listing = ", ".join(f"{k} {list(v)}" for k, v in sorted(shapes.items()))
        raise UserError(
            f"module.output_key: no output of the signature has the input's size {list(size)} "
            f"(outputs: {listing}); set module.output_key to the one holding the image"
        )
    return max(full, key=natural_key)


def resolve_saved_model(model: ModelSpec) -> Path:
    """A local SavedModel folder, downloading a hub id first (hub ids are cached by huggingface_hub)."""
    from hotcv_train.hub import hub_errors

    name_or_path = model.name_or_path
    if name_or_path is None:
        raise UserError(f"{KEY}: needs a TensorFlow SavedModel (hub id or local folder)")
    if looks_local(name_or_path):
        folder = Path(name_or_path).expanduser()
    else:
        from huggingface_hub import snapshot_download

        with hub_errors(name_or_path, KEY):
            folder = Path(snapshot_download(name_or_path, **model.hub_options))
    if not (folder / "saved_model.pb").is_file():
        raise UserError(
            f"{KEY}: {name_or_path} has no saved_model.pb; point it at a "
            "TensorFlow SavedModel folder (tf.saved_model.save / Keras model.export)"
        )
    return folder


def import_tensorflow(device: torch.device) -> Any:
    """Import TensorFlow and give it this rank's GPU only, growing its memory as needed.

    Imported here, never at module level: by the time a module is set up, torch and Lightning
    (with the triton it loads) are imported, and the CUDA build of torch segfaults when
    TensorFlow was imported before them. Without the pinning, every rank's TensorFlow would claim
    all the memory of every GPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TensorFlow's INFO lines out of logs
    try:
        import tensorflow as tf
    except ImportError as e:
        raise UserError(f"{TF_MISSING} ({e})") from None

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        # A CPU trainer keeps TensorFlow off the GPUs too; a CUDA rank gets the GPU it runs on.
        visible = [gpus[(device.index or 0) % len(gpus)]] if device.type == "cuda" else []
        try:
            tf.config.set_visible_devices(visible, "GPU")
            for gpu in visible:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as e:  # TensorFlow already ran in this process: keep its placement
            log.warning("cannot pin TensorFlow to %s (%s)", visible or "the CPU", e)
    return tf


class SavedModelTiles:
    """One signature of a SavedModel as a function of NHWC float32 tiles in [0, 1].

    The input's name, shape and dtype come from the signature, so any exported image-to-image
    model works, not only MAXIM.
    """

    def __init__(
        self,
        tf: Any,
        folder: Path,
        signature: str,
        output_key: str | None,
        tile_size: int | Literal["auto"],
        batch_tiles: int,
    ):
        self.tf = tf
        self.model = tf.saved_model.load(str(folder))  # the loaded object owns the variables
        signatures = dict(self.model.signatures)
        if signature not in signatures:
            raise UserError(
                f"module.signature: {folder} has no signature {signature!r} "
                f"(has: {', '.join(sorted(signatures)) or 'none'})"
            )
        self.fn = signatures[signature]
        args, kwargs = self.fn.structured_input_signature
        if args or len(kwargs) != 1:
            raise UserError(
                f"module.signature: {signature!r} takes {len(args) + len(kwargs)} inputs; "
                "a denoiser takes one image batch"
            )
        ((self.input_name, spec),) = kwargs.items()
        shape = spec.shape.as_list()
        if len(shape) != 4:
            raise UserError(
                f"module.signature: input {self.input_name!r} has shape {shape}; expected NHWC"
            )
        fixed = tuple(shape[1:3])
        if tile_size == "auto":  # the model's own input size; 256 px for any-size models
            self.tile = (int(fixed[0] or ANY_SIZE_TILE), int(fixed[1] or ANY_SIZE_TILE))
        else:
            if any(d is not None and d != tile_size for d in fixed):
                raise UserError(
                    f"module.tile_size: the model takes {fixed[0]}x{fixed[1]} tiles, not "
                    f"{tile_size}; set module.tile_size=auto"
                )
            self.tile = (tile_size, tile_size)
        self.channels, self.dtype = shape[3], spec.dtype
        self.batch = shape[0] or batch_tiles  # a signature with a fixed batch gets exactly that
        outputs = {k: tuple(v.shape.as_list()) for k, v in self.fn.structured_outputs.items()}
        if output_key is not None and output_key not in outputs:
            raise UserError(
                f"module.output_key: no output {output_key!r} in {signature!r} "
                f"(has: {', '.join(sorted(outputs, key=natural_key))})"
            )
        self.output_key = output_key or pick_output(outputs, self.tile)
        out_channels = outputs[self.output_key][-1]
        if out_channels is not None and out_channels != self.channels:
            raise UserError(
                f"module.output_key: output {self.output_key!r} has {out_channels} channels but "
                f"the input has {self.channels}; pick the output holding the restored image"
            )
        log.info(
            "loaded %s: %s(%s %s) -> %s, %dx%d tiles",
            folder,
            signature,
            self.input_name,
            shape,
            self.output_key,
            *self.tile,
        )

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        n = len(tiles)
        if n < self.batch:  # pad a short last batch for signatures of fixed batch size
            tiles = np.concatenate([tiles, np.repeat(tiles[-1:], self.batch - n, axis=0)])
        x = self.tf.convert_to_tensor(tiles, dtype=self.dtype)
        out = self.fn(**{self.input_name: x})[self.output_key]
        return out.numpy().astype(np.float32)[:n]


class DenoisingModule(InferenceModule):
    """Denoise images with a TensorFlow SavedModel; score PSNR/SSIM against clean references.

    The model sees fixed-size tiles (256 px for MAXIM-S3), so images of any size are cut into
    overlapping tiles, batched, and cross-faded back (`hotcv_train.tiling`). Pixels go in and
    out as floats in [0, 1]; outputs are clipped and saved as 8-bit PNGs, and the metrics score
    exactly those saved pixels, so they can be recomputed from the run folder.

    Writes `predictions/<id>_denoised.png` and `<id>_before_after.png` (noisy | denoised |
    clean). When scoring, logs `test/psnr` and `test/ssim` (means over images, in dB and [0, 1])
    and `test/psnr_input`, the noisy input's PSNR, so the gain is visible.

    Args:
        model: The SavedModel: `name_or_path` (a hub id, fetched with `snapshot_download`, or a
            local folder holding saved_model.pb) and `revision`.
        signature: The SavedModel signature to call.
        output_key: Signature output holding the image; null picks the last-built output at the
            input's resolution (MAXIM's final stage).
        tile_size: Tile side in pixels; `auto` reads it from the signature's fixed input shape
            (256 when the signature takes any size).
        tile_overlap: Pixels shared by neighbouring tiles, cross-faded (at most half a tile);
            `auto` is a quarter of the tile.
        batch_tiles: Tiles per TensorFlow call.
        seed: Global seed (the model is deterministic; kept for `InferenceModule`).
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: str,
        output_key: str | None,
        tile_size: int | Literal["auto"],
        tile_overlap: int | Literal["auto"],
        batch_tiles: Count,
        seed: int,
    ):
        super().__init__(seed=seed)
        problems = []
        fixed_size = tile_size != "auto"
        if fixed_size and tile_size < 1:
            problems.append(f"module.tile_size: must be a positive size in pixels, got {tile_size}")
        if tile_overlap != "auto" and (
            tile_overlap < 0 or (fixed_size and tile_overlap > tile_size // 2)
        ):
            limit = f"[0, {tile_size // 2}]" if fixed_size else ">= 0"
            problems.append(f"module.tile_overlap: must be within {limit}, got {tile_overlap}")
        if batch_tiles < 1:
            problems.append(f"module.batch_tiles: must be at least 1, got {batch_tiles}")
        if problems:
            raise UserError(*problems)
        self.save_hyperparameters(logger=False)
        self.signature, self.output_key = signature, output_key
        self.tile_size, self.tile_overlap, self.batch_tiles = tile_size, tile_overlap, batch_tiles
        if importlib.util.find_spec("tensorflow") is None:  # fail before any data or model loads
            raise UserError(TF_MISSING)
        self.folder = resolve_saved_model(model)  # download (or a clear error) up front
        self.model: SavedModelTiles | None = None  # TensorFlow, loaded per rank in `setup`
        # Means of per-image values, as denoising benchmarks report. Not PeakSignalNoiseRatio(dim=...):
        # its list states crash the gather when a rank scored no image (torchmetrics 1.9, gloo).
        self.psnr, self.psnr_input = MeanMetric(), MeanMetric()
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    def setup(self, stage: str) -> None:
        super().setup(stage)  # references checked before TensorFlow loads
        if self.model is not None:
            return
        tf = import_tensorflow(self.trainer.strategy.root_device)
        self.model = SavedModelTiles(
            tf, self.folder, self.signature, self.output_key, self.tile_size, self.batch_tiles
        )
        overlap_limit = min(self.model.tile) // 2
        if self.tile_overlap == "auto":
            self.tile_overlap = min(self.model.tile) // 4
        if self.tile_overlap > overlap_limit:
            raise UserError(
                f"module.tile_overlap: must be within [0, {overlap_limit}] for "
                f"{self.model.tile[0]}x{self.model.tile[1]} tiles, got {self.tile_overlap}"
            )

    def check_references(self, datamodule: Any) -> None:
        """PSNR and SSIM compare pixel by pixel: a clean image must be its noisy input's size."""
        datamodule.check_reference_sizes()

    def infer(self, samples: list[dict]) -> list[dict]:
        assert self.model is not None, "setup() loads the model"
        for s in samples:
            if s["image"].shape[0] != self.model.channels:
                raise UserError(
                    f"dataset.image_mode: input {s['id']} has {s['image'].shape[0]} channels; "
                    f"the model takes {self.model.channels}"
                )
        noisy = [s["image"].permute(1, 2, 0).numpy().astype(np.float32) / 255 for s in samples]
        outputs = tiled_apply(
            noisy, self.model, self.model.tile, self.tile_overlap, self.model.batch
        )
        records = []
        for sample, out in zip(samples, outputs):
            denoised = torch.from_numpy((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
            records.append(self._record(sample, denoised.permute(2, 0, 1)))
        return records

    def _record(self, sample: dict, denoised: torch.Tensor) -> dict:
        """Save the denoised image and the before/after picture; score when a reference exists."""
        from PIL import Image

        sample_id, noisy, clean = sample["id"], sample["image"], sample["reference"]
        path = self.output_path(sample_id, "_denoised.png")
        Image.fromarray(denoised.permute(1, 2, 0).numpy()).save(path)
        metrics: dict[str, float | None] = {}
        if self.scoring and clean is not None:
            metrics = self._score(sample_id, noisy, denoised, clean)
        panels = [("noisy", noisy), ("denoised", denoised)]
        if metrics:
            panels = [
                (f"noisy {metrics['psnr_input']:.2f} dB", noisy),
                (f"denoised {metrics['psnr']:.2f} dB", denoised),
            ]
        if clean is not None:
            panels.append(("clean", clean))
        before_after = self.output_path(sample_id, "_before_after.png")
        side_by_side(panels).save(before_after)
        return {
            "id": sample_id,
            "outputs": [self.relative(path), self.relative(before_after)],
            "metrics": metrics,
        }

    def _score(
        self, sample_id: str, noisy: torch.Tensor, denoised: torch.Tensor, clean: torch.Tensor
    ) -> dict[str, float | None]:
        if clean.shape != denoised.shape:
            raise UserError(
                f"dataset.references: the clean image of {sample_id} is {list(clean.shape)} "
                f"(CHW) but the input is {list(noisy.shape)}; references must match their inputs"
            )
        # Lightning's mixed precision would run SSIM's convolutions in bf16; score in float32.
        with torch.autocast(self.device.type, enabled=False):
            pred, target, inp = (
                (x.to(self.device, torch.float32) / 255)[None] for x in (denoised, clean, noisy)
            )
            psnr = peak_signal_noise_ratio(pred, target, data_range=1.0)
            psnr_input = peak_signal_noise_ratio(inp, target, data_range=1.0)
            self.psnr.update(psnr)
            self.psnr_input.update(psnr_input)
            metrics: dict[str, float | None] = {
                "psnr": float(psnr),
                "psnr_input": float(psnr_input),
                "ssim": None,
            }
            if min(pred.shape[-2:]) >= SSIM_KERNEL:
                metrics["ssim"] = float(
                    structural_similarity_index_measure(pred, target, data_range=1.0)
                )
                self.ssim.update(pred, target)
        return metrics

    def on_test_epoch_start(self) -> None:
        for metric in (self.psnr, self.psnr_input, self.ssim):
            metric.reset()
        super().on_test_epoch_start()

    def on_test_epoch_end(self) -> None:
        # Every rank computes (each compute is a collective), even one whose inputs had no clean
        # reference; nothing is logged when no rank scored anything.
        decide = self.trainer.strategy.reduce_boolean_decision
        values = {}
        with warnings.catch_warnings():  # a rank that scored nothing: expected
            warnings.filterwarnings("ignore", ".*before the ``update``", UserWarning)
            if decide(self.psnr.update_count > 0, all=False):
                values["test/psnr"] = self.psnr.compute()
                values["test/psnr_input"] = self.psnr_input.compute()
            if decide(self.ssim.update_count > 0, all=False):
                values["test/ssim"] = self.ssim.compute()
        for name, value in values.items():
            self.log(name, value, sync_dist=True)  # equal on every rank already
        super().on_test_epoch_end()


def side_by_side(panels: list[tuple[str, torch.Tensor]], gap: int = 4) -> Any:
    """CHW uint8 images in a row on white, each captioned above, as one PIL image."""
    from PIL import Image, ImageDraw

    caption = 14
    height = max(im.shape[-2] for _, im in panels)
    width = sum(im.shape[-1] for _, im in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + caption), "white")
    x = 0
    for label, image in panels:
        array = image.permute(1, 2, 0).numpy() if image.ndim == 3 else image.numpy()
        strip = Image.new("RGB", (image.shape[-1], caption), "white")  # clips long captions
        ImageDraw.Draw(strip).text((2, 1), label, fill="black")
        canvas.paste(strip, (x, 0))
        canvas.paste(Image.fromarray(array).convert("RGB"), (x, caption))
        x += image.shape[-1] + gap
    return canvas
