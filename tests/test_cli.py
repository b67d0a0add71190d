"""The command line as a user meets it: --help stays light, sweeps hand back their objective."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from tests.conftest import ROOT, newest_run, train_py
from tests.tiny.classification import classification_overrides

HEAVY = ("torch", "lightning", "transformers", "tensorflow", "diffusers", "av", "datasets")


def test_help_imports_no_heavy_library() -> None:
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(ROOT / 'train.py')!r}, '--help']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert "== Config ==" in result.stdout  # Hydra's help, with the composed default config
    assert "LOADED []" in result.stdout, result.stdout[-500:]


def test_optuna_sweep_runs_trials_and_reports_the_best(tiny_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "outputs"  # the default folder: runs start in tmp_path
    result = train_py(
        "-m",
        "hparams_search=optuna",
        "task=vit_cifar10",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *classification_overrides(tiny_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (log_dir / "vit_cifar10" / "multirun").iterdir()
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert 0.0 <= best.best_value <= 1.0  # val/acc of the best trial
    # dataset.batch_size is searched too, unless fixed on the command line as here.
    assert set(best.best_params) == {"module.optimizer.lr", "module.optimizer.weight_decay"}
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


def test_output_to_a_file_shows_progress_and_train_log_tells_the_whole_run(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Piped output (nohup, SLURM) gets plain progress lines, not a rich bar drawn only at the
    end; train.log holds each epoch's metrics, the final metrics, and the error of a failed run."""
    bar = [  # the default bar (the suite turns it off), a line for every batch
        "trainer.enable_progress_bar=true",
        "callbacks.progress_bar={_target_:hotcv_train.callbacks.ProgressBar,log_every_s:0}",
    ]
    tiny = classification_overrides(tiny_dir)
    result = train_py("task=vit_cifar10", *tiny, *bar, "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "epoch 1/2 1/" in output and "epoch 2/2 1/" in output, output[-3000:]  # mid-epoch
    assert "testing 1/" in output
    log = (newest_run(tmp_path, "vit_cifar10") / "train.log").read_text()
    epochs = [line for line in log.splitlines() if " steps in " in line]
    assert [line.split(" - ")[1].split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert "val/acc " in epochs[-1] and "train/loss " in epochs[-1]
    metrics = json.loads((newest_run(tmp_path, "vit_cifar10") / "metrics.json").read_text())
    assert re.search(rf"^  test/acc +{metrics['test/acc']:.4f}$", log, re.MULTILINE), log[-1000:]

    failed = train_py("task=vit_cifar10", *tiny, "dataset.path=/nonexistent", cwd=tmp_path)
    assert failed.returncode == 2
    log = (newest_run(tmp_path, "vit_cifar10") / "train.log").read_text()
    assert "error: dataset.path: no such file or folder: /nonexistent" in log, log[-2000:]
