"""Classification of images or videos with any transformers classifier (ViT, Swin, VideoMAE, ...)."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from hotcv_train.checks import NonNegative, Range
from hotcv_train.errors import UserError
from hotcv_train.models import ModelSpec, build_model
from hotcv_train.modules.base import TaskModule

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class ClassificationModule(TaskModule):
    """Cross-entropy finetuning with top-1/top-5 accuracy; test adds a confusion matrix and samples.

    `pixel_values` may have any shape the model takes: (B, C, H, W) images, (B, T, C, H, W)
    clips. A batch with `views` holds several views of each sample, (B, views, ...), such as
    evenly spaced clips of one video: their logits are averaged into one prediction per sample,
    so accuracy counts each video once. A batch's `skipped` (undecodable inputs) is summed into
    `<stage>/skipped`. Inputs may be larger than the model was pretrained at: ViT-like models
    interpolate their position embeddings (`interpolate_pos_encoding`).

    Args:
        model: Where the model comes from; its head is resized to `num_labels`.
        auto_class: The transformers Auto class that builds it, e.g.
            AutoModelForImageClassification or AutoModelForVideoClassification.
        num_labels: Number of classes; null takes it from the data, else from the model's head.
        label_names: Class names (null: from the data, else the model's `id2label`).
        label_smoothing: Cross-entropy label smoothing.
        num_sample_images: Test inputs shown in `plots/test_samples.png` (frame strips for video).
        **kwargs: `optimizer`, `scheduler`, `compile` and `channels_last` of `TaskModule`.
    """

    def __init__(
        self,
        model: ModelSpec,
        auto_class: str,
        num_labels: int | None,
        label_names: list[str] | None,
        label_smoothing: Annotated[float, Range(0, 1)],
        num_sample_images: NonNegative,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # Plain values only (the recipe lives in the run's config): checkpoints load weights_only.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if label_names is not None and num_labels is not None and len(label_names) != num_labels:
            raise UserError(
                f"module.num_labels: is {num_labels} but there are {len(label_names)} class names "
                "(module.label_names, else the data's classes); set module.num_labels=null or "
                "give one name per class"
            )
        labels: dict[str, Any] = {}
        if label_names is not None:
            labels = {
                "id2label": dict(enumerate(label_names)),
                "label2id": {n: i for i, n in enumerate(label_names)},
            }
        if num_labels is not None or label_names is not None:
            labels["num_labels"] = num_labels if num_labels is not None else len(label_names)
        self.model = build_model(model, resolve_auto_class(auto_class), **labels)
        # Models with position embeddings that can be resized (ViT, DeiT, BEiT, Swin, ...) take
        # inputs of another size than they were pretrained at, as finetuning at a higher
        # resolution wants; convolutional ones (ConvNeXt, ResNet) take any size as they are.
        accepts = "interpolate_pos_encoding" in inspect.signature(self.model.forward).parameters
        self.model_kwargs = {"interpolate_pos_encoding": True} if accepts else {}
        num_labels = self.model.config.num_labels
        self.label_names = label_names or [
            str(self.model.config.id2label.get(i, i)) for i in range(num_labels)
        ]
        self.label_smoothing = label_smoothing
        self.num_sample_images = num_sample_images
        top_k = min(5, num_labels)
        accuracy = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_labels, average="micro"),
                f"acc_top{top_k}": MulticlassAccuracy(num_labels, top_k=top_k, average="micro"),
            }
        )
        # Keyed "<stage>_": a ModuleDict key cannot be "train" (nn.Module.train exists).
        self.metrics = nn.ModuleDict({f"{s}_": accuracy.clone(prefix=f"{s}/") for s in STAGES})
        self.confusion = MulticlassConfusionMatrix(num_labels)
        self.samples: list[tuple[torch.Tensor, int, int]] = []

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_num_frames(self.model.config, self.trainer.datamodule)

    def forward(self, pixel_values: torch.Tensor, views: int | None = None) -> torch.Tensor:
        """Logits `(B, num_labels)`; with `views`, the mean over each sample's views."""
        if views is None:
            return self._logits(pixel_values)
        logits = self._logits(pixel_values.flatten(0, 1))
        return logits.unflatten(0, pixel_values.shape[:2]).mean(1)

    def _logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        try:
            return self.model(pixel_values=pixel_values, **self.model_kwargs).logits
        except torch.OutOfMemoryError:
            raise
        except (ValueError, RuntimeError):
            if not self.model_kwargs:  # a model of one input size (VideoMAE, CLIP) says so
                check_image_size(self.model.config, tuple(pixel_values.shape[-2:]))
            raise

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["pixel_values"], batch.get("views"))
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        metrics = self.metrics[f"{stage}_"]
        metrics.update(logits.detach(), labels)
        self.log_epoch(metrics, prog_bar=stage == "val")
        if stage == "test":
            preds = logits.argmax(-1)
            self.confusion.update(preds, labels)
            shown = batch["pixel_values"] if "views" not in batch else batch["pixel_values"][:, 0]
            for image, label, pred in zip(shown, labels, preds):
                if len(self.samples) < self.num_sample_images:
                    self.samples.append((image.cpu(), int(label), int(pred)))
        return loss

    def on_test_epoch_start(self) -> None:
        self.samples = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        matrix = self.confusion.compute().cpu()  # synced over ranks
        self.confusion.reset()
        if self.trainer.is_global_zero:
            from hotcv_train import plots

            names = self.label_names
            plots.confusion_matrix(matrix, names, self.plots_dir / "confusion_matrix.png")
            if self.samples and self.samples[0][0].ndim == 4:  # (T, C, H, W) clips
                plots.clip_strips(self.samples, names, self.plots_dir / "test_samples.png")
            else:
                plots.prediction_grid(self.samples, names, self.plots_dir / "test_samples.png")

    # --- stage=predict: one JSON line per input -------------------------------------------------

    @property
    def _predictions_file(self) -> Path:
        return Path(self.trainer.default_root_dir) / f"predictions.rank{self.global_rank}.jsonl"

    def on_predict_epoch_start(self) -> None:
        self._predictions_file.parent.mkdir(parents=True, exist_ok=True)
        self._predictions_file.unlink(missing_ok=True)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        if self.count_skipped(batch, "predict"):
            return
        probs = self(batch["pixel_values"], batch.get("views")).softmax(-1)
        scores, indices = probs.topk(min(5, probs.shape[-1]), dim=-1)
        ids = batch["id"]  # file names (relative paths) or row numbers
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        with self._predictions_file.open("a") as f:
            for sample_id, score, index in zip(ids, scores.tolist(), indices.tolist()):
                record = {
                    "id": sample_id,
                    "labels": [self.label_names[i] for i in index],
                    "scores": [round(s, 6) for s in score],
                }
                f.write(json.dumps(record) + "\n")

    def on_predict_epoch_end(self) -> None:
        super().on_predict_epoch_end()
        self.trainer.strategy.barrier()
        if self.trainer.is_global_zero:
            root = Path(self.trainer.default_root_dir)
            records = []
            for part in sorted(root.glob("predictions.rank*.jsonl")):
                records += [json.loads(line) for line in part.read_text().splitlines() if line]
                part.unlink()
            records.sort(key=lambda r: r["id"])
            lines = "".join(json.dumps(r) + "\n" for r in records)
            (root / "predictions.jsonl").write_text(lines)
            log.info("wrote %d predictions to %s", len(records), root / "predictions.jsonl")
        self.trainer.strategy.barrier()


def resolve_auto_class(name: str) -> Any:
    """The transformers Auto class called `name` (e.g. AutoModelForVideoClassification)."""
    import transformers

    auto_class = getattr(transformers, name, None) if name.startswith("Auto") else None
    if auto_class is None:
        raise UserError(
            f"module.auto_class: {name!r} is not a transformers Auto class; use e.g. "
            "AutoModelForImageClassification or AutoModelForVideoClassification"
        )
    return auto_class


def check_image_size(config: Any, given: tuple[int, ...]) -> None:
    """Inputs of another size than a model of fixed position embeddings takes: one line."""
    size = getattr(config, "image_size", None)
    expected = (size, size) if isinstance(size, int) else tuple(size or ())
    if expected and expected != given:
        fix = expected[0] if expected[0] == expected[1] else list(expected)
        raise UserError(
            f"dataset.image_size: the inputs are {given[0]}x{given[1]} but the model "
            f"({config.model_type}) takes {expected[0]}x{expected[1]} and cannot resize its "
            f"position embeddings; set dataset.image_size={fix}"
        ) from None


def check_num_frames(config: Any, datamodule: Any) -> None:
    """A clip of another length than the model takes fails here, before any video is read."""
    expected = getattr(config, "num_frames", None)
    given = getattr(datamodule, "num_frames", None)
    if expected is not None and given is not None and expected != given:
        raise UserError(
            f"dataset.num_frames: is {given} but the model ({config.model_type}) takes clips of "
            f"{expected} frames; set dataset.num_frames={expected}"
        )
