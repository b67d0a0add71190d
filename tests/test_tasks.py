"""Every task config, end to end, on tiny models and tiny data: a new task is tested on day one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hotcv_train.run import run
from tests.conftest import CONF
from tests.tiny import all_tasks

TASK_NAMES = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_runs_end_to_end(task: str, make_config, tiny_dir: Path, tmp_path: Path) -> None:
    setups = all_tasks()
    assert task in setups, f"conf/task/{task}.yaml has no tiny setup: add one to tests/tiny/"
    cfg = make_config(f"task={task}", *setups[task](tiny_dir), "debug=limit")
    metrics = run(cfg)

    run_dir = tmp_path / "run"
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert written, "a run must report metrics"
    assert all(v == v for v in written.values()), f"NaN metric in {written}"
    assert (run_dir / ".hydra" / "resolved.yaml").exists()
    if cfg.stage == "fit":
        assert (run_dir / "checkpoints" / "last.ckpt").exists()
        assert any(k.startswith("test/") for k in written)
