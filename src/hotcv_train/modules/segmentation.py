"""Zero-shot segmentation from text prompts: CLIPSeg (`CIDAS/clipseg-rd64-refined` or a local copy)."""

from __future__ import annotations

import logging
import math
import re
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex

from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors
from hotcv_train.models import KEY, ModelSpec, build_model
from hotcv_train.modules.inference import InferenceModule

log = logging.getLogger(__name__)


def prompt_slug(prompt: str) -> str:
    """A prompt as a file- and metric-name part: `"A red car!"` -> `a_red_car`."""
    return re.sub(r"[^0-9a-z]+", "_", prompt.lower()).strip("_")


def predict_labels(probs: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Per pixel: the most probable prompt (1-based) of those reaching their threshold, else 0.

    Args:
        probs: `(P, H, W)` probabilities, one map per prompt.
        thresholds: `(P,)` minimum probability for each prompt to claim a pixel.
    """
    reached = probs >= thresholds.to(probs)[:, None, None]
    best, index = probs.masked_fill(~reached, -1).max(0)
    return torch.where(best >= 0, index + 1, 0)


def mask_labels(
    mask: torch.Tensor, num_prompts: int, ignore_index: int | None, where: str
) -> torch.Tensor:
    """A reference mask as a label map: 0 = none of the prompts, k = the k-th, `ignore_index` void.

    A mask whose values are all labels (or `ignore_index`) is a label map as it is; a 0/1 mask
    is one. With a single prompt, a mask holding values above 127 is a binary mask (0/255, a
    1-bit PNG, or grey edges from resizing or JPEG): its pixels above 127 are the prompt's. With
    several prompts such a mask cannot say which prompt it marks, so it is an error.

    Args:
        mask: `(H, W)` uint8 mask, read with `dataset.reference_mode=L`.
        where: The mask as error messages name it.
    """
    if mask.ndim != 2:
        raise UserError(
            f"dataset.reference_mode: {where} has {mask.shape[0]} channels; masks are label "
            "maps, read with dataset.reference_mode=L"
        )
    values = mask.unique().tolist()
    beyond = [v for v in values if v > num_prompts and v != ignore_index]
    if not beyond:
        return mask.long()
    if num_prompts == 1 and max(beyond) > 127:
        labels = (mask > 127).long()
        if ignore_index is not None:
            labels[mask == ignore_index] = ignore_index
        return labels
    if set(values) <= {0, 255}:
        raise UserError(
            f"dataset.references: {where} is a binary 0/255 mask, which cannot say which of the "
            f"{num_prompts} prompts it marks; score one prompt at a time "
            "('module.prompts=[<the prompt it marks>]'), or save label maps (0 = none, k = the "
            "k-th prompt)"
        )
    raise UserError(
        f"dataset.references: {where} holds label(s) {beyond[:5]} but module.prompts has "
        f"{num_prompts} prompt(s); masks hold 0 (background) and k for the k-th prompt; set "
        "module.ignore_index=<value> to leave a void label unscored"
    )


def iou_per_prompt(
    pred: torch.Tensor, target: torch.Tensor, num_prompts: int, ignore_index: int | None
) -> list[float | None]:
    """IoU of labels 1..num_prompts between two label maps; None where a label is in neither."""
    valid = (
        target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=bool)
    )
    ious: list[float | None] = []
    for k in range(1, num_prompts + 1):
        p, t = (pred == k) & valid, (target == k) & valid
        union = int((p | t).sum())
        ious.append(int((p & t).sum()) / union if union else None)
    return ious


class ZeroShotSegmentationModule(InferenceModule):
    """For every image and prompt a probability mask, plus an argmax label map and an overlay.

    Outputs under `predictions/`: `<id>.mask_<prompt>.png` (probability x 255, mode L),
    `<id>.labels.png` (palette PNG whose pixel values are labels: k for the k-th prompt, 0 for
    none, the format references use) and `<id>.overlay.png` (the image, labels and a legend).
    With references (label maps in that format; with a single prompt also binary 0/255 masks,
    see `mask_labels`) it scores IoU per prompt and their mean (`test/iou_<prompt>`,
    `test/miou`) over all pixels of all inputs, and each input's own IoUs. Every mask is
    checked before the first image is segmented.

    Args:
        model: Where CLIPSeg comes from; its folder or hub repo also holds the processor.
        prompts: Text prompts; the k-th (1-based) is label k in label maps.
        threshold: Probability a prompt must reach to claim a pixel (of the prompts that reach
            theirs, the most probable takes it); one value for all prompts, or one per prompt.
        ignore_index: Reference value left unscored (e.g. 255, VOC's void borders); null: every
            reference value must be 0..len(prompts).
        overlay: Also draw `<id>.overlay.png` (matplotlib; the slowest output).
        seed: Global seed (see `InferenceModule`); CLIPSeg itself draws no random numbers.
    """

    def __init__(
        self,
        model: ModelSpec,
        prompts: list[str],
        threshold: float | list[float],
        ignore_index: int | None,
        overlay: bool,
        seed: int,
    ):
        super().__init__(seed)
        self.save_hyperparameters(logger=False)
        self.prompts = list(prompts)
        self.slugs = [prompt_slug(p) for p in self.prompts]
        thresholds = (
            [threshold] * len(prompts) if isinstance(threshold, (int, float)) else threshold
        )
        _check_prompts(self.prompts, self.slugs, thresholds, ignore_index)
        if model.name_or_path is None:
            raise UserError(
                f"{KEY}: CLIPSeg needs a checkpoint (hub id or save_pretrained folder with its "
                "processor), e.g. CIDAS/clipseg-rd64-refined"
            )
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32))
        self.ignore_index, self.overlay = ignore_index, overlay
        self.model = build_model(model, _model_class())
        self.processor = _load_processor(model.name_or_path)
        self.jaccard = MulticlassJaccardIndex(
            len(prompts) + 1, average=None, ignore_index=ignore_index, zero_division=math.nan
        )

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        """`(N, P, h, w)` logits at the model's resolution for N images and the P prompts."""
        n, p = len(images), len(self.prompts)
        text = self.processor.tokenizer(
            self.prompts, padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        embeddings = self.model.get_conditional_embeddings(
            batch_size=p, input_ids=text["input_ids"], attention_mask=text["attention_mask"]
        )
        pixels = self.processor.image_processor(images=images, return_tensors="pt").pixel_values
        pixels = pixels.to(self.device, self.model.dtype)
        logits = self.model(
            pixel_values=pixels.repeat_interleave(p, 0),
            conditional_embeddings=embeddings.repeat(n, 1),
        ).logits
        return logits.view(n, p, *logits.shape[-2:])

    def infer(self, samples: list[dict]) -> list[dict]:
        from PIL import Image

        from hotcv_train import plots

        images = [s["image"].cpu() for s in samples]  # Lightning moved them; the processor resizes
        logits = self(images).float()
        records = []
        for sample, image, sample_logits in zip(samples, images, logits):
            key = sample["id"]
            probs = torch.sigmoid(
                F.interpolate(sample_logits[None], size=image.shape[-2:], mode="bilinear")[0]
            )
            labels = predict_labels(probs, self.thresholds)
            outputs = []
            for slug, prob in zip(self.slugs, probs):
                path = self.output_path(key, f".mask_{slug}.png")
                Image.fromarray((prob * 255).round().byte().cpu().numpy()).save(path)
                outputs.append(path)
            path = self.output_path(key, ".labels.png")
            outputs.append(plots.save_label_map(labels.cpu(), len(self.prompts), path))
            if self.overlay:
                path = self.output_path(key, ".overlay.png")
                outputs.append(plots.segmentation_overlay(image, labels.cpu(), self.prompts, path))
            metrics = {}
            if self.scoring and sample["reference"] is not None:
                metrics = self._score(key, labels, sample["reference"].to(self.device))
            records.append(
                {"id": key, "outputs": [self.relative(p) for p in outputs], "metrics": metrics}
            )
        return records

    def check_references(self, datamodule: Any) -> None:
        """Every mask must say which prompt each of its pixels is (`mask_labels`)."""
        checked = void_only = 0
        for key, name, mask in datamodule.decoded_references():
            mask_labels(mask, len(self.prompts), self.ignore_index, f"mask {name} (input {key})")
            checked += 1
            void_only += set(mask.unique().tolist()) == {0, self.ignore_index}
        log.info("dataset.references: %d mask(s) checked", checked)
        if checked and void_only == checked:
            log.warning(
                "dataset.references: every mask holds only 0 and module.ignore_index=%d, so no "
                "pixel marks a prompt; binary 0/%d masks of one prompt need "
                "module.ignore_index=null",
                self.ignore_index,
                self.ignore_index,
            )

    def _score(self, key: str, labels: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Update the dataset-wide IoU with one input; return the input's own IoUs."""
        where = f"the mask of {key}"
        target = mask_labels(target, len(self.prompts), self.ignore_index, where)
        if labels.shape != target.shape:  # a mask at another resolution than its image
            labels = F.interpolate(labels[None, None].float(), size=target.shape, mode="nearest")
            labels = labels[0, 0].long()
        self.jaccard.update(labels[None], target[None])
        ious = iou_per_prompt(labels, target, len(self.prompts), self.ignore_index)
        metrics = {f"iou_{s}": v for s, v in zip(self.slugs, ious) if v is not None}
        if metrics:
            metrics["miou"] = sum(metrics.values()) / len(metrics)
        return metrics

    def on_test_epoch_start(self) -> None:
        self.jaccard.reset()
        super().on_test_epoch_start()

    def on_test_epoch_end(self) -> None:
        scored = self.jaccard.confmat.sum() > 0
        if self.trainer.strategy.reduce_boolean_decision(bool(scored), all=False):
            with warnings.catch_warnings():  # a rank whose inputs had no reference: expected
                warnings.filterwarnings("ignore", ".*before the ``update``", UserWarning)
                ious = self.jaccard.compute()[1:]  # summed over every rank's pixels
            present = ~ious.isnan()
            for slug, iou, seen in zip(self.slugs, ious, present):
                if seen:  # a prompt in no mask and no prediction has no IoU
                    self.log(f"test/iou_{slug}", iou, sync_dist=True)  # equal on every rank
            if present.any():
                self.log("test/miou", ious[present].mean(), sync_dist=True)
        self.jaccard.reset()
        super().on_test_epoch_end()


def _check_prompts(
    prompts: list[str], slugs: list[str], thresholds: list[float], ignore_index: int | None
) -> None:
    problems = []
    if not prompts:
        problems.append("module.prompts: empty; give at least one, e.g. 'module.prompts=[a cat]'")
    if len(prompts) > 254:
        problems.append(f"module.prompts: {len(prompts)} prompts; label maps hold at most 254")
    if any(not s for s in slugs):
        problems.append("module.prompts: a prompt needs at least one letter or digit")
    seen: dict[str, str] = {}
    for prompt, slug in zip(prompts, slugs):
        if slug in seen:
            problems.append(
                f"module.prompts: {seen[slug]!r} and {prompt!r} both name outputs {slug!r}; "
                "make them differ in letters or digits"
            )
        seen.setdefault(slug, prompt)
    if len(thresholds) != len(prompts):
        problems.append(
            f"module.threshold: {len(thresholds)} values for {len(prompts)} prompts; "
            "give one value, or one per prompt"
        )
    if any(not 0 <= t <= 1 for t in thresholds):
        problems.append(f"module.threshold: probabilities must be in [0, 1], got {thresholds}")
    if ignore_index is not None and not len(prompts) < ignore_index <= 255:
        problems.append(
            f"module.ignore_index: must be above the last label ({len(prompts)}) and at most 255, "
            f"got {ignore_index}"
        )
    if problems:
        raise UserError(*problems)


def _model_class() -> Any:
    from transformers import CLIPSegForImageSegmentation

    return CLIPSegForImageSegmentation


def _load_processor(name_or_path: str) -> Any:
    """Tokenizer and image processor (size, mean, std) as the checkpoint defines them."""
    from transformers import CLIPSegProcessor

    with hub_errors(name_or_path, KEY):
        return CLIPSegProcessor.from_pretrained(name_or_path)
