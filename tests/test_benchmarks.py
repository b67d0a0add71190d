"""The benchmark suite runs (`benchmarks/run.py --smoke`), and the arithmetic behind its rows holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_throughput import TINY, counted_train_flops, vit_train_flops
from benchmarks.memory import growth_per_epoch
from benchmarks.overhead import in_epoch_steps, model_normalised, window_slope
from benchmarks.probes import count_inputs
from benchmarks.startup import import_costs
from tests.conftest import ROOT

# Every row the smoke mode writes on a machine without a GPU.
SMOKE_ROWS = [
    "overhead.ratio",
    "overhead.train_py_step",
    "overhead.plain_step",
    "overhead.step_ratio",
    "overhead.epoch_end",
    "overhead.normalised_ratio",
    *(
        f"overhead.part.{part}"
        for part in (
            "fetch",
            "transfer_and_batch_hooks",
            "forward",
            "loss_metrics_logging",
            "of_which_self_log",
            "backward",
            "optimizer",
            "loop_and_callbacks",
            "step",
        )
    ),
    "startup.first_step",
    "startup.import_floor",
    "pipeline.classification_384",
    "pipeline.classification_384.cores_for_3000",
    "pipeline.depth_480x640",
    "pipeline.depth_480x640.cores_for_3000",
    *(
        f"eval.{task}.bs{bs}"
        for task in ("clipseg_zeroshot", "sd_image_variations", "maxim_denoise")
        for bs in (1, 4)
    ),
    "memory.quickstart.peak_rss",
    "memory.quickstart.rss_last_over_first_epoch",
    "memory.eval.clipseg_zeroshot.peak_rss",
    "memory.eval.sd_image_variations.peak_rss",
    "memory.eval.maxim_denoise.peak_rss",
    "gpu.cpu_smoke",
]


def check_results(path: Path, expected: list[str]) -> dict:
    """`path` holds every `expected` row, each with a positive number; returns the JSON."""
    results = json.loads(path.read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert not [n for n in expected if n not in rows], f"missing rows; have {sorted(rows)}"
    bad = {n: r["value"] for n, r in rows.items() if not (r["value"] or 0) > 0}
    assert not bad, f"rows without a positive number: {bad}"
    return results


@pytest.mark.slow
def test_smoke_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = check_results(out, SMOKE_ROWS)
    assert results["smoke"] and results["machine"]["cpu_count"]
    gpu = next(r for r in results["rows"] if r["name"] == "gpu.cpu_smoke")
    assert gpu["details"]["train_py"][0]["img_per_s"] > 0  # the train.py leg ran too
    assert "| overhead.ratio |" in done.stdout  # the table is printed
    for row in results["rows"]:  # each eval run counted every input once, whatever its batch
        if row["name"].startswith("eval."):
            assert row["details"]["inputs"] == 8, row


def test_window_slope_spans_whole_epochs() -> None:
    # 3 steps per epoch, 1 s apart, plus 5 s of validation/checkpoints at each epoch end
    steps, t = [], 0.0
    for epoch in range(4):
        for _ in range(3):
            steps.append([t, epoch])
            t += 1.0
        t += 5.0
    per_step, n = window_slope(steps)
    assert n == 6  # first step of epoch 1 to first step of epoch 3
    assert per_step == pytest.approx((6 * 1.0 + 2 * 5.0) / 6)
    with pytest.raises(ValueError):
        window_slope(steps[:6])  # two epochs: no window
    # the same steps split: 1 s between two steps of an epoch, 5 s more at each epoch's end
    # (epoch 0 left out: the slow first steps of a run)
    for later in steps[5:]:  # the second step of epoch 1 took 30 s: it moves neither median
        later[0] += 30.0
    assert in_epoch_steps(steps) == pytest.approx((1.0, 5.0))


def test_predict_batches_are_counted_in_inputs() -> None:
    assert count_inputs({"samples": [{}, {}, {}], "skipped": 1}) == 4  # eval-only tasks
    assert count_inputs({"pixel_values": torch.zeros(5, 3, 8, 8), "id": list("abcde")}) == 5
    assert count_inputs([torch.zeros(2), torch.zeros(2)]) == 2


def test_the_normalised_ratio_cancels_a_machine_running_slower() -> None:
    plain = {"step": 17.0, "forward": 6.0, "backward": 8.0}
    slowed = {k: 1.3 * v for k, v in plain.items()}  # the same loop, a third slower
    assert model_normalised(slowed) / model_normalised(plain) == pytest.approx(1.0)
    framework = {**plain, "step": 20.5}  # 3.5 ms more per step around the same model
    assert model_normalised(framework) / model_normalised(plain) == pytest.approx(20.5 / 17.0)


def test_analytic_vit_flops_match_the_flop_counter() -> None:
    """The FLOPs behind the GPU benchmark's MFU: exact where every matmul is visible (eager
    attention; FlopCounterMode does not count the CPU's fused attention)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(**TINY, num_labels=10)
    config._attn_implementation = "eager"
    model = ViTForImageClassification(config)
    x, y = torch.randn(2, 3, TINY["image_size"], TINY["image_size"]), torch.tensor([1, 2])
    assert counted_train_flops(model, x, y) == pytest.approx(vit_train_flops(TINY))


def test_import_costs_sum_self_time_per_package() -> None:
    log = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:      2000 |       2000 |     torch._C\n"
        "import time:    500000 |     502000 |   torch\n"
        "import time:    100000 |     100000 | hydra\n"
    )
    assert import_costs(log) == [("torch", 0.502), ("hydra", 0.1), ("(all)", 0.602)]


def test_memory_growth_ignores_the_first_epoch() -> None:
    assert growth_per_epoch([100.0, 150.0, 150.0, 150.0]) == pytest.approx(0.0)
    assert growth_per_epoch([100.0, 110.0, 120.0, 130.0]) == pytest.approx(10.0)
