"""What every benchmark shares: the result row, `train.py` runs in subprocesses, medians.

Runs are cached per session, so the scripts that read the same run (start-up, overhead and memory
all read the quickstart runs) share it when `run.py` runs them together.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBE = "benchmarks.probes.Probe"


@dataclass
class Row:
    """One line of the table: a number, what it measures and the goal it is held to."""

    name: str
    value: float | None
    unit: str
    measures: str
    goal: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Options:
    """How hard to measure: `smoke` exercises every code path in a minute or two on 2 cores."""

    smoke: bool = False
    repeats: int = 3  # medians of this many runs where a run is cheap enough
    epochs: int = 8  # quickstart epochs per overhead run; the timed window is epochs 1..N-1
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hotcv-bench-")))
    verbose: bool = True

    def __post_init__(self) -> None:
        if self.smoke:
            self.repeats = 1

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class RunResult:
    """A finished subprocess: wall time, peak RSS of its largest process, and its probe's record."""

    args: list[str]
    wall_s: float
    peak_rss_mb: float
    returncode: int
    output_tail: str
    probe: dict[str, Any]
    log: Path


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def subprocess_env() -> dict[str, str]:
    """The caller's environment plus the repo root on PYTHONPATH (the probe lives in benchmarks/),
    and never a hub (everything here is built offline)."""
    env = dict(os.environ)
    paths = [str(ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    return env


def run_process(args: list[str], log_file: Path, timeout: float = 1800) -> RunResult:
    """Run `args`, output to `log_file`; the peak RSS comes from `wait4`'s rusage of this child
    (the largest of it and its waited-for descendants, e.g. DataLoader workers)."""
    env = subprocess_env()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        start = time.time()
        env["BENCH_T0"] = repr(start)  # the probe's zero: just before the process starts
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.time() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    tail = log_file.read_text(errors="replace")[-4000:]
    return RunResult(args, wall, usage.ru_maxrss / 1024, proc.returncode, tail, {}, log_file)


class Failed(RuntimeError):
    """A benchmark subprocess failed: its command and the end of its output."""


_cache: dict[tuple[str, ...], RunResult] = {}


def train_py(
    overrides: list[str],
    opts: Options,
    tag: str,
    repeat: int = 0,
    flags: tuple[str, ...] = (),
    parts: bool = False,
) -> RunResult:
    """`python [flags] train.py <overrides>` with the probe attached (`parts`: timing the pieces
    of each step too), cached per (overrides, repeat, flags, parts). Run folders go to the
    session's workdir; the probe's record is in `result.probe`, the run's output in `result.log`.
    """
    key = (*flags, *overrides, f"#{repeat}", f"parts={parts}")
    if key in _cache:
        return _cache[key]
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}_", dir=opts.workdir))
    probe = folder / "probe.json"
    args = [
        sys.executable,
        *flags,
        str(ROOT / "train.py"),
        *overrides,
        f"paths.log_dir={folder / 'outputs'}",
        f"+callbacks.probe={{_target_: {PROBE}, path: '{probe}', parts: {str(parts).lower()}}}",
    ]
    opts.log(f"python {' '.join(flags)} train.py {' '.join(overrides)}".replace("  ", " "))
    result = run_process(args, folder / "output.log")
    if result.returncode != 0:
        raise Failed(f"{' '.join(args)} exited {result.returncode}:\n{result.output_tail}")
    result.probe = json.loads(probe.read_text()) if probe.exists() else {}
    _cache[key] = result
    return result


def python_script(
    script: str, args: list[str], opts: Options, tag: str, repeat: int = 0
) -> dict[str, Any]:
    """`python benchmarks/<script> <args> --json <file>`: that JSON plus wall time and peak RSS,
    cached per (script, args, repeat)."""
    key = (script, *args, f"#{repeat}")
    if key in _cache:
        return _cache[key].probe
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}_", dir=opts.workdir))
    out = folder / "result.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)]
    opts.log(f"{script} {' '.join(args)}")
    result = run_process(cmd, folder / "output.log")
    if result.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {result.returncode}:\n{result.output_tail}")
    result.probe = {
        **json.loads(out.read_text()),
        "wall_s": result.wall_s,
        "peak_rss_mb": result.peak_rss_mb,
    }
    _cache[key] = result
    return result.probe


def standalone(rows: Any, description: str) -> None:
    """`python benchmarks/<concern>.py [--smoke]`: that concern's rows as JSON; run folders removed."""
    import argparse
    import shutil

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true")
    opts = Options(smoke=parser.parse_args().smoke)
    try:
        print(json.dumps([r.to_dict() for r in rows(opts)], indent=1))
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        pass
    return info
