"""Bad input and interruptions have defined outcomes: a NaN loss, a corrupt image, SIGTERM, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotcv_train.errors import NonFiniteLossError
from hotcv_train.run import run
from tests.conftest import ROOT, TEST_OVERRIDES
from tests.tiny.classification import classification_overrides, colour_images


def test_nan_loss_stops_with_a_clear_error(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
        "module.optimizer.lr=1e30",
        "module.scheduler=null",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        run(cfg)
    (problem,) = caught.value.problems
    assert problem.startswith("train/loss is nan at epoch 0")
    assert "lower module.optimizer.lr" in problem
    # No "interrupted" checkpoint of diverged weights.
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()


def test_corrupt_image_is_skipped_and_the_rest_is_used(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "folder"
    names = ["red", "green", "blue", "grey"]
    for split, n in (("train", 16), ("test", 8)):
        images, labels = colour_images(n, seed=0)
        for i, (image, label) in enumerate(zip(images, labels)):
            (folder / split / names[label]).mkdir(parents=True, exist_ok=True)
            image.save(folder / split / names[label] / f"{i}.png")
    (folder / "test" / "red" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), f"dataset.path={folder}"
    )
    with caplog.at_level("WARNING"):
        metrics = run(cfg)
    assert metrics["test/samples"] == 7  # 8 test images, one unreadable
    assert any("skipping test sample" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 1)], ids=["sigterm", "ctrl-c"]
)
def test_interrupted_fit_saves_a_resumable_checkpoint(
    sig: signal.Signals, code: int, tiny_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *TEST_OVERRIDES,
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=1000",
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={tmp_path}",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 180
        while not (run_dir / "checkpoints" / "last.ckpt").exists():  # an epoch has finished
            assert process.poll() is None and time.time() < deadline, process.stdout.read()
            time.sleep(0.2)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, output[-3000:]
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert interrupted.exists(), output[-3000:]
    assert f"resume with ckpt_path={interrupted}" in output
    assert not (run_dir / "metrics.json").exists()  # no results claimed for a cut-short run

    from tests.conftest import compose_config

    cfg = compose_config(
        tmp_path / "resumed",
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=2",
        f"ckpt_path={interrupted}",
    )
    metrics = run(cfg)
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["test/samples"] == 17
    assert "test/acc" in metrics
