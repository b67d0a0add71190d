"""Eval-only throughput: inputs/s of each eval-only task on its tiny test model, batch 1 vs N.

Each run is `python train.py task=<task> stage=predict trainer=cpu dataset.path=<images>
dataset.batch_size=<B>` on the task's tiny model from `tests/tiny` (built once per session in a
subprocess, so TensorFlow and diffusers never load into the benchmark's own process), over a
folder of 96x128 images. Inputs/s is the number of inputs over the predict window the probe
callback timed (first batch to the merged predictions.jsonl: model loading and start-up are
outside it, per-input outputs such as PNGs and overlays inside). The runs' peak RSS is reported
by memory.py.

    python benchmarks/eval_throughput.py [--smoke]
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    ROOT,
    Failed,
    Options,
    Row,
    RunResult,
    standalone,
    subprocess_env,
    train_py,
)

TASKS = ["clipseg_zeroshot", "sd_image_variations", "maxim_denoise"]
NEEDS = {"maxim_denoise": "tensorflow", "sd_image_variations": "diffusers"}
# Overrides of the tiny setups that point at their own small inputs; ours replace them.
REPLACED = ("dataset.path=", "dataset.references=", "dataset.batch_size=")


def sizes(opts: Options) -> tuple[int, int]:
    """(number of inputs, N): the batch sizes compared are 1 and N."""
    return (8, 4) if opts.smoke else (32, 8)


def make_inputs(folder: Path, n: int) -> Path:
    """`n` 96x128 RGB PNGs of smooth colour gradients plus noise."""
    if folder.is_dir():
        return folder
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:96, 0:128]
    for i in range(n):
        pixels = np.stack([x * 2, y * 2.6, np.full_like(x, 25 * (i % 10))], -1)
        pixels = pixels + rng.integers(0, 40, pixels.shape)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"input{i:03d}.png")
    return folder


_setups: dict[str, list[str]] = {}


def tiny_setups(opts: Options) -> dict[str, list[str]]:
    """Each task's tiny-model overrides from `tests.tiny`, built in a subprocess once."""
    if not _setups:
        root = opts.workdir / "tiny"
        code = (
            "import json, sys\n"
            "from tests.tiny import all_tasks\n"
            "tasks = all_tasks()\n"
            f"print(json.dumps({{t: tasks[t](__import__('pathlib').Path({str(root)!r})) "
            f"for t in sys.argv[1:]}}))\n"
        )
        wanted = [t for t in TASKS if available(t)]
        opts.log(f"building tiny models for {', '.join(wanted)}")
        done = subprocess.run(
            [sys.executable, "-c", code, *wanted],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise Failed(f"building the tiny models failed:\n{done.stderr[-3000:]}")
        _setups.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return _setups


def available(task: str) -> bool:
    need = NEEDS.get(task)
    return need is None or importlib.util.find_spec(need) is not None


def eval_run(opts: Options, task: str, batch_size: int) -> RunResult:
    """One (cached) predict run of `task` at `batch_size` over the session's inputs."""
    n, _ = sizes(opts)
    inputs = make_inputs(opts.workdir / f"inputs_{n}", n)
    tiny = [o for o in tiny_setups(opts)[task] if not o.startswith(REPLACED)]
    overrides = [
        f"task={task}",
        "stage=predict",
        "trainer=cpu",
        *tiny,
        f"dataset.path={inputs}",
        f"dataset.batch_size={batch_size}",
    ]
    return train_py(overrides, opts, f"{task}_bs{batch_size}")


def inputs_per_second(result: RunResult) -> tuple[float, dict[str, Any]]:
    window = result.probe["predict"]
    seconds = window["end_s"] - window["start_s"]
    return window["inputs"] / seconds, {
        "inputs": window["inputs"],
        "predict_s": round(seconds, 3),
        "wall_s": round(result.wall_s, 2),
        "start_to_predict_s": round(window["start_s"], 2),
    }


def rows(opts: Options) -> list[Row]:
    _, big = sizes(opts)
    out = []
    for task in TASKS:
        if not available(task):
            out.append(
                Row(f"eval.{task}.bs1", None, "inputs/s", f"skipped: {NEEDS[task]} not installed")
            )
            continue
        for batch_size in (1, big):
            rate, details = inputs_per_second(eval_run(opts, task, batch_size))
            out.append(
                Row(
                    f"eval.{task}.bs{batch_size}",
                    rate,
                    "inputs/s",
                    f"{task} stage=predict, tiny model, CPU, dataset.batch_size={batch_size}: "
                    "inputs / predict window (outputs written)",
                    details=details,
                )
            )
    return out


def main() -> None:
    standalone(rows, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
