"""GPU throughput: ViT-L/32-384 training images/s and model FLOPs utilisation, synthetic data.

The model is built from config with transformers (random weights, nothing downloaded) and trained
on random tensors already on the device, so only the GPU is measured: bf16 autocast, TF32
matmuls, fused AdamW, channels-last input (the patch embedding is a convolution), no host-device
sync inside the timed steps, `torch.compile` off and on, several batch sizes. MFU = achieved
model FLOP/s over the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s); FLOPs per image are counted
analytically (matmuls, x3 for forward + backward) and checked against
`torch.utils.flop_counter.FlopCounterMode` (which, on the CPU, does not count attention's SDPA).

Without CUDA this runs a tiny ViT on the CPU for a few steps: it exercises the code path only;
its images/s say nothing about a GPU.

    python benchmarks/gpu_throughput.py                           # on a GPU: the full sweep
    python benchmarks/gpu_throughput.py --batch-sizes 64,128 --compile on
    python benchmarks/gpu_throughput.py --smoke                   # CPU, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Options, Row, python_script

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
    return {
        "device": name,
        "cuda": cuda,
        "model": "ViT-L/32-384" if cuda else "tiny ViT (CPU smoke)",
        "config": config,
        "analytic_flops_per_img": analytic,
        "peak_tflops": peak,
        "runs": runs,
        "torch": torch.__version__,
    }


def rows(opts: Options) -> list[Row]:
    result = python_script("gpu_throughput.py", ["--smoke"] if opts.smoke else [], opts, "gpu")
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
                    / result["analytic_flops_per_img"]
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
    if not result["cuda"]:
        print("no CUDA device: this was the CPU smoke path (tiny ViT); no GPU numbers measured")


if __name__ == "__main__":
    main()
