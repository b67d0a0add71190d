"""Image variations with Stable Diffusion (diffusers' StableDiffusionImageVariationPipeline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from hotcv_train.checks import Count, looks_local
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors
from hotcv_train.models import KEY, ModelSpec
from hotcv_train.modules.inference import InferenceModule

log = logging.getLogger(__name__)

# Parts of the pipeline holding weights: registered here so Lightning moves them to the device.
TORCH_PARTS = ("unet", "vae", "image_encoder", "safety_checker")


class ImageVariationModule(InferenceModule):
    """Generates `num_variations` images per input and scores them against it with CLIP.

    Each input goes through the pipeline on its own, with a generator seeded from the global
    seed and its id, so its variations are the same whatever the rank, batch or batch size.
    Writes `<id>_var<k>.png` per variation and `<id>_grid.png` (input | variations). The score
    is the cosine similarity between CLIP image embeddings (`image_embeds`, the projection the
    UNet is conditioned on) of the input and of each variation, from the pipeline's own image
    encoder. Variations blacked out by the safety checker are recorded (`nsfw: true`) and left
    out of the mean similarity, which would otherwise measure the filter, not the model.

    Args:
        model: The pipeline: `name_or_path` (hub id or a folder written by the pipeline's
            `save_pretrained`) and `revision` (the model card uses `v2.0`).
        num_variations: Images generated per input.
        num_inference_steps: Denoising steps.
        guidance_scale: Classifier-free guidance; 1 or less turns it off.
        scheduler: A diffusers scheduler class name (e.g. `DPMSolverMultistepScheduler`) built
            from the pipeline's scheduler config; null keeps the pipeline's own.
        image_size: Side of the generated (square) images, a multiple of 8.
        dtype: Weights' dtype; float16/bfloat16 need a GPU and fall back to float32 on a CPU.
        safety_checker: Run the pipeline's safety checker; an error when the pipeline has none.
        seed: Global seed (see `InferenceModule`).
    """

    uses_references = False  # each input is its own reference

    def __init__(
        self,
        model: ModelSpec,
        num_variations: Count,
        num_inference_steps: Count,
        guidance_scale: float,
        scheduler: str | None,
        image_size: Count,
        dtype: Literal["float32", "float16", "bfloat16"],
        safety_checker: bool,
        seed: int,
    ):
        super().__init__(seed)
        self.save_hyperparameters(logger=False)
        _check_settings(num_variations, num_inference_steps, image_size, scheduler)
        self.num_variations, self.num_inference_steps = num_variations, num_inference_steps
        self.guidance_scale, self.image_size, self.dtype_name = guidance_scale, image_size, dtype
        if model.name_or_path is None:
            raise UserError(f"{KEY}: needs a diffusers pipeline (hub id or local folder)")
        self.pipe = load_pipeline(model, dtype, safety_checker, scheduler)
        self.parts = nn.ModuleDict(
            {name: getattr(self.pipe, name) for name in TORCH_PARTS if getattr(self.pipe, name)}
        )
        self.parts.requires_grad_(False).eval()
        processor = self.pipe.feature_extractor
        size = processor.crop_size
        self.encoder_size = (size["height"], size["width"])
        self.register_buffer("mean", torch.tensor(processor.image_mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(processor.image_std).view(1, 3, 1, 1), False)
        self.clip_similarity = MeanMetric()
        self.nsfw_fraction = MeanMetric()

    def setup(self, stage: str) -> None:
        """Half precision on a CPU is slow or unsupported: fall back before the weights move."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "test" and getattr(datamodule, "references", None) is not None:
            log.warning(
                "dataset.references: ignored; variations are scored against their own input"
            )
        device = self.trainer.strategy.root_device
        if device.type == "cpu" and self.dtype_name != "float32":
            log.warning(
                "module.dtype=%s needs a GPU; running in float32 on the CPU", self.dtype_name
            )
            self.parts.to(torch.float32)

    def encoder_pixels(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 CHW images as the image encoder's input, the way the model card prepares them.

        Bicubic resize to the encoder's size without antialiasing (what the checkpoint was
        trained on), then CLIP normalization with the feature extractor's mean and std.
        """
        resized = [
            F.interpolate(
                image.to(self.device, torch.float32).unsqueeze(0) / 255,
                size=self.encoder_size,
                mode="bicubic",
                align_corners=False,
                antialias=False,
            )
            for image in images
        ]
        return (torch.cat(resized) - self.mean) / self.std

    def embed(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Unit-length CLIP image embeddings (float32) of uint8 CHW images."""
        encoder = self.pipe.image_encoder
        dtype = next(encoder.parameters()).dtype
        embeds = encoder(pixel_values=self.encoder_pixels(images).to(dtype)).image_embeds
        return F.normalize(embeds.float(), dim=-1)

    def similarity(self, image: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
        """Cosine similarity of `image`'s CLIP embedding to each of `others`' (in [-1, 1])."""
        embeds = self.embed([image, *others])
        return (embeds[1:] @ embeds[0]).clamp(-1, 1)

    def infer(self, samples: list[dict]) -> list[dict]:
        records = [self.vary(sample) for sample in samples]
        if self.scoring:
            n = len(samples)
            self.log("test/clip_similarity", self.clip_similarity, on_epoch=True, batch_size=n)
            if "safety_checker" in self.parts:
                self.log("test/nsfw_fraction", self.nsfw_fraction, on_epoch=True, batch_size=n)
        return records

    def vary(self, sample: dict) -> dict:
        """Generate, save and score the variations of one input."""
        sample_id, image = sample["id"], sample["image"]
        result = self.pipe(
            self.encoder_pixels([image]),
            height=self.image_size,
            width=self.image_size,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            num_images_per_prompt=self.num_variations,
            generator=self.sample_generator(sample_id, self.device),
            output_type="pt",
        )
        # Scored as saved (8-bit), so the numbers can be recomputed from the PNGs.
        variations = list((result.images.clamp(0, 1) * 255).round().to(torch.uint8))
        nsfw = result.nsfw_content_detected or [False] * len(variations)
        similarity = self.similarity(image, variations).cpu()
        kept = similarity[~torch.tensor(nsfw, dtype=torch.bool)]
        if self.scoring:
            if len(kept):
                self.clip_similarity.update(kept)
            self.nsfw_fraction.update(torch.tensor(nsfw, dtype=torch.float32))

        paths = [self.output_path(sample_id, f"_var{k}.png") for k in range(len(variations))]
        pictures = [_to_pil(v) for v in variations]
        for picture, path in zip(pictures, paths):
            picture.save(path)
        grid = self.output_path(sample_id, "_grid.png")
        image_row([_to_pil(image), *pictures], self.image_size).save(grid)
        return {
            "id": sample_id,
            "outputs": [self.relative(p) for p in [*paths, grid]],
            "metrics": {
                "clip_similarity": kept.mean().item() if len(kept) else None,
                "nsfw_fraction": sum(nsfw) / len(nsfw),
            },
            "variations": [
                {"image": self.relative(p), "clip_similarity": s, "nsfw": bool(flag)}
                for p, s, flag in zip(paths, similarity.tolist(), nsfw)
            ],
        }


def _check_settings(
    num_variations: int, num_inference_steps: int, image_size: int, scheduler: str | None
) -> None:
    problems = []
    if num_variations < 1:
        problems.append(f"module.num_variations: must be at least 1, got {num_variations}")
    if num_inference_steps < 1:
        problems.append(
            f"module.num_inference_steps: must be at least 1, got {num_inference_steps}"
        )
    if image_size < 8 or image_size % 8:
        problems.append(f"module.image_size: must be a positive multiple of 8, got {image_size}")
    if scheduler is not None:
        diffusers = _import_diffusers()
        cls = getattr(diffusers, scheduler, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            names = sorted(s.name for s in diffusers.schedulers.KarrasDiffusionSchedulers)
            problems.append(
                f"module.scheduler: {scheduler!r} is not a diffusers scheduler; use null (the "
                f"pipeline's own) or one of: {', '.join(names)}"
            )
    if problems:
        raise UserError(*problems)


def load_pipeline(
    model: ModelSpec,
    dtype: str,
    safety_checker: bool,
    scheduler: str | None,
) -> Any:
    """The pipeline at `name_or_path`, checked for a safety checker before any weights load."""
    diffusers = _import_diffusers()
    pipeline_class = diffusers.StableDiffusionImageVariationPipeline

    name_or_path = str(model.name_or_path)
    local = looks_local(name_or_path)
    if local and not (Path(name_or_path).expanduser() / "model_index.json").is_file():
        raise UserError(
            f"{KEY}: {name_or_path} is not a diffusers pipeline folder (no model_index.json); "
            "write one with pipe.save_pretrained(DIR) or hf download "
            "lambdalabs/sd-image-variations-diffusers --local-dir DIR"
        )
    options = model.hub_options
    with hub_errors(name_or_path, KEY):
        index = pipeline_class.load_config(name_or_path, **options)
    if safety_checker and not (index.get("safety_checker") or [None])[0]:
        raise UserError(
            f"module.safety_checker: {name_or_path} has no safety checker; set "
            "module.safety_checker=false to keep its outputs unfiltered"
        )
    if not safety_checker:
        log.warning("module.safety_checker=false: generated images are not filtered")
        options |= {"safety_checker": None, "requires_safety_checker": False}
    log.info("loading %s (%s)", name_or_path, dtype)
    with hub_errors(name_or_path, KEY):
        pipe = pipeline_class.from_pretrained(name_or_path, dtype=getattr(torch, dtype), **options)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_row(images: list[Any], cell: int) -> Any:
    """PIL images side by side, each fit into a `cell`-px square (aspect kept, padded black)."""
    from PIL import Image, ImageOps

    row = Image.new("RGB", (cell * len(images), cell))
    for i, image in enumerate(images):
        row.paste(ImageOps.pad(image.convert("RGB"), (cell, cell)), (i * cell, 0))
    return row


def _import_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as e:
        raise UserError(
            f"module: {type(e).__name__}: {e}; this task needs diffusers: pip install -e '.[diffusion]'"
        ) from e
    return diffusers


def _to_pil(image: torch.Tensor) -> Any:
    from PIL import Image

    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
