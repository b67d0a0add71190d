"""Image classification: any `AutoModelForImageClassification` (ViT, Swin, ConvNeXt, ...)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from hotcv_train.checks import NonNegative, Range
from hotcv_train.errors import UserError
from hotcv_train.models import ModelSpec, build_model
from hotcv_train.modules.base import TaskModule


class ImageClassificationModule(TaskModule):
    """Cross-entropy finetuning with top-1/top-5 accuracy; test adds a confusion matrix and samples.

    Args:
        model: Where the model comes from; its head is resized to `num_labels`.
        num_labels: Number of classes; null in the config: from the data (run.py passes it).
        label_names: Class names, stored in the model config (`id2label`) and used in plots;
            null in the config: from the data.
        label_smoothing: Cross-entropy label smoothing.
        num_sample_images: Test images shown in `plots/test_samples.png`.
        **kwargs: `optimizer`, `scheduler` and `compile` of `TaskModule`.
    """

    def __init__(
        self,
        model: ModelSpec,
        num_labels: int | None,
        label_names: list[str] | None,
        label_smoothing: Annotated[float, Range(0, 1)],
        num_sample_images: NonNegative,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # Plain values only (the recipe lives in the run's config): checkpoints load weights_only.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if num_labels is None:
            raise UserError(
                "module.num_labels: unknown; set dataset.num_labels (or module.num_labels)"
            )
        names = list(label_names) if label_names else [str(i) for i in range(num_labels)]
        if len(names) != num_labels:
            raise UserError(
                f"module.label_names: {len(names)} names for num_labels={num_labels}; "
                "give one per class or null (from the data)"
            )
        self.label_names = names
        self.model = build_model(
            model,
            _auto_class(),
            num_labels=num_labels,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
        self.label_smoothing = label_smoothing
        self.num_sample_images = num_sample_images
        top_k = min(5, num_labels)
        accuracy = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_labels, average="micro"),
                f"acc_top{top_k}": MulticlassAccuracy(num_labels, top_k=top_k, average="micro"),
            }
        )
        self.train_metrics = accuracy.clone(prefix="train/")
        self.val_metrics = accuracy.clone(prefix="val/")
        self.test_metrics = accuracy.clone(prefix="test/")
        self.confusion = MulticlassConfusionMatrix(num_labels)
        self.samples: list[tuple[torch.Tensor, int, int]] = []

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["pixel_values"])
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits.detach(), labels)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        if stage == "test":
            preds = logits.argmax(-1)
            self.confusion.update(preds, labels)
            for image, label, pred in zip(batch["pixel_values"], labels, preds):
                if len(self.samples) < self.num_sample_images:
                    self.samples.append((image.cpu(), int(label), int(pred)))
        return loss

    def on_test_epoch_start(self) -> None:
        self.samples = []

    def on_test_epoch_end(self) -> None:
        matrix = self.confusion.compute().cpu()  # synced over ranks
        self.confusion.reset()
        if self.trainer.is_global_zero:
            from hotcv_train import plots

            names = self.label_names
            plots.confusion_matrix(matrix, names, self.plots_dir / "confusion_matrix.png")
            plots.prediction_grid(self.samples, names, self.plots_dir / "test_samples.png")


def _auto_class() -> Any:
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification
