"""Pictures for the run folder's `plots/`: curves, confusion matrices, sample grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt
import torch


def save(fig: Any, path: Path, loggers: Sequence[Any] = (), step: int = 0) -> Path:
    """Write `fig` to `path` and hand it to TensorBoard / W&B when those loggers are on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_figure(f"plots/{path.stem}", fig, global_step=step)
        elif kind == "WandbLogger":
            import wandb

            logger.experiment.log({f"plots/{path.stem}": wandb.Image(str(path))})
    plt.close(fig)
    return path


def training_curves(history: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """One panel per metric family (loss, acc, ...), train and val on the same axes."""
    families: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key, points in history.items():
        stage, _, name = key.partition("/")
        families.setdefault(name.removesuffix("_epoch"), {})[stage] = points
    if not families:
        return None
    fig, axes = plt.subplots(1, len(families), figsize=(4 * len(families), 3.2), squeeze=False)
    for ax, (name, stages) in zip(axes[0], sorted(families.items())):
        for stage, points in sorted(stages.items()):
            epochs, values = zip(*points)
            ax.plot(epochs, values, marker="o", ms=3, label=stage)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def confusion_matrix(matrix: torch.Tensor, names: Sequence[str] | None, path: Path) -> Path:
    n = matrix.shape[0]
    names = list(names) if names else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * n + 2), max(4, 0.45 * n + 1.5)))
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="row rate")
    return save(fig, path)


def to_display(image: torch.Tensor) -> torch.Tensor:
    """A normalized CHW tensor as an HWC image in [0, 1] (min-max, so no stats are needed)."""
    image = image.float()
    image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-8)
    return image.permute(1, 2, 0).squeeze(-1)


def prediction_grid(
    samples: Sequence[tuple[torch.Tensor, int, int]], names: Sequence[str] | None, path: Path
) -> Path | None:
    """Images titled `pred (true)`, green when right and red when wrong."""
    if not samples:
        return None
    cols = min(8, len(samples))
    rows = -(-len(samples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label, pred) in zip(axes.flat, samples):
        ax.imshow(to_display(image), cmap="gray")
        title = f"{names[pred]} ({names[label]})" if names else f"{pred} ({label})"
        ax.set_title(title, fontsize=8, color="green" if pred == label else "red")
    return save(fig, path)


def depth_panels(
    samples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    path: Path,
    max_depth: float,
    loggers: Sequence[Any] = (),
    step: int = 0,
) -> Path | None:
    """Rows of image | ground truth | prediction | |error|, for `(image, depth, pred)` samples.

    Ground truth and prediction share one colour scale (0 to the deepest valid value shown, at
    most `max_depth`) and one colour bar, so rows and epochs compare by eye; invalid ground truth
    (0 or NaN) is left blank in the depth and error panels.
    """
    if not samples:
        return None
    rows = []
    for image, depth, pred in samples:
        depth, pred = depth.float().cpu(), pred.float().cpu().clamp(0, max_depth)
        valid = torch.isfinite(depth) & (depth > 0)
        blank = torch.full_like(depth, float("nan"))
        error = torch.where(valid, (pred - depth).abs(), blank)
        rows.append((to_display(image.cpu()), torch.where(valid, depth, blank), pred, error))
    deepest = max(float(torch.nan_to_num(r[1], nan=0).max().clamp(max=max_depth)) for r in rows)
    deepest = max(deepest, max(float(r[2].max()) for r in rows), 1e-3)
    worst = max(max(float(torch.nan_to_num(r[3], nan=0).max()) for r in rows), 1e-3)
    fig, axes = plt.subplots(
        len(rows), 4, figsize=(12, 2.4 * len(rows)), squeeze=False, layout="constrained"
    )
    depth_map = error_map = None
    for ax_row, (image, depth, pred, error) in zip(axes, rows):
        ax_row[0].imshow(image, cmap="gray")
        ax_row[1].imshow(depth, cmap="magma_r", vmin=0, vmax=deepest)
        depth_map = ax_row[2].imshow(pred, cmap="magma_r", vmin=0, vmax=deepest)
        error_map = ax_row[3].imshow(error, cmap="viridis", vmin=0, vmax=worst)
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("image", "ground truth", "prediction", "|error|")):
        ax.set_title(title)
    fig.colorbar(depth_map, ax=axes[:, 1:3].ravel().tolist(), label="depth (m)", shrink=0.9)
    fig.colorbar(error_map, ax=axes[:, 3].ravel().tolist(), label="|error| (m)", shrink=0.9)
    return save(fig, path, loggers, step)


def label_colours(num_labels: int) -> Any:
    """`(num_labels + 1, 3)` uint8 RGB: black for background (0), then tab10 (tab20 past 10)."""
    import numpy as np

    cmap = matplotlib.colormaps["tab10" if num_labels <= 10 else "tab20"]
    colours = [cmap(i % cmap.N)[:3] for i in range(num_labels)]
    return (np.array([(0.0, 0.0, 0.0), *colours]) * 255).round().astype(np.uint8)


def save_label_map(labels: torch.Tensor, num_labels: int, path: Path) -> Path:
    """An HW label map as a palette PNG: pixel values are the labels, the palette makes it visible.

    Readers that take palette indices (PIL's `np.asarray`, VOC tools, a mode-L reference) get the
    labels back, so a saved map serves as a reference mask as is.
    """
    from PIL import Image

    image = Image.fromarray(labels.to(torch.uint8).numpy())  # mode L; the palette makes it P
    image.putpalette(label_colours(num_labels).flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def segmentation_overlay(
    image: torch.Tensor, labels: torch.Tensor, names: Sequence[str], path: Path, alpha: float = 0.5
) -> Path:
    """A uint8 CHW image under its HW label map (label k = `names[k - 1]`), with a legend.

    The legend gives each name's colour and the share of the image it covers.
    """
    import numpy as np
    from matplotlib.patches import Patch

    colours = label_colours(len(names)) / 255
    labels_np = labels.numpy()
    overlay = np.zeros((*labels_np.shape, 4))
    overlay[..., :3] = colours[labels_np]
    overlay[..., 3] = alpha * (labels_np > 0)
    height, width = labels_np.shape
    scale = 4 / max(height, width)
    fig, ax = plt.subplots(figsize=(width * scale + 0.4, height * scale + 0.4))
    ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
    ax.imshow(overlay, interpolation="nearest")
    ax.axis("off")
    shares = np.bincount(labels_np.ravel(), minlength=len(names) + 1) / labels_np.size
    handles = [
        Patch(color=colours[k], label=f"{name} ({shares[k]:.0%})")
        for k, name in enumerate(names, start=1)
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=8
    )
    return save(fig, path)


def clip_strips(
    samples: Sequence[tuple[torch.Tensor, int, int]],
    names: Sequence[str] | None,
    path: Path,
    max_videos: int = 6,
    max_frames: int = 8,
) -> Path | None:
    """One row per video: its sampled frames, titled `pred (true)`, green when right, red when wrong.

    `samples` are `(clip (T, C, H, W), label, pred)`; up to `max_frames` evenly spaced frames show.
    Rows take one video of each class in turn, so a few rows show several classes.
    """
    by_label: dict[int, list] = {}
    for sample in samples:
        by_label.setdefault(sample[1], []).append(sample)
    turns = [group[i] for i in range(len(samples)) for group in by_label.values() if i < len(group)]
    samples = turns[:max_videos]
    if not samples:
        return None
    frames = min(max_frames, samples[0][0].shape[0])
    fig, axes = plt.subplots(
        len(samples), frames, figsize=(1.3 * frames, 1.5 * len(samples)), squeeze=False
    )
    for ax_row, (clip, label, pred) in zip(axes, samples):
        picks = torch.linspace(0, clip.shape[0] - 1, frames).round().long()
        lo, hi = clip.min(), clip.max()  # one scale for the whole clip, so frames compare
        for ax, t in zip(ax_row, picks):
            ax.imshow(((clip[t] - lo) / (hi - lo).clamp(min=1e-8)).permute(1, 2, 0).squeeze(-1))
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(f"frame {int(picks[0])}..{int(picks[-1])}", fontsize=7)
        title = f"{names[pred]} ({names[label]})" if names else f"{pred} ({label})"
        ax_row[0].set_title(
            title, fontsize=8, loc="left", color="green" if pred == label else "red"
        )
    fig.suptitle("test clips: predicted (true)", fontsize=9)
    return save(fig, path)


def masking_panels(
    rows: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    path: Path,
    loggers: Sequence[Any] = (),
    step: int = 0,
    max_frames: int = 4,
) -> Path | None:
    """Masked-autoencoder pictures: for each clip, frames of original | masked input | rebuilt.

    `rows` are `(original, masked, reconstruction)` clips `(T, C, H, W)` in [0, 1]; masked
    patches are grey in the middle panel.
    """
    if not rows:
        return None
    frames = min(max_frames, rows[0][0].shape[0])
    fig, axes = plt.subplots(
        len(rows), 3, figsize=(3 * 1.4 * frames, 1.6 * len(rows)), squeeze=False
    )
    for ax_row, clips in zip(axes, rows):
        picks = torch.linspace(0, clips[0].shape[0] - 1, frames).round().long()
        for ax, clip in zip(ax_row, clips):
            strip = torch.cat([clip[t] for t in picks], dim=-1).clamp(0, 1)
            ax.imshow(strip.permute(1, 2, 0).squeeze(-1))
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("original", "masked input", "reconstruction")):
        ax.set_title(title)
    return save(fig, path, loggers, step)


def objective_vs_params(
    points: dict[str, tuple[list[str], list[float]]], metric: str, path: Path
) -> Path:
    """A sweep's objective against each swept parameter: one panel per parameter."""
    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.2), squeeze=False)
    for ax, (name, (values, objectives)) in zip(axes[0], points.items()):
        try:
            xs: list[Any] = [float(v) for v in values]
            positive = min(xs) > 0
            if positive and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
        except ValueError:  # categorical values: one position each, in first-seen order
            labels = list(dict.fromkeys(values))
            xs = [labels.index(v) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.scatter(xs, objectives, s=30)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    return save(fig, path)


def optimization_history(
    history: list[tuple[int, float | None]], metric: str, mode: str, path: Path
) -> Path:
    """Each trial's objective and the best so far, in trial order; red lines: failed trials."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    done = [(t, v) for t, v in history if v is not None]
    failed = [t for t, v in history if v is None]
    if done:
        trials, values = zip(*done)
        ax.scatter(trials, values, s=30, label="trial")
        pick = min if mode == "min" else max
        best = [pick(values[: i + 1]) for i in range(len(values))]
        ax.step(trials, best, where="post", color="C1", label="best so far")
    for t in failed:
        ax.axvline(t, color="C3", alpha=0.3, lw=1)
    ax.set_xlabel("trial (job)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def draw_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[str] | None = None,
    colour: str = "red",
    width: int = 2,
) -> torch.Tensor:
    """`image` (uint8 CHW, or a normalised float image) with xyxy pixel `boxes` drawn on it."""
    from torchvision.utils import draw_bounding_boxes

    if image.dtype != torch.uint8:
        image = (to_display(image).permute(2, 0, 1) * 255).round().to(torch.uint8)
    if not len(boxes):
        return image
    return draw_bounding_boxes(
        image, boxes.float(), labels=list(labels) if labels else None, colors=colour, width=width
    )


def detection_grid(
    samples: Sequence[dict],
    names: Sequence[str],
    path: Path,
    loggers: Sequence[Any] = (),
    step: int = 0,
) -> Path | None:
    """Images with true boxes (green) and predicted boxes (red, `name score`), titled by id.

    Each sample: `image` (CHW), `true_boxes`, `true_labels`, `boxes`, `scores`, `labels`, `id`,
    boxes as xyxy pixels of the image.
    """
    if not samples:
        return None
    cols = min(4, len(samples))
    rows = -(-len(samples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, samples):
        picture = draw_boxes(s["image"], s["true_boxes"], colour="lime")
        labels = [f"{names[int(c)]} {float(p):.2f}" for c, p in zip(s["labels"], s["scores"])]
        picture = draw_boxes(picture, s["boxes"], labels, colour="red", width=1)
        ax.imshow(picture.permute(1, 2, 0).numpy())
        ax.set_title(
            f"{s['id']}: {len(s['true_boxes'])} true, {len(s['boxes'])} predicted", fontsize=8
        )
    fig.suptitle("green: ground truth, red: predictions", fontsize=9)
    return save(fig, path, loggers, step)


def save_boxes(
    image: torch.Tensor,
    boxes: torch.Tensor,
    names: Sequence[str],
    scores: torch.Tensor,
    path: Path,
) -> Path:
    """A uint8 CHW image with predicted boxes (`name score`) drawn, saved as a PNG at full size."""
    from torchvision.io import write_png

    labels = [f"{n} {float(s):.2f}" for n, s in zip(names, scores)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(draw_boxes(image.cpu(), boxes.cpu(), labels), str(path))
    return path
