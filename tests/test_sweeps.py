"""Sweeps that survive: a failing job, a killed sweep resumed, parallel jobs, submitit.

Every sweep here runs `python train.py -m` in `tmp_path` with the default folders
(`outputs/<task>/multirun/<timestamp>/`); only resuming names its sweep folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_OVERRIDES, train_py
from tests.tiny.classification import classification_overrides

TEST_SAMPLES = 17


def sweep_folder(tmp_path: Path, task: str = "vit_cifar10") -> Path:
    (sweep,) = (tmp_path / "outputs" / task / "multirun").iterdir()
    return sweep


def summary(sweep: Path) -> dict[str, dict[str, str]]:
    with open(sweep / "summary.csv") as f:
        return {row["job"]: row for row in csv.DictReader(f)}


def record(job_dir: Path) -> dict:
    return json.loads((job_dir / "job.json").read_text())


def snapshot(job_dir: Path) -> dict[str, tuple[int, bytes]]:
    """mtime and bytes of what a run writes (its .hydra/ is rewritten by Hydra on every launch)."""
    files = [job_dir / "metrics.json", *sorted((job_dir / "checkpoints").iterdir())]
    files += sorted((job_dir / "csv").iterdir())
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_failed_job_is_recorded_then_resume_runs_only_it(tiny_dir: Path, tmp_path: Path) -> None:
    tiny = classification_overrides(tiny_dir)
    good = next(o for o in tiny if o.startswith("dataset.path=")).partition("=")[2]
    late, copy = tmp_path / "late_data", tmp_path / "data_copy"
    shutil.copytree(good, copy)
    late.mkdir()  # its data comes later: a path that exists passes the sweep's first check
    args = ["-m", "task=vit_cifar10", *tiny, f"dataset.path={good},{late},{copy}"]

    first = train_py(*args, cwd=tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    sweep = sweep_folder(tmp_path)
    rows = summary(sweep)
    assert [rows[j]["status"] for j in "012"] == ["finished", "failed", "finished"]
    assert rows["1"]["reason"].startswith(f"dataset.path: no data that datasets can read in {late}")
    assert f"job 1 [failed] {sweep / '1'}: dataset.path: no data" in first.stderr
    assert f"hydra.sweep.dir={sweep}" in first.stderr  # the command that resumes it
    for job in "02":
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert float(rows[job]["objective"]) == pytest.approx(metrics["val/acc"])
        assert float(rows[job]["test/samples"]) == TEST_SAMPLES
    assert "best: job" in first.stdout and "python train.py " in first.stdout
    assert (sweep / "objective_vs_params.png").stat().st_size > 0
    before = {job: snapshot(sweep / job) for job in "02"}

    shutil.copytree(
        good, late, dirs_exist_ok=True
    )  # what was wrong is fixed; the same command resumes the sweep
    resumed = train_py(*args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {job: snapshot(sweep / job) for job in "02"} == before  # not run again
    for job in "02":
        assert "finished before with the same overrides" in (sweep / job / "train.log").read_text()
    rows = summary(sweep)
    assert [rows[j]["status"] for j in "012"] == ["finished"] * 3
    assert json.loads((sweep / "1" / "metrics.json").read_text())["test/samples"] == TEST_SAMPLES
    assert sum(row["best"] == "*" for row in rows.values()) == 1


def test_optuna_sweep_killed_then_resumed_reaches_n_trials(tiny_dir: Path, tmp_path: Path) -> None:
    """kill -9 during the third trial; the resumed study continues that trial from its last.ckpt."""
    args = [
        "-m",
        "hparams_search=optuna",
        "task=vit_cifar10",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
    ]
    command = [sys.executable, str(ROOT / "train.py"), "-m", *TEST_OVERRIDES, *args[1:]]
    sweep_root = tmp_path / "outputs" / "vit_cifar10" / "multirun"
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if list(sweep_root.glob("*/2/checkpoints/last.ckpt")):  # third trial, epoch 1
                    break
                time.sleep(0.1)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
    sweep = sweep_folder(tmp_path)
    earlier = {job: record(sweep / job) for job in "01"}
    assert [r["status"] for r in earlier.values()] == ["finished", "finished"]
    assert record(sweep / "2")["status"] == "running"  # what kill -9 leaves

    resumed = train_py(*args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (best,) = [line for line in resumed.stdout.splitlines() if line.startswith("best: job")]
    command = best.split(": ", 2)[2]  # one run of the best trial, not a new search
    assert "module.optimizer.lr=" in command and "hparams_search" not in command, best

    import optuna

    study = optuna.load_study(study_name="vit_cifar10", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # n_trials=3 ended, in all
    assert study.trials[3].params == study.trials[2].params  # the killed trial, run on
    for number in (0, 1):  # the trials before the kill are the study's history, untouched
        assert study.trials[number].value == pytest.approx(earlier[str(number)]["objective"])
        assert record(sweep / str(number)) == earlier[str(number)]
    assert record(sweep / "2")["status"] == "superseded"  # by job 3, left out of the summary
    continued = record(sweep / "3")
    assert continued["status"] == "finished"
    assert continued["ckpt_path"] == str(sweep / "2" / "checkpoints" / "last.ckpt")
    assert study.trials[3].value == pytest.approx(continued["objective"])
    rows = summary(sweep)
    assert sorted(rows) == ["0", "1", "3"]
    assert all(r["status"] == "finished" for r in rows.values())
    assert (sweep / "optimization_history.png").stat().st_size > 0


def test_ctrl_c_stops_the_sweep_and_says_how_to_resume_it(tiny_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C in a job: recorded as such, and the hint is the sweep's resume, not a single run's."""
    lrs = "module.optimizer.lr=1e-3,3e-4"
    args = [*TEST_OVERRIDES, "task=vit_cifar10", *classification_overrides(tiny_dir), lrs]
    command = [sys.executable, str(ROOT / "train.py"), "-m", *args, "trainer.max_epochs=1000"]
    sweep_root = tmp_path / "outputs" / "vit_cifar10" / "multirun"
    proc = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not list(sweep_root.glob("*/0/checkpoints/last.ckpt")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0, output[-3000:]
    sweep = sweep_folder(tmp_path)
    job = record(sweep / "0")
    assert (job["status"], job["reason"]) == ("interrupted", "Ctrl-C"), job
    assert (sweep / "0" / "checkpoints" / "interrupted.ckpt").is_file()
    assert not (sweep / "1").exists()  # the sweep stopped
    assert f"the same command with hydra.sweep.dir={sweep}" in output, output[-3000:]
    assert "this one continues from its checkpoint" in output
    assert "resume with ckpt_path" not in output  # a single run's hint would lose the sweep


def test_parallel_sweep_of_ddp_jobs(tiny_dir: Path, tmp_path: Path) -> None:
    """hydra/launcher=parallel: 2 jobs at once, each running 2 DDP ranks on its own CPU share."""
    result = train_py(
        "-m",
        "task=vit_cifar10",
        "trainer=ddp_cpu",
        "hydra/launcher=parallel",
        "module.optimizer.lr=1e-3,3e-4",
        *classification_overrides(tiny_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_folder(tmp_path)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1"]
    records = [record(sweep / job) for job in "01"]
    for r in records:
        assert r["status"] == "finished"
        assert r["metrics"]["test/samples"] == TEST_SAMPLES  # both ranks' shards, nothing twice
    resources = [r["resources"] for r in records]
    assert resources[0]["master_port"] != resources[1]["master_port"]
    assert {r["slot"] for r in resources} == {0, 1}
    if len(os.sched_getaffinity(0)) >= 2:
        assert not set(resources[0]["cores"]) & set(resources[1]["cores"])
    # The two jobs ran at the same time, not one after the other.
    spans = [(r["started"], r["ended"]) for r in records]
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1]


def test_submitit_local_launcher_runs_a_sweep(tiny_dir: Path, tmp_path: Path) -> None:
    result = train_py(
        "-m",
        "task=vit_cifar10",
        "hydra/launcher=submitit_local",
        "module.optimizer.lr=1e-3,3e-4",
        *classification_overrides(tiny_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_folder(tmp_path)
    rows = summary(sweep)
    assert [rows[j]["status"] for j in "01"] == ["finished", "finished"]
    assert (sweep / ".submitit").is_dir()  # submitit's own job files and logs
    for job in "01":
        assert json.loads((sweep / job / "metrics.json").read_text())["test/samples"] == 17


@pytest.mark.slow
def test_submitit_preempted_job_is_requeued_and_resumes(tiny_dir: Path, tmp_path: Path) -> None:
    """The signal SLURM sends before a time limit or preemption (USR2), through submitit's local
    executor: the job saves, submitit requeues it, and it continues from interrupted.ckpt."""
    args = [
        "-m",
        "task=vit_cifar10",
        "hydra/launcher=submitit_local",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=4",
        "module.optimizer.lr=1e-3",
    ]
    command = [sys.executable, str(ROOT / "train.py"), "-m", *TEST_OVERRIDES, *args[1:]]
    with open(tmp_path / "sweep.log", "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            ckpts = tmp_path / "outputs" / "vit_cifar10" / "multirun"
            while time.monotonic() < deadline and not list(ckpts.glob("*/0/checkpoints/last.ckpt")):
                time.sleep(0.1)
            job = record(sweep_folder(tmp_path) / "0")
            os.kill(job["pid"], signal.SIGUSR2)
            assert proc.wait(timeout=300) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
        finally:
            proc.kill()
    job_dir = sweep_folder(tmp_path) / "0"
    final = record(job_dir)
    assert final["status"] == "finished"
    assert final["pid"] != job["pid"]  # a new process: the requeued job
    assert final["ckpt_path"] == str(job_dir / "checkpoints" / "interrupted.ckpt")
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["test/samples"] == TEST_SAMPLES
