"""GPU throughput: ViT-L/32-384 training images/s and model FLOPs utilisation, synthetic data.

The model is built from config with transformers (random weights, nothing downloaded) and trained
on random tensors already on the device, so only the GPU is measured: bf16 autocast, TF32
matmuls, fused AdamW, channels-last input (the patch embedding is a convolution), no host-device
sync inside the timed steps, `torch.compile` off and on, several batch sizes. MFU = achieved
model FLOP/s over the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s); FLOPs per image are counted
analytically (matmuls, x3 for forward + backward) and checked against
`torch.utils.flop_counter.FlopCounterMode` (which, on the CPU, does not count attention's SDPA).

`--train-py B` also trains the same model through `train.py` (`task=vit_cifar10 trainer=gpu`,
the model built from the same config, on CIFAR-10-shaped data: 32 px PNGs decoded by the
DataLoader workers, augmented and resized to 384 px on the device, or with `--cpu-transforms`
also per image in the workers) at batch size B and reports its images/s over the loop's: what the
framework, the real input pipeline and the augmentation cost on top of the bare training step.

Without CUDA this runs a tiny ViT on the CPU for a few steps: it exercises the code path only;
its images/s say nothing about a GPU.

    python benchmarks/gpu_throughput.py                           # on a GPU: the full sweep
    python benchmarks/gpu_throughput.py --batch-sizes 128 --compile off --train-py 128 --cpu-transforms
    python benchmarks/gpu_throughput.py --batch-sizes 256 --compile off --train-py 256 \
        --train-py-overrides 'module.channels_last=true'          # a train.py variant
    python benchmarks/gpu_throughput.py --smoke                   # CPU, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Options, Row, python_script, train_py
from benchmarks.input_pipeline import cifar_like

VIT_L32_384 = dict(
    image_size=384,
    patch_size=32,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
)
TINY = dict(
    image_size=64,
    patch_size=16,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
)
NUM_LABELS = 10
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a substring of the device name.
PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


def vit_train_flops(config: dict[str, int], num_labels: int = NUM_LABELS) -> float:
    """Matmul FLOPs of one training image, multiply-add = 2 FLOPs: forward x 3 (forward, and
    backward's two matmuls per forward one), less the patch embedding's input gradient (pixels
    need none)."""
    d, layers, inner = (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["intermediate_size"],
    )
    patches = (config["image_size"] // config["patch_size"]) ** 2
    n = patches + 1  # + [CLS]
    embed = 2 * patches * (3 * config["patch_size"] ** 2) * d
    per_layer = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * inner
    head = 2 * d * num_labels
    return 3.0 * (layers * per_layer + head) + 2.0 * embed


def counted_train_flops(model: Any, x: Any, y: Any) -> float:
    """FLOPs of one forward + backward as FlopCounterMode counts them, per image."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(pixel_values=x).logits.float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def measure(
    config: dict[str, int],
    batch_size: int,
    compile: bool,
    steps: int,
    warmup: int,
    windows: int,
    device: str,
) -> dict[str, Any]:
    """Images/s of training steps at `batch_size` (median over `windows` timed windows)."""
    import torch
    import torch.nn.functional as F
    from transformers import ViTConfig, ViTForImageClassification

    cuda = device == "cuda"
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**config, num_labels=NUM_LABELS)).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    size = config["image_size"]
    x = torch.randn(batch_size, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_LABELS, (batch_size,), device=device)
    counted = counted_train_flops(model, x[:1], y[:1])
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(forward(pixel_values=x).logits.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(warmup):  # includes compilation when `compile`
        step()
    sync()
    warmup_s = time.perf_counter() - start
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()  # the only sync: once per window
        rates.append(batch_size * steps / (time.perf_counter() - start))
    result = {
        "batch_size": batch_size,
        "compile": compile,
        "img_per_s": statistics.median(rates),
        "windows_img_per_s": [round(r, 1) for r in rates],
        "warmup_s": round(warmup_s, 2),
        "counted_flops_per_img": counted,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    if cuda:
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return result


def train_py_overrides(
    data: Path,
    config: dict[str, int],
    batch_size: int,
    device_transforms: bool,
    cuda: bool,
    steps: int,
) -> list[str]:
    """`task=vit_cifar10` on `data` with `config`'s ViT built from scratch, `trainer=gpu`, for
    `steps` steps of the first epoch; no validation, checkpoints or test: the bare fit loop, as
    the synthetic loop is, but with the real input pipeline and augmentation."""
    return [
        "task=vit_cifar10",
        "trainer=gpu" if cuda else "trainer=cpu",
        f"dataset.path={data}",
        "module.model.name_or_path=null",
        "module.model.model_type=vit",
        *(f"++module.model.config.{key}={value}" for key, value in config.items()),
        f"dataset.image_size={config['image_size']}",
        "dataset.image_mean=[0.5,0.5,0.5]",
        "dataset.image_std=[0.5,0.5,0.5]",
        f"dataset.device_transforms={device_transforms}",
        f"dataset.batch_size={batch_size}",
        "trainer.max_epochs=1",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "callbacks.model_checkpoint=null",
        "callbacks.last_checkpoint=null",
        "test_after_fit=false",
    ]


def train_py_rate(overrides: list[str], batch_size: int, skip: int) -> dict[str, Any]:
    """Images/s of a `train.py` run: the slope of its step times after `skip` warm-up steps."""
    result = train_py(overrides, Options(repeats=1, verbose=False), "gpu_train_py")
    marks = [t for t, _epoch in result.probe["steps"]]  # seconds since process start, each step
    if len(marks) < skip + 2:
        raise ValueError(f"{len(marks)} steps ran: none to time after {skip} warm-up steps")
    return {
        "batch_size": batch_size,
        "img_per_s": batch_size * (len(marks) - 1 - skip) / (marks[-1] - marks[skip]),
        "timed_steps": len(marks) - 1 - skip,
        "first_step_s": round(result.probe["marks"]["first_step"], 1),
        "wall_s": round(result.wall_s, 1),
        "command": "python train.py " + " ".join(overrides),
    }


def train_py_runs(
    args: argparse.Namespace, config: dict[str, int], runs: list[dict[str, Any]], cuda: bool
) -> list[dict[str, Any]]:
    """`train.py` at each `--train-py` batch size (batches resized on the device, and with
    `--cpu-transforms` also per image in the DataLoader workers), over the eager loop's images/s,
    on a `save_to_disk` copy of the input-pipeline benchmark's CIFAR-shaped data."""
    smoke = args.smoke or not cuda
    batch_sizes = [8] if smoke else [int(b) for b in args.train_py.split(",")]
    steps, skip = (6, 2) if smoke else (args.train_steps, 10)
    out = []
    with tempfile.TemporaryDirectory(prefix="hotcv-gpu-") as tmp:
        images = int(max(batch_sizes) * (steps + 2) / 0.85)  # 10% is carved for validation
        data = Path(tmp) / "cifar_like"
        splits = cifar_like(images)
        splits["test"] = splits["train"].select(range(64))
        splits.save_to_disk(data)
        for batch_size in batch_sizes:
            for device_transforms in (True, False) if args.cpu_transforms else (True,):
                overrides = (
                    train_py_overrides(data, config, batch_size, device_transforms, cuda, steps)
                    + args.train_py_overrides.split()
                )
                rate = train_py_rate(overrides, batch_size, skip)
                rate["device_transforms"] = device_transforms
                loop = next(
                    (r for r in runs if (r["batch_size"], r["compile"]) == (batch_size, False)),
                    {},
                )
                if "img_per_s" in loop:
                    rate["over_loop"] = rate["img_per_s"] / loop["img_per_s"]
                out.append(rate)
                print(json.dumps(rate), file=sys.stderr, flush=True)
    return out


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast: TF32
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    smoke = args.smoke or not cuda
    config = TINY if not cuda else VIT_L32_384
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    if smoke:  # one eager setting; compiling takes minutes and tells nothing on a smoke run
        batch_sizes, compiles = [8 if not cuda else batch_sizes[0]], [False]
    steps, warmup, windows = (3, 1, 1) if smoke else (args.steps, args.warmup, 3)
    name = torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA device)"
    peak = args.peak_tflops or (peak_tflops(name) if cuda else None)
    analytic = vit_train_flops(config)
    runs = []
    for compile in compiles:
        for batch_size in batch_sizes:
            try:
                run = measure(config, batch_size, compile, steps, warmup, windows, device)
            except torch.cuda.OutOfMemoryError:
                runs.append({"batch_size": batch_size, "compile": compile, "oom": True})
                torch.cuda.empty_cache()
                continue
            run["tflops"] = run["img_per_s"] * analytic / 1e12
            if peak:
                run["mfu"] = run["tflops"] / peak
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    train = train_py_runs(args, config, runs, cuda) if args.train_py or smoke else []
    return {
        "device": name,
        "cuda": cuda,
        "model": "ViT-L/32-384" if cuda else "tiny ViT (CPU smoke)",
        "config": config,
        "analytic_flops_per_img": analytic,
        "peak_tflops": peak,
        "runs": runs,
        "train_py": train,
        "torch": torch.__version__,
    }


def rows(opts: Options) -> list[Row]:
    args = ["--smoke"] if opts.smoke else ["--train-py", "128", "--cpu-transforms"]
    result = python_script("gpu_throughput.py", args, opts, "gpu")
    ok = [r for r in result["runs"] if not r.get("oom")]
    if not result["cuda"]:
        run = ok[0]
        return [
            Row(
                "gpu.cpu_smoke",
                run["img_per_s"],
                "img/s",
                "no CUDA device here: a tiny ViT trained on the CPU, code path only (not a GPU "
                "number); run benchmarks/gpu_throughput.py on a GPU for ViT-L/32-384",
                details={
                    "flops_counted_over_analytic": run["counted_flops_per_img"]
                    / result["analytic_flops_per_img"],
                    "train_py": result["train_py"],
                },
            )
        ]
    out = []
    for run in ok:
        tag = f"gpu.vit_l32_384.{'compiled' if run['compile'] else 'eager'}.bs{run['batch_size']}"
        out.append(
            Row(
                tag,
                run["img_per_s"],
                "img/s",
                f"ViT-L/32-384 training on {result['device']}, bf16 autocast, fused AdamW, "
                f"synthetic data; MFU {run.get('mfu', float('nan')):.1%}",
                details=run,
            )
        )
    for run in result["train_py"]:
        where = "device" if run["device_transforms"] else "workers"
        out.append(
            Row(
                f"gpu.train_py.transforms_on_{where}.bs{run['batch_size']}",
                run["img_per_s"],
                "img/s",
                f"the same model through train.py task=vit_cifar10 trainer=gpu (32 px images "
                f"augmented and resized on the {where}); "
                f"{run.get('over_loop', float('nan')):.2f}x the synthetic loop's img/s",
                details=run,
            )
        )
    best = max(ok, key=lambda r: r["img_per_s"])
    if "mfu" in best:
        out.append(
            Row(
                "gpu.vit_l32_384.best_mfu",
                best["mfu"],
                "fraction",
                f"model FLOPs utilisation of the fastest setting (bs {best['batch_size']}, "
                f"compile {best['compile']}) vs {result['peak_tflops']} TFLOP/s bf16 dense",
                details={"analytic_flops_per_img": result["analytic_flops_per_img"]},
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (and compilation)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="default: by GPU name")
    parser.add_argument(
        "--smoke", action="store_true", help="3 eager steps at one batch size (CPU: always)"
    )
    parser.add_argument(
        "--train-py",
        default="",
        metavar="B[,B...]",
        help="also time train.py (task=vit_cifar10 on CIFAR-like data) at these batch sizes "
        "against the loop (smoke: always, tiny)",
    )
    parser.add_argument("--train-steps", type=int, default=60, help="train.py steps per run")
    parser.add_argument(
        "--train-py-overrides",
        default="",
        metavar="'K=V ...'",
        help="more overrides for the train.py runs, e.g. 'module.channels_last=true'",
    )
    parser.add_argument(
        "--cpu-transforms",
        action="store_true",
        help="also time train.py with per-image transforms in the DataLoader workers",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = sweep(args)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    for run in result["runs"]:
        if run.get("oom"):
            line = "out of memory"
        else:
            line = f"{run['img_per_s']:9.1f} img/s"
            line += f"  {run['mfu']:.1%} MFU" if "mfu" in run else ""
        print(f"{result['model']}  bs {run['batch_size']:4d}  compile {run['compile']!s:5}  {line}")
    for run in result["train_py"]:
        ratio = f"  {run['over_loop']:.2f}x the loop" if "over_loop" in run else ""
        where = "device" if run["device_transforms"] else "workers"
        print(
            f"train.py  bs {run['batch_size']:4d}  transforms on {where:7}  "
            f"{run['img_per_s']:9.1f} img/s{ratio}"
        )
    if not result["cuda"]:
        print("no CUDA device: this was the CPU smoke path (tiny ViT); no GPU numbers measured")


if __name__ == "__main__":
    main()
