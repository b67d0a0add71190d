"""Monocular depth metrics (Eigen et al., 2014), accumulated per valid pixel over a whole split.

Each metric keeps a sum and a pixel count, reduced by summing across DDP ranks, so the value is
the same whatever the batch size or number of devices. Invalid ground truth (0, NaN, or outside
`[min_depth, max_depth]`) and pixels outside an optional mask count nowhere; predictions are
clamped to `[min_depth, max_depth]` first, as the literature evaluates them.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection


def valid_depth(target: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Pixels whose ground truth is a finite depth in `(min_depth, max_depth]`."""
    return torch.isfinite(target) & (target > min_depth) & (target <= max_depth)


class DepthMetric(Metric):
    """The mean of a per-pixel quantity over valid pixels; subclasses name the quantity.

    Args:
        min_depth: Ground truth at or below this is invalid; predictions are clamped up to it.
        max_depth: Ground truth above this is invalid; predictions are clamped down to it.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_pixel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def update(
        self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add a batch: `preds` and `target` in metres, same shape; `mask` keeps only its pixels."""
        valid = valid_depth(target, self.min_depth, self.max_depth)
        if mask is not None:
            valid &= mask.bool()
        pred = preds[valid].double().clamp(self.min_depth, self.max_depth)
        self.total += self.per_pixel(pred, target[valid].double()).sum()
        self.count += valid.sum()

    def compute(self) -> torch.Tensor:
        if self.count == 0:  # nothing valid was seen: say so instead of inventing a number
            return torch.tensor(float("nan"))
        return self.finish(self.total / self.count).float()


class AbsRel(DepthMetric):
    higher_is_better = False

    def per_pixel(self, pred, target):
        return (pred - target).abs() / target


class SqRel(DepthMetric):
    higher_is_better = False

    def per_pixel(self, pred, target):
        return (pred - target) ** 2 / target


class RMSE(DepthMetric):
    higher_is_better = False

    def per_pixel(self, pred, target):
        return (pred - target) ** 2

    def finish(self, mean):
        return mean.sqrt()


class RMSELog(DepthMetric):
    higher_is_better = False

    def per_pixel(self, pred, target):
        return (pred.log() - target.log()) ** 2

    def finish(self, mean):
        return mean.sqrt()


class Log10(DepthMetric):
    higher_is_better = False

    def per_pixel(self, pred, target):
        return (pred.log10() - target.log10()).abs()


class Delta(DepthMetric):
    """Share of pixels with `max(pred/target, target/pred) < 1.25 ** power`."""

    higher_is_better = True

    def __init__(self, power: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.threshold = 1.25**power

    def per_pixel(self, pred, target):
        return (torch.maximum(pred / target, target / pred) < self.threshold).double()


def depth_metrics(min_depth: float, max_depth: float) -> MetricCollection:
    """The eight numbers depth papers report, keyed as they are logged (`abs_rel`, `delta1`, ...)."""
    kw = {"min_depth": min_depth, "max_depth": max_depth}
    return MetricCollection(
        {
            "abs_rel": AbsRel(**kw),
            "sq_rel": SqRel(**kw),
            "rmse": RMSE(**kw),
            "rmse_log": RMSELog(**kw),
            "log10": Log10(**kw),
            "delta1": Delta(1, **kw),
            "delta2": Delta(2, **kw),
            "delta3": Delta(3, **kw),
        },
        compute_groups=False,  # the states differ by design; skip the grouping probe
    )
