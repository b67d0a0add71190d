"""A tiny StableDiffusionImageVariationPipeline (UNet, VAE, CLIP vision encoder) and input images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ENCODER_SIZE = 32  # the CLIP vision encoder's input size (224 in the real checkpoint)
OUTPUT_SIZE = 16  # generated images: 16x16 px (8x8 latents)
NUM_INPUTS = 3


def tiny_clip_vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=ENCODER_SIZE,
        patch_size=8,
        projection_dim=32,
    )


def tiny_safety_checker(flag_everything: bool):
    """A random safety checker; `flag_everything` sets its thresholds so every image is NSFW.

    Its thresholds are `concept_embeds_weights`: an image is flagged when its cosine to a concept
    exceeds the threshold, so -2 flags every image and the default 1 flags none.
    """
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPTextConfig

    config = CLIPConfig(
        text_config=CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=32,
        ).to_dict(),
        vision_config=tiny_clip_vision_config().to_dict(),
        projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    if flag_everything:
        checker.concept_embeds_weights.data.fill_(-2.0)
    return checker


def tiny_sd_pipeline(folder: Path, safety_checker: str | None = None) -> Path:
    """A 2-level UNet, a 2-level VAE and a 2-layer CLIP vision encoder, saved as a pipeline.

    Args:
        folder: Where `save_pretrained` writes it (reused when already there).
        safety_checker: None (no checker, as most offline copies), `"pass"` (flags nothing) or
            `"flag"` (flags every image).
    """
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImageVariationPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=OUTPUT_SIZE,
    )
    encoder = CLIPVisionModelWithProjection(tiny_clip_vision_config()).eval()
    processor = CLIPImageProcessor(
        size={"shortest_edge": ENCODER_SIZE},
        crop_size={"height": ENCODER_SIZE, "width": ENCODER_SIZE},
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    checker = None if safety_checker is None else tiny_safety_checker(safety_checker == "flag")
    pipe = StableDiffusionImageVariationPipeline(
        vae=vae,
        image_encoder=encoder,
        unet=unet,
        scheduler=scheduler,
        safety_checker=checker,
        feature_extractor=processor,
        requires_safety_checker=checker is not None,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_photos(folder: Path, n: int = NUM_INPUTS) -> Path:
    """`n` small images of different sizes and aspect ratios (one in a subfolder)."""
    if folder.is_dir() and any(folder.rglob("*.png")):
        return folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"sub/photo{i}.png" if i == n - 1 else f"photo{i}.png"
        height, width = 24 + 8 * i, 40 - 4 * i
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return folder


def sd_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_sd_pipeline(root / 'sd_variations')}",
        f"dataset.path={tiny_photos(root / 'sd_photos')}",
        "module.num_variations=2",
        "module.num_inference_steps=2",
        f"module.image_size={OUTPUT_SIZE}",
        "module.safety_checker=false",
        "dataset.batch_size=2",
    ]


TASKS = {"sd_image_variations": sd_overrides}
