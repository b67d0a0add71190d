"""Object detection: any `AutoModelForObjectDetection` of the DETR family (DETR, Conditional and
Deformable DETR, RT-DETR, D-FINE), scored with COCO mAP."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_convert

from hotcv_train.checks import Count, NonNegative, Probability, Range
from hotcv_train.errors import UserError
from hotcv_train.models import ModelSpec, build_model
from hotcv_train.modules.base import TaskModule
from hotcv_train.modules.inference import merge_rank_predictions

log = logging.getLogger(__name__)

LOSS_TERMS = ("loss_ce", "loss_bbox", "loss_giou")  # DETR's; others (RT-DETR's vfl...) as found
MAP_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1")
MAP_KEYS += ("mar_10", "mar_100")
STAGES = ("train", "val", "test", "predict")


class ObjectDetectionModule(TaskModule):
    """Set-prediction training (the model's own Hungarian loss); COCO mAP on val and test.

    Boxes reach the model as DETR's targets (class ids, normalised cx,cy,w,h relative to each
    image's own resized size, `pixel_mask` marking the padding); predictions come back through
    the image processor's `post_process_object_detection`, rescaled with the same canvas, so
    boxes drawn and scored land on their objects. A batch's `skipped` (undecodable images) is
    summed into `<stage>/skipped`.

    Args:
        model: Where the model comes from; its head is resized to `num_labels`. A model built
            from scratch (no `name_or_path`, or `pretrained: false`) gets a trainable backbone
            with ordinary BatchNorm: DETR freezes both, which only suits pretrained weights.
        num_labels: Number of classes (null: from the data; with no data labels, the model's own).
        label_names: Class names (null: from the data, else the model config's `id2label`).
        backbone_lr: Learning rate of the backbone (DETR's recipe: 1e-5 while the rest trains at
            1e-4; 0 keeps it as it is); null: the optimizer's.
        threshold: Score above which a box is drawn and written by `stage=predict` (mAP uses all).
        num_plot_images: Validation images (the same each epoch) and test images drawn with
            their true (green) and predicted (red) boxes in `plots/`.
        **kwargs: `optimizer`, `scheduler`, `compile` and `channels_last` of `TaskModule`.
    """

    def __init__(
        self,
        model: ModelSpec,
        num_labels: Count | None,
        label_names: list[str] | None,
        backbone_lr: Annotated[float, Range(0)] | None,
        threshold: Probability,
        num_plot_images: NonNegative,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # Plain values only (the recipe lives in the run's config): checkpoints load weights_only.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if label_names is not None and num_labels is not None and len(label_names) != num_labels:
            raise UserError(
                f"module.label_names: {len(label_names)} names for num_labels={num_labels}"
            )
        labels = {}
        if num_labels is not None:
            names = label_names or [str(i) for i in range(num_labels)]
            labels = {
                "num_labels": num_labels,
                "id2label": dict(enumerate(names)),
                "label2id": {n: i for i, n in enumerate(names)},
            }
        self.model = build_model(model, _auto_class(), **labels)
        if model.name_or_path is None or not model.pretrained:
            make_backbone_trainable(self.model)
        config = self.model.config
        self.label_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.processor = detection_processor(model.name_or_path, config.model_type)
        self.backbone_lr, self.threshold = backbone_lr, threshold
        self.num_plot_images = num_plot_images
        self.takes_mask = "pixel_mask" in inspect.signature(self.model.forward).parameters
        self.map = nn.ModuleDict(
            {s: mean_average_precision(len(self.label_names)) for s in ("val", "test")}
        )
        self.plot_samples: list[dict] = []

    # -- model -------------------------------------------------------------------------------

    def forward(self, batch: dict, labels: list[dict] | None = None) -> Any:
        inputs = {"pixel_values": batch["pixel_values"]}
        if self.takes_mask:
            inputs["pixel_mask"] = batch["pixel_mask"]
        return self.model(**inputs, labels=labels)

    def parameter_groups(self) -> list[dict]:
        """The backbone at `backbone_lr`, the rest (transformer, heads) at the optimizer's lr."""
        backbone, rest = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (backbone if "backbone" in name.split(".") else rest).append(param)
        groups = [{"params": rest}]
        if backbone:
            lr = {} if self.backbone_lr is None else {"lr": self.backbone_lr}
            groups.append({"params": backbone, **lr})
        return groups

    def detections(self, outputs: Any, sizes: torch.Tensor, threshold: float) -> list[dict]:
        """Boxes (xyxy pixels of `sizes`), scores and labels per image, via the processor."""
        extra = {}
        if "top_k" in inspect.signature(self.processor.post_process_object_detection).parameters:
            extra["top_k"] = min(100, outputs.logits.shape[1] * outputs.logits.shape[2])
        return self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=sizes, **extra
        )

    # -- steps -------------------------------------------------------------------------------

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        outputs = self(batch, labels=batch["labels"])
        size = len(batch["labels"])
        for term, value in (outputs.loss_dict or {}).items():
            if term in LOSS_TERMS:  # unweighted, as the model reports them
                self.log(
                    f"{stage}/{term}",
                    value.detach(),
                    on_step=False,
                    on_epoch=True,
                    batch_size=size,
                    sync_dist=stage != "train",
                )
        if stage != "train":
            self.score(outputs, batch, stage)
        return outputs.loss

    def score(self, outputs: Any, batch: dict, stage: str) -> None:
        """Update mAP with every image of the batch, in original-image pixels."""
        with torch.no_grad():
            preds = self.detections(outputs, batch["orig_size"], threshold=0.0)
        targets = [
            {
                "boxes": denormalize(t["boxes"], size).float().reshape(-1, 4),
                "labels": t["class_labels"].long().reshape(-1),
            }
            for t, size in zip(batch["labels"], batch["orig_size"])
        ]
        detections = [  # explicit dtypes and shapes, also for an image with no box
            {
                "boxes": p["boxes"].detach().float().reshape(-1, 4),
                "scores": p["scores"].detach().float().reshape(-1),
                "labels": p["labels"].detach().long().reshape(-1),
            }
            for p in preds
        ]
        self.map[stage].update(detections, targets)
        if self.global_rank == 0 and len(self.plot_samples) < self.num_plot_images:
            for i, (pred, target) in enumerate(zip(preds, targets)):
                if len(self.plot_samples) >= self.num_plot_images:
                    break
                self.plot_samples.append(
                    self._plot_sample(batch, i, pred, target, keep=pred["scores"] > self.threshold)
                )

    def _plot_sample(self, batch: dict, i: int, pred: dict, target: dict, keep: Any) -> dict:
        """Image i unpadded, with true and kept predicted boxes moved to its resized frame."""
        h, w = (int(v) for v in batch["size"][i])
        scale = (batch["size"][i] / batch["orig_size"][i]).flip(0).repeat(2)  # (sx, sy, sx, sy)
        return {
            "image": batch["pixel_values"][i, :, :h, :w].cpu(),
            "true_boxes": (target["boxes"] * scale).cpu(),
            "true_labels": target["labels"].cpu(),
            "boxes": (pred["boxes"][keep] * scale).detach().cpu(),
            "scores": pred["scores"][keep].detach().cpu(),
            "labels": pred["labels"][keep].cpu(),
            "id": batch["id"][i],
        }

    def on_validation_epoch_start(self) -> None:
        self.plot_samples = []

    def on_test_epoch_start(self) -> None:
        self.plot_samples = []

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_map("val")
        if not self.trainer.sanity_checking:
            self._plot(f"val_boxes_epoch_{self.current_epoch:03d}.png")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_map("test")
        self._plot("test_boxes.png")

    def _log_map(self, stage: str) -> None:
        metric = self.map[stage]
        if not metric._update_count:
            return
        results = metric.compute()  # gathered over ranks: every image counted once
        metric.reset()
        for key in MAP_KEYS:
            self.log(f"{stage}/{key}", results[key].float(), prog_bar=key == "map_50")
        if len(self.label_names) > 1:
            classes = results["classes"].reshape(-1).tolist()
            for cls, ap in zip(classes, results["map_per_class"].reshape(-1)):
                self.log(f"{stage}/map_{self.label_names[int(cls)]}", ap.float())

    def _plot(self, filename: str) -> None:
        if self.trainer.is_global_zero and self.plot_samples:
            from hotcv_train import plots

            plots.detection_grid(
                self.plot_samples,
                self.label_names,
                self.plots_dir / filename,
                self.loggers,
                self.global_step,
            )
        self.plot_samples = []

    # -- predict -----------------------------------------------------------------------------

    @property
    def predictions_dir(self) -> Path:
        return Path(self.trainer.default_root_dir) / "predictions"

    @property
    def _rank_file(self) -> Path:
        return self.predictions_dir / f"predictions.rank{self.global_rank}.jsonl"

    def on_predict_epoch_start(self) -> None:
        self.predictions_dir.mkdir(parents=True, exist_ok=True)
        self._rank_file.unlink(missing_ok=True)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        """Boxes above `threshold` as one JSON line per image, and the image with them drawn."""
        from hotcv_train import plots

        if self.count_skipped(batch, "predict"):
            return
        preds = self.detections(self(batch), batch["orig_size"], threshold=self.threshold)
        with self._rank_file.open("a") as f:
            for sample_id, image, pred in zip(batch["id"], batch["image"], preds):
                picture = self.predictions_dir / f"{sample_id}.png"
                names = [self.label_names[int(c)] for c in pred["labels"]]
                plots.save_boxes(image, pred["boxes"], names, pred["scores"], picture)
                record = {
                    "id": sample_id,
                    "boxes": [[round(float(v), 2) for v in b] for b in pred["boxes"]],
                    "scores": [round(float(s), 4) for s in pred["scores"]],
                    "labels": names,
                    "output": picture.relative_to(self.trainer.default_root_dir).as_posix(),
                }
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def on_predict_epoch_end(self) -> None:
        super().on_predict_epoch_end()
        merge_rank_predictions(self.trainer, self.predictions_dir)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint with another number of classes cannot load: say which names it had."""
        saved = checkpoint.get("hyper_parameters", {})
        names = saved.get("label_names")
        count = saved.get("num_labels") or (len(names) if names else None)
        if count is not None and count != len(self.label_names):
            hint = f"dataset.label_names=[{','.join(names)}]" if names else "dataset.label_names"
            raise UserError(
                f"ckpt_path: the checkpoint detects {count} classes but this model was built for "
                f"{len(self.label_names)}; set {hint}"
            )


# ----------------------------------------------------------------------------------------------


def denormalize(boxes: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Normalised cxcywh boxes as xyxy pixels of `size` = (h, w)."""
    h, w = size.to(boxes.dtype)
    return box_convert(boxes, "cxcywh", "xyxy") * torch.stack([w, h, w, h])


class ShardedMeanAveragePrecision(MeanAveragePrecision):
    """COCO mAP whose states gather correctly when ranks scored different numbers of images.

    The states are lists with one tensor per image; torchmetrics gathers them one element at a
    time, so ranks holding 4 and 3 images (an odd split, sharded without padding) run different
    collectives and gloo aborts ("Received data size doesn't match expected size"). Here each
    rank sends its whole lists in one object gather, and the images are interleaved back in
    the order of the strided, unpadded sampler (rank r holds images r, r + W, ...): the order
    of one process, which COCO's tie-breaking between equal scores depends on.
    """

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        group = process_group or self.process_group
        states = {attr: getattr(self, attr) for attr in self._reductions}
        local = {k: [t.cpu() for t in v] if isinstance(v, list) else v for k, v in states.items()}
        parts: list[Any] = [None] * torch.distributed.get_world_size(group)
        torch.distributed.all_gather_object(parts, local, group=group)
        for attr, value in states.items():
            if isinstance(value, list):
                lists = [part[attr] for part in parts]
                longest = max(len(items) for items in lists)
                gathered = [
                    items[i].to(self.device)
                    for i in range(longest)
                    for items in lists
                    if i < len(items)
                ]
                setattr(self, attr, gathered)


def mean_average_precision(num_labels: int) -> Any:
    """COCO mAP (pycocotools), per-class AP when there are several classes."""
    return ShardedMeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", class_metrics=num_labels > 1
    )


def make_backbone_trainable(model: nn.Module) -> None:
    """Unfreeze every parameter and turn frozen BatchNorm layers into ordinary, trainable ones.

    DETR-family models freeze their backbone's BatchNorm (and, for ResNets, early stages),
    which keeps pretrained statistics intact; random weights frozen that way never learn.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__.endswith("FrozenBatchNorm2d"):
                norm = nn.BatchNorm2d(child.weight.numel())
                with torch.no_grad():
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(norm, key).copy_(getattr(child, key))
                setattr(parent, name, norm)
    for param in model.parameters():
        param.requires_grad_(True)


def detection_processor(name_or_path: str | None, model_type: str) -> Any:
    """The image processor whose `post_process_object_detection` matches the model's outputs.

    The checkpoint's own when it has one; else the default processor of `model_type`.
    """
    from transformers import AutoImageProcessor

    if name_or_path is not None:
        with contextlib.suppress(OSError, ValueError, UserError):
            return AutoImageProcessor.from_pretrained(name_or_path)
    return processor_class(model_type)()


def processor_class(model_type: str) -> Any:
    """The (torchvision-backed) image processor class transformers pairs with `model_type`."""
    from transformers.models.auto.image_processing_auto import (
        IMAGE_PROCESSOR_MAPPING_NAMES,
        get_image_processor_class_from_name,
    )

    names = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(names, dict):
        names = names.get("torchvision") or names.get("pil")
    elif isinstance(names, (tuple, list)):
        names = next((n for n in reversed(names) if n), None)
    if not names:
        raise UserError(
            f"module.model: no image processor known for model type {model_type!r}; its "
            "post-processing is needed to score boxes"
        )
    return get_image_processor_class_from_name(names)


def _auto_class() -> Any:
    from transformers import AutoModelForObjectDetection

    return AutoModelForObjectDetection
