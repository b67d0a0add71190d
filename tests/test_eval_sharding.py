"""Eval-only jobs under DDP: each input processed once, one run folder, results independent of N.

Runs `train.py` as a user would, with `trainer=ddp_cpu` (2 gloo processes on the CPU), over an odd
number of inputs, so an even split is impossible and a padding sampler would duplicate one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hotcv_train.run import run
from tests.conftest import compose_config, train_py
from tests.tiny.inference_clipseg import IMAGES, PROMPTS, clipseg_overrides, stripe_masks

TASK = "clipseg_zeroshot"
assert len(IMAGES) % 2 == 1, "the sharding tests need an odd number of inputs"


def expected_outputs() -> list[str]:
    slugs = [p.lower().replace(" ", "_") for p in PROMPTS]
    suffixes = [f".mask_{s}.png" for s in slugs] + [".labels.png", ".overlay.png"]
    return sorted(f"predictions/{key}{suffix}" for key in IMAGES for suffix in suffixes)


def read_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_ranks(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(paths.log_dir, the run folder) of a 2-rank run; the folder comes from Hydra's default
    layout (`<log_dir>/<task>/<timestamp>`), so a rank that composed its own would show."""
    log_dir = tmp_path_factory.mktemp("ddp") / "logs"
    result = train_py(
        f"task={TASK}",
        "trainer=ddp_cpu",
        *clipseg_overrides(tiny_dir),
        f"paths.log_dir={log_dir}",
        cwd=log_dir.parent,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr, "the second rank never started"
    runs = [p.parent for p in log_dir.rglob(".hydra")]
    assert len(runs) == 1, f"expected one run folder under {log_dir}, got {runs}"
    assert list((log_dir / TASK).iterdir()) == runs
    return log_dir, runs[0]


def test_two_ranks_write_every_input_exactly_once(two_ranks: tuple[Path, Path]) -> None:
    _, run_dir = two_ranks
    ids = [record["id"] for record in read_lines(run_dir)]
    assert ids == sorted(IMAGES), "predictions.jsonl must list each input once, sorted"
    written = sorted(
        p.relative_to(run_dir).as_posix() for p in (run_dir / "predictions").rglob("*")
    )
    written = [p for p in written if (run_dir / p).is_file()]
    assert written == expected_outputs()  # no per-rank leftovers, nothing missing
    assert not list(run_dir.rglob("predictions.rank*.jsonl"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test/miou"] <= 1
    # counted on each rank (3 + 2 inputs), summed over both
    assert (metrics["test/samples"], metrics["test/skipped"]) == (len(IMAGES), 0)
    assert metrics["test/scored"] == len(IMAGES)


def test_records_do_not_depend_on_the_number_of_ranks(
    two_ranks: tuple[Path, Path], tiny_dir: Path, tmp_path: Path
) -> None:
    _, ddp_dir = two_ranks
    one_dir = tmp_path / "run"
    metrics = run(compose_config(one_dir, f"task={TASK}", *clipseg_overrides(tiny_dir)))

    assert read_lines(one_dir) == read_lines(ddp_dir)  # outputs and per-input metrics
    ddp_metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert ddp_metrics == pytest.approx(metrics, abs=1e-6)  # dataset IoU summed over ranks
    for output in expected_outputs():
        if output.endswith(".overlay.png"):
            continue  # a matplotlib drawing of the label map compared next
        one = np.asarray(Image.open(one_dir / output))
        assert np.array_equal(one, np.asarray(Image.open(ddp_dir / output))), output


def test_a_bad_mask_stops_every_rank_before_anything_is_written(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Each rank checks every mask before its first input, so a mask that one rank alone would
    reach stops both ranks at once (not one mid-run, after some outputs, while the other waits)."""
    masks = tmp_path / "masks"
    shutil.copytree(stripe_masks(tiny_dir / "clipseg_masks"), masks)
    height, width = IMAGES["zoo"]
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(masks / "zoo.png")
    overrides = [o for o in clipseg_overrides(tiny_dir) if not o.startswith("dataset.references")]
    result = train_py(
        f"task={TASK}",
        "trainer=ddp_cpu",
        *overrides,
        f"dataset.references={masks}",
        f"paths.log_dir={tmp_path / 'logs'}",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = f"error: dataset.references: mask {masks / 'zoo.png'} (input zoo) is a binary 0/255"
    assert line in result.stderr, result.stderr[-3000:]
    assert not list((tmp_path / "logs").rglob("predictions*")), "outputs written before the error"


def test_more_ranks_than_inputs_is_a_clear_error(tiny_dir: Path, tmp_path: Path) -> None:
    result = train_py(
        f"task={TASK}",
        "trainer=ddp_cpu",
        *clipseg_overrides(tiny_dir),
        "dataset.max_inputs=1",
        f"paths.log_dir={tmp_path}",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: trainer.devices: 1 sample(s) cannot be shared by 2 ranks" in result.stderr
