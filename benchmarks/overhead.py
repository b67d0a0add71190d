"""Framework overhead: the quickstart through `train.py` vs a hand-written PyTorch loop.

Both train the quickstart's ViT (built by transformers from the same config) on the same digits
split with the same batch size, augmentation, AdamW + cosine schedule, and validate on the same
split after every epoch. Per-step time is the slope between two step counts inside one run: from
the first step of epoch 1 to the first step of the last epoch (so start-up, epoch 0's warm-up
and the end of the run are outside the window, and every epoch inside it pays its validation,
checkpoints and plots once). `train.py` steps are timed by the probe callback, the plain loop
times its own. Both also time the pieces of each step (fetch, transfer, forward, loss and
metrics, backward, optimizer, the rest): `overhead.part.*` side by side, and
`overhead.normalised_ratio`, each loop's step over its own model forward + backward, which a
machine running faster or slower between the two runs leaves unchanged.

    python benchmarks/overhead.py [--smoke]          # the rows alone
    python benchmarks/overhead.py --plain --epochs 8 --json out.json   # the plain loop alone
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Options, Row, median, python_script, train_py

# train.py variants: the default is what users run; the others show where its time goes.
VARIANTS = {
    "default": [],
    "no_callbacks_loggers": ["callbacks=none", "logger=none"],
    "no_callbacks_loggers_val": [
        "callbacks=none",
        "logger=none",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
    ],
    "no_training_curves": ["callbacks.training_curves=null"],
    "no_progress_bar": ["callbacks.progress_bar=null"],
}
SMOKE_VARIANTS = ["default"]
# The plain loop's pieces of a step, named as the probe's `StepParts` names train.py's.
PLAIN_PARTS = (
    "fetch",
    "transfer_and_batch_hooks",
    "forward",
    "loss_metrics_logging",
    "backward",
    "optimizer",
)


def window_slope(steps: list[list[float]]) -> tuple[float, int]:
    """Seconds per step from `[[time, epoch], ...]`: first step of epoch 1 to that of the last."""
    first_of: dict[int, tuple[int, float]] = {}
    for index, (t, epoch) in enumerate(steps):
        first_of.setdefault(int(epoch), (index, t))
    last = max(first_of)
    if last < 2:
        raise ValueError(f"need 3 or more epochs to time a window, got {last + 1}")
    (i0, t0), (i1, t1) = first_of[1], first_of[last]
    return (t1 - t0) / (i1 - i0), i1 - i0


def in_epoch_steps(steps: list[list[float]]) -> tuple[float, float]:
    """(median seconds between two steps of one epoch, median seconds between an epoch's last
    step and the next epoch's first beyond one step: its validation and epoch-end work), over
    epochs 1..: a steadier split of the slope, which a few slow steps on a busy machine move."""
    within, between = [], []
    for (t0, e0), (t1, e1) in itertools.pairwise(steps):
        if e0 >= 1:
            (within if e1 == e0 else between).append(t1 - t0)
    step = median(within)
    return step, (median(between) - step) if between else float("nan")


def quickstart_overrides(opts: Options) -> list[str]:
    """The quickstart, shortened: enough epochs for a window; smoke: a few batches each."""
    if opts.smoke:
        return [
            "experiment=quickstart",
            "trainer.max_epochs=4",
            "trainer.limit_train_batches=5",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
        ]
    return ["experiment=quickstart", f"trainer.max_epochs={opts.epochs}"]


def quickstart_run(opts: Options, variant: str = "default", repeat: int = 0) -> Any:
    """One (cached) `train.py experiment=quickstart` run of `variant`, probe attached (timing
    the pieces of each step in the default variant: a few µs a step)."""
    overrides = [*quickstart_overrides(opts), *VARIANTS[variant]]
    return train_py(overrides, opts, variant, repeat, parts=variant == "default")


def plain_args(opts: Options, validate: bool = True) -> list[str]:
    if opts.smoke:
        args = ["--epochs", "4", "--limit-train-batches", "5", "--limit-val-batches", "2"]
    else:
        args = ["--epochs", str(opts.epochs)]
    return ["--plain", *args, *([] if validate else ["--no-val"])]


def rows(opts: Options) -> list[Row]:
    names = SMOKE_VARIANTS if opts.smoke else list(VARIANTS)
    per_step: dict[str, list[float]] = {}
    split: dict[str, list[tuple[float, float]]] = {}  # (in-epoch step, epoch end) per run
    parts: dict[str, list[dict[str, float]]] = {"default": [], "plain": []}
    window = 0
    for repeat in range(opts.repeats):
        for name in names:
            probe = quickstart_run(opts, name, repeat).probe
            s, window = window_slope(probe["steps"])
            per_step.setdefault(name, []).append(s)
            split.setdefault(name, []).append(in_epoch_steps(probe["steps"]))
            if "parts_ms" in probe:
                parts[name].append(probe["parts_ms"])
        for name, validate in (("plain", True), ("plain_no_val", False)):
            if opts.smoke and not validate:
                continue
            result = python_script("overhead.py", plain_args(opts, validate), opts, name, repeat)
            per_step.setdefault(name, []).append(window_slope(result["steps"])[0])
            split.setdefault(name, []).append(in_epoch_steps(result["steps"]))
            if validate:
                parts[name].append(result["parts_ms"])
    ms = {k: 1000 * median(v) for k, v in per_step.items()}
    step_ms = {k: 1000 * median([s for s, _ in v]) for k, v in split.items()}
    epoch_end_ms = {k: 1000 * median([e for _, e in v]) for k, v in split.items()}
    raw = {k: [round(1000 * x, 2) for x in v] for k, v in per_step.items()}
    window_note = f"slope over {window} steps inside one run, median of {opts.repeats}"
    out = [
        Row(
            "overhead.ratio",
            ms["default"] / ms["plain"],
            "x",
            "train.py quickstart (default callbacks, csv logger, per-epoch val) per-step time "
            "/ the same training in a plain PyTorch loop",
            "<= 1.05",
            {"ms_per_step": raw},
        ),
        Row(
            "overhead.train_py_step",
            ms["default"],
            "ms/step",
            f"train.py experiment=quickstart per step, validation and epoch-end work amortised ({window_note})",
        ),
        Row(
            "overhead.plain_step",
            ms["plain"],
            "ms/step",
            f"plain PyTorch loop, same model/data/augmentation/validation ({window_note})",
        ),
    ]
    out += [
        Row(
            "overhead.step_ratio",
            step_ms["default"] / step_ms["plain"],
            "x",
            f"median time between two steps of an epoch, train.py {step_ms['default']:.1f} ms / "
            f"plain loop {step_ms['plain']:.1f} ms (epochs 1.., median of {opts.repeats})",
            details={"step_ms": step_ms},
        ),
        Row(
            "overhead.epoch_end",
            epoch_end_ms["default"],
            "ms/epoch",
            f"validation and epoch-end work per epoch in train.py (plain loop: "
            f"{epoch_end_ms['plain']:.0f} ms): checkpoint, metrics, plots, a new data iterator",
            details={"epoch_end_ms": epoch_end_ms},
        ),
    ]
    out += part_rows(parts)
    for name in ms:
        if name not in ("default", "plain"):
            out.append(
                Row(
                    f"overhead.variant.{name}",
                    ms[name],
                    "ms/step",
                    f"per step with {' '.join(VARIANTS.get(name, ['the plain loop, no validation']))}",
                )
            )
    breakdown = explain(ms)
    if breakdown:
        out[0].details["where_the_time_goes"] = breakdown
        opts.log("overhead, per step:\n  " + "\n  ".join(breakdown))
    return out


def model_normalised(parts: dict[str, float]) -> float:
    """A step's time over its model's forward + backward, the same work in both loops: a
    yardstick timed in the same run, so a machine that runs faster or slower for a while
    (this one does, by up to a third) moves both alike."""
    return parts["step"] / (parts["forward"] + parts["backward"])


def part_rows(parts: dict[str, list[dict[str, float]]]) -> list[Row]:
    """The framework's cost per step normalised by the model's own work, then ms per step of
    each piece of a training step in train.py (the probe's `StepParts`), next to the plain
    loop's same piece; medians over the repeats."""
    if not parts["default"] or not parts["plain"]:
        return []
    ours = {k: median([p[k] for p in parts["default"]]) for k in parts["default"][0]}
    plain = {k: median([p[k] for p in parts["plain"]]) for k in parts["plain"][0]}
    ratios = [
        model_normalised(a) / model_normalised(b)
        for a, b in zip(parts["default"], parts["plain"], strict=True)
    ]
    normalised = Row(
        "overhead.normalised_ratio",
        median(ratios),
        "x",
        "train.py's step / the plain loop's, each over its own model forward + backward "
        f"(steadier than overhead.ratio on a machine whose speed drifts; median of "
        f"{len(ratios)})",
        "<= 1.05",
        {"per_repeat": [round(r, 3) for r in ratios]},
    )
    what = {
        "fetch": "the next batch from the DataLoader (Lightning: its fetcher)",
        "transfer_and_batch_hooks": "to the device and the batch hooks: crop/flip/resize",
        "forward": "the model's forward",
        "loss_metrics_logging": "training_step less the forward: loss, train metrics, self.log",
        "of_which_self_log": "Lightning's self.log of the step loss",
        "backward": "loss.backward()",
        "optimizer": "optimizer step, zero_grad (Lightning: and its closure)",
        "loop_and_callbacks": "the rest of a step: Lightning's loop, hooks, callbacks",
        "step": "a whole training step",
    }
    return [normalised] + [
        Row(
            f"overhead.part.{name}",
            value,
            "ms/step",
            f"{what.get(name, name)}; plain loop: "
            + (f"{plain[name]:.2f}" if name in plain else "none"),
            details={"plain_ms": plain.get(name)},
        )
        for name, value in ours.items()
    ]


def explain(ms: dict[str, float]) -> list[str]:
    """Differences between variants, in ms/step: what each part of the framework costs."""
    lines = []

    def diff(label: str, a: str, b: str) -> None:
        if a in ms and b in ms:
            lines.append(f"{label}: {ms[a] - ms[b]:+.2f} ms/step")

    diff(
        "callbacks + csv logger (default - callbacks=none logger=none)",
        "default",
        "no_callbacks_loggers",
    )
    diff("  of which training-curve plots", "default", "no_training_curves")
    diff("  of which the rich progress bar", "default", "no_progress_bar")
    diff("validation in train.py", "no_callbacks_loggers", "no_callbacks_loggers_val")
    diff("validation in the plain loop", "plain", "plain_no_val")
    diff(
        "Lightning loop + HF rows/PIL decode + metrics (train.py bare - plain bare)",
        "no_callbacks_loggers_val",
        "plain_no_val",
    )
    return lines


# --- the plain PyTorch loop ------------------------------------------------------------------


def quickstart_config() -> Any:
    """The composed quickstart config: the plain loop reads the same recipe values from it."""
    from hydra import compose, initialize_config_dir

    import hotcv_train  # noqa: F401  (registers the config's resolvers)

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(str(root / "conf"), version_base="1.3"):
        return compose("config", overrides=["experiment=quickstart"])


def plain_loop(
    epochs: int, validate: bool, limit_train_batches: int | None, limit_val_batches: int | None
) -> dict[str, Any]:
    """Train as a user would by hand; return `{"steps": [[time, epoch], ...], ...}`."""
    t_start = time.time()
    import torch
    import torch.nn.functional as F
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2
    from transformers import ViTConfig, ViTForImageClassification, get_cosine_schedule_with_warmup

    from hotcv_train.data.digits import load_digits

    cfg = quickstart_config()
    data_cfg, module_cfg = cfg.dataset, cfg.module
    torch.manual_seed(cfg.seed)

    digits = load_digits(data_cfg.generator.test_fraction, data_cfg.generator.seed)
    parts = digits["train"].train_test_split(
        test_size=data_cfg.val_fraction, seed=data_cfg.split_seed
    )

    def tensors(rows: Any) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        images = np.stack([np.asarray(im.convert("RGB")) for im in rows["img"]])
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(
            rows["label"]
        )

    size = int(module_cfg.model.config.image_size)
    mean, std = list(data_cfg.image_mean), list(data_cfg.image_std)
    train_tf = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=tuple(data_cfg.crop_scale), antialias=True),
            v2.RandomHorizontalFlip(data_cfg.hflip),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    eval_tf = v2.Compose(
        [
            v2.Resize(size, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )

    if data_cfg.device_transforms:  # the same augmentation, on whole batches
        from hotcv_train.datamodules.preprocessing import (
            Preprocessing,
            draw_boxes,
            transform_batch,
        )

        p = Preprocessing((size, size), tuple(mean), tuple(std))
        crop, hflip = tuple(data_cfg.crop_scale), data_cfg.hflip

        def train_tf(x: torch.Tensor) -> torch.Tensor:
            sizes = torch.tensor([x.shape[-2:]] * len(x))
            return transform_batch(x, *draw_boxes(sizes, crop, hflip), p)

        def eval_tf(x: torch.Tensor) -> torch.Tensor:
            return transform_batch(x, *draw_boxes(torch.tensor([x.shape[-2:]] * len(x))), p)

    class Digits(Dataset):
        def __init__(self, rows: Any, transform: Any):
            self.images, self.labels = tensors(rows)
            self.transform = transform

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.images[i]
            return (x if self.transform is None else self.transform(x)), self.labels[i]

    batched = data_cfg.device_transforms
    train = DataLoader(
        Digits(parts["train"], None if batched else train_tf),
        batch_size=data_cfg.batch_size,
        shuffle=True,
    )
    val = DataLoader(
        Digits(parts["test"], None if batched else eval_tf), batch_size=data_cfg.eval_batch_size
    )
    config = ViTConfig(**OmegaConf.to_container(module_cfg.model.config), num_labels=10)
    model = ViTForImageClassification(config).train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=module_cfg.optimizer.lr,
        weight_decay=module_cfg.optimizer.weight_decay,
        fused=module_cfg.optimizer.get("fused"),
    )
    per_epoch = min(len(train), limit_train_batches or len(train))
    total = epochs * per_epoch
    warmup = math.ceil(module_cfg.scheduler.warmup_ratio * total)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)

    steps: list[list[float]] = []
    parts = dict.fromkeys(PLAIN_PARTS, 0.0)  # seconds in epochs 1.., as the probe's StepParts
    timed_steps = 0
    val_acc = float("nan")
    for epoch in range(epochs):
        model.train()
        batches = iter(train)
        for _ in range(per_epoch):
            t0 = time.perf_counter()
            x, y = next(batches)
            t1 = time.perf_counter()
            steps.append([time.time() - t_start, epoch])
            if batched:
                x = train_tf(x)
            t2 = time.perf_counter()
            logits = model(pixel_values=x).logits
            t3 = time.perf_counter()
            loss = F.cross_entropy(logits, y, label_smoothing=module_cfg.label_smoothing)
            t4 = time.perf_counter()
            loss.backward()
            t5 = time.perf_counter()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            t6 = time.perf_counter()
            if epoch >= 1 or epochs == 1:
                timed_steps += 1
                for name, a, b in zip(
                    PLAIN_PARTS, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)
                ):
                    parts[name] += b - a
        if validate:
            model.eval()
            correct = seen = 0
            with torch.no_grad():
                for i, (x, y) in enumerate(val):
                    if limit_val_batches is not None and i == limit_val_batches:
                        break
                    x = eval_tf(x) if batched else x
                    correct += int((model(pixel_values=x).logits.argmax(-1) == y).sum())
                    seen += len(y)
            val_acc = correct / max(seen, 1)
    parts_ms = {k: 1000 * v / max(timed_steps, 1) for k, v in parts.items()}
    parts_ms["step"] = sum(parts_ms.values())
    return {
        "steps": steps,
        "val_acc": val_acc,
        "train_loss": float(loss.detach()),
        "parts_ms": parts_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="run the plain loop alone")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit-train-batches", type=int, default=None)
    parser.add_argument("--limit-val-batches", type=int, default=None)
    parser.add_argument("--no-val", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.plain:
        result = plain_loop(
            args.epochs, not args.no_val, args.limit_train_batches, args.limit_val_batches
        )
    else:
        result = {"rows": [r.to_dict() for r in rows(Options(smoke=args.smoke))]}
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
