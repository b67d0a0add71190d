"""The README is a test: every `python train.py ...` and `make ...` line in its code blocks runs.

Each line runs as written, in one folder shared by the whole module (so a line may use a run an
earlier line made), with overrides appended that make it tiny: the task's tiny model and data
from `tests/tiny`, the CPU, one short epoch. The run and sweep folders are the defaults.
Placeholders a user fills in are filled from that folder: `<run>` is the newest run of the task,
`<epoch>` the epoch of its best checkpoint. A transcript (`$ command` followed by output) that
shows `error:` lines must end with exit code 2 and print exactly those lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CONF, ROOT, compose_config
from tests.tiny import all_experiments, all_tasks

README = ROOT / "README.md"

# What makes any line small: CPU, one short epoch, no worker processes. The default callbacks
# stay on, progress bar included: it is what users run (its DDP crash hid behind it being off).
TINY = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.limit_predict_batches=2",
    "trainer.num_sanity_val_steps=0",
    "callbacks.model_summary=null",
    "dataset.num_workers=0",
]
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path"}
# `make bench`: one cheap concern in smoke mode (tests/test_benchmarks.py runs the whole smoke).
BENCH_ARGS = ["--smoke", "--only", "gpu_throughput"]
# Sweeps: fewer trials than a real search.
TINY_SWEEP = ["hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"]
# `make` targets that cannot run inside the test suite, and why (each is still checked).
NOT_RUN = {
    "make test": "is the test suite itself: .ci/run runs it (checked below)",
    "make test-fast": "is the test suite minus slow tests: checked with make -n",
}


@dataclass
class Command:
    line: str  # as written in the README
    errors: list[str] = field(default_factory=list)  # `error:` lines its transcript shows

    @property
    def id(self) -> str:
        return re.sub(r"\s+", " ", self.line)[:90]


def readme_commands(text: str) -> list[Command]:
    """`python train.py` / `make` lines of the README's fenced blocks, with shown errors, and
    the `python train.py ...` spans of its prose and tables."""
    commands: list[Command] = []
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`(python train\.py[^`]*)`", prose):
        commands.append(Command(span.strip()))
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        current: Command | None = None
        for raw in block.splitlines():
            line = raw.strip()
            transcript = line.startswith("$ ")
            body = line[2:] if transcript else line
            body = re.sub(r"\s+#.*$", "", body).strip()  # a trailing comment
            if body.startswith(("python train.py", "make ")) or body == "make":
                current = Command(body)
                commands.append(current)
            elif current is not None and line.startswith("error: "):
                current.errors.append(line)
            elif transcript:
                current = None
    return commands


COMMANDS = list({c.line: c for c in readme_commands(README.read_text())}.values())


def test_the_readme_has_commands_to_run() -> None:
    lines = [c.line for c in COMMANDS]
    assert "make quickstart" in lines and "make test" in lines
    assert sum(line.startswith("python train.py") for line in lines) >= 10


def tiny_overrides(args: list[str], tiny_dir: Path) -> list[str]:
    """The overrides that make `args` tiny: the task's (or experiment's) tiny setup, then TINY."""
    choices = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    extra: list[str] = []
    if "experiment" in choices:
        experiments = all_experiments()
        name = choices["experiment"]
        assert name in experiments, f"experiment={name}: add it to EXPERIMENTS in tests/tiny/"
        extra += experiments[name](tiny_dir)
    else:
        task = choices.get("task", "vit_cifar10")  # config.yaml's default task
        extra += all_tasks()[task](tiny_dir)
    if "hparams_search" in choices:
        extra += TINY_SWEEP
    return [*extra, *TINY]


def fill_placeholders(args: list[str], cwd: Path) -> list[str]:
    """`<run>`: the newest run (under `cwd`) that has the file named; `<epoch>`: its best epoch."""
    filled = []
    for arg in args:
        if "<run>" in arg:
            key, value = arg.split("=", 1)
            runs_dir, rest = value.split("<run>", 1)
            pattern = rest.lstrip("/").replace("<epoch>", "*")
            found = sorted(p for p in (cwd / runs_dir).glob(f"*/{pattern}"))
            assert found, f"{arg}: no earlier README line made {pattern} under {runs_dir}"
            arg = f"{key}={found[-1].relative_to(cwd)}"
        filled.append(arg)
    return filled


def flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (with their values) before the overrides, where its argument parser wants
    them: `task=x --cfg job` as a user types it, then appended overrides, would not parse."""
    flags, overrides, rest = [], [], iter(args)
    for arg in rest:
        if arg in FLAGS_WITH_VALUE:
            flags += [arg, next(rest)]
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    return flags + overrides


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every README line, as one user's session would be."""
    return tmp_path_factory.mktemp("user")


def run_line(command: Command, tiny_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command.line)[2:]  # after `python train.py`
    if not command.errors:  # a transcript of errors fails before anything runs: as written
        args = fill_placeholders(args, cwd) + tiny_overrides(args, tiny_dir)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags_first(args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c.line.startswith("python")], ids=lambda c: c.id
)
def test_readme_train_line_runs(command: Command, tiny_dir: Path, workdir: Path) -> None:
    before = set(workdir.rglob("metrics.json"))
    result = run_line(command, tiny_dir, workdir)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    if command.errors:
        assert result.returncode == 2, output
        shown = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert shown == command.errors
        assert "Traceback" not in result.stderr
        return
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
    if "--cfg" in command.line or "--help" in command.line:
        assert "_target_" in result.stdout
    else:  # a run (or each job of a sweep) finished and wrote its metrics
        assert set(workdir.rglob("metrics.json")) - before, output


@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS if c.line.startswith("make") and c.line not in NOT_RUN],
    ids=lambda c: c.id,
)
def test_readme_make_line_runs(command: Command, tmp_path: Path) -> None:
    target = shlex.split(command.line)[1]
    outputs = ROOT / "outputs" / "quickstart"
    before = set(outputs.iterdir()) if outputs.exists() else set()
    extra = [f"ARGS={' '.join(TINY)}"] if target == "quickstart" else []
    if target == "bench":  # the whole smoke run is tests/test_benchmarks.py's; here: the wiring
        extra = [f"ARGS={' '.join(BENCH_ARGS)} --out {tmp_path / 'results.json'}"]
    result = subprocess.run(
        ["make", "-C", str(ROOT), target, *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if target == "quickstart":
        made = set(outputs.iterdir()) - before
        assert len(made) == 1 and (made.pop() / "metrics.json").is_file()
        for run in set(outputs.iterdir()) - before:
            shutil.rmtree(run)
    if target == "bench":
        results = json.loads((tmp_path / "results.json").read_text())
        rows = results["rows"]
        assert rows and all(r["name"].startswith("gpu.") and r["value"] > 0 for r in rows), rows


def test_readme_make_lines_that_are_the_suite_are_checked_otherwise() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M), ".ci/run must run the README's make test"
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "test-fast"], capture_output=True, text=True
    )
    assert dry.returncode == 0 and "pytest -m" in dry.stdout


@pytest.mark.parametrize("task", sorted(p.stem for p in (CONF / "task").glob("*.yaml")))
def test_every_task_takes_its_model_from_module_model(task: str, tmp_path: Path) -> None:
    """What `python train.py task=<task> --cfg job` shows: the model under module.model."""
    cfg = compose_config(tmp_path, f"task={task}")
    assert cfg.module.model._target_ == "hotcv_train.models.ModelSpec"
    assert cfg.module.model.name_or_path, f"task={task} names no default model"
