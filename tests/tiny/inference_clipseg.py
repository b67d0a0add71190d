"""A tiny CLIPSeg with a hand-written BPE tokenizer, a folder of images and label-map masks."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import numpy as np

PROMPTS = ["a cat", "the dog", "sky"]
PROMPTS_OVERRIDE = f"module.prompts=[{','.join(PROMPTS)}]"  # Hydra takes unquoted spaces
IMAGE_SIZE = 32  # the vision encoder's input size (352 in the real checkpoint)
# Odd on purpose: 2 ranks cannot split it evenly. Sizes differ, one sits in a subfolder.
IMAGES = {
    "beach": (40, 56),
    "city": (32, 32),
    "sub/field": (24, 36),
    "park": (48, 30),
    "zoo": (33, 33),
}


def write_tokenizer_files(folder: Path, words: list[str]) -> Path:
    """`vocab.json` + `merges.txt` of a byte-level BPE (CLIP's format) that knows `words` whole.

    Every letter alone (and word-final, `x</w>`) is in the vocabulary, so any lowercase text
    tokenizes; each word of `words` merges left to right into a single token.
    """
    folder.mkdir(parents=True, exist_ok=True)
    letters = string.ascii_lowercase
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges: list[str] = []
    for word in words:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            parts = [parts[0] + parts[1], *parts[2:]]
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault(parts[0], len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def tiny_clipseg(folder: Path) -> Path:
    """A 2-layer, 32-wide CLIPSeg and its processor, saved like the hub checkpoint."""
    if folder.exists():
        return folder
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    building = folder.with_name(folder.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    words = sorted({w for p in PROMPTS for w in p.split()})
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer_files(building / "bpe", words))
    config = CLIPSegConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
        reduce_dim=16,
        extract_layers=[0, 1],
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(config).save_pretrained(building)
    image_processor = ViTImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(building)
    building.rename(folder)
    return folder


def tiny_images(folder: Path) -> Path:
    """`IMAGES` as PNG files: smooth colour gradients plus noise, so masks vary across pixels."""
    if folder.exists():
        return folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (key, (height, width)) in enumerate(IMAGES.items()):
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 60 * i)], -1)
        pixels = pixels + rng.integers(0, 40, pixels.shape)
        path = folder / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return folder


def stripe_masks(folder: Path) -> Path:
    """Hand-made label maps for `IMAGES`: horizontal stripes of labels 0..len(PROMPTS)."""
    if folder.exists():
        return folder
    from PIL import Image

    for key, (height, width) in IMAGES.items():
        rows = np.arange(height) * (len(PROMPTS) + 1) // height
        labels = np.repeat(rows[:, None], width, 1).astype(np.uint8)
        path = folder / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels, mode="L").save(path)
    return folder


def clipseg_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_clipseg(root / 'clipseg')}",
        f"dataset.path={tiny_images(root / 'clipseg_images')}",
        f"dataset.references={stripe_masks(root / 'clipseg_masks')}",
        PROMPTS_OVERRIDE,
        "dataset.batch_size=2",
    ]


TASKS = {"clipseg_zeroshot": clipseg_overrides}
