"""Sweeps that survive: a record per job, resume, a summary, and parallel jobs that share a machine.

Every job of a multirun (`python train.py -m ...`) runs through `run_job`, which keeps
`<job>/job.json` up to date: `running` when it starts, then `finished` (final metrics, objective)
or `failed` (a one-line reason); a job killed mid-way stays `running` (kill -9) or becomes
`interrupted` (Ctrl-C, SIGTERM, preemption). A failed job does not end the sweep: its sweeper gets
a `JobFailed` value (Optuna marks the trial failed) and the next job starts.

Re-running the same command with `hydra.sweep.dir=<sweep folder>` resumes: a job whose folder
holds a `finished` record with the same overrides is not run again (its metrics are reused), a
`running`/`interrupted` one continues from its own newest `last.ckpt`/`interrupted.ckpt`, a
`failed` one runs afresh. Records and `summary.csv` are replaced atomically, so kill -9 at any
moment loses at most the running jobs' unfinished epochs.

`SweepSummary` is a Hydra callback (conf/hydra/default.yaml): as each job ends it rewrites
`summary.csv`; when the sweep ends it plots the objective against each swept parameter, prints
the table with the best job and the command that reproduces it, tags the best W&B run, lists the
failed jobs and exits with code 1 if there are any.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import math
import os
import shlex
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from hotcv_train.errors import UserError
from hotcv_train.redaction import redact

log = logging.getLogger("hotcv_train.sweeps")

RECORD = "job.json"
SUMMARY = "summary.csv"
UNFINISHED = ("running", "interrupted")  # continued from their checkpoints on resume
SUPERSEDED = "superseded"  # run again in another job folder (Optuna); left out of the summary


class JobFailed:
    """What a failed job returns to its sweeper: not a number, so Optuna records a failed trial."""

    def __init__(self, reason: str):
        self.reason = reason

    def __float__(self) -> float:
        raise ValueError(self.reason)

    def __repr__(self) -> str:
        return f"job failed: {self.reason}"

    __str__ = __repr__


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def global_rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


# --------------------------------------------------------------------------------------- records


def read_record(job_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((job_dir / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(job_dir: Path, record: dict[str, Any]) -> None:
    """Replace `job.json` in one step: a kill mid-write leaves the previous record."""
    atomic_write(job_dir / RECORD, json.dumps(record, indent=2, sort_keys=True))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def one_line(error: BaseException) -> str:
    """The reason a job failed, on one line: a UserError's problems, else type and first line."""
    if isinstance(error, UserError):
        return "; ".join(error.problems)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:300]


def checkpoint_dirs(cfg: DictConfig, job_dir: Path) -> list[Path]:
    dirs = {job_dir / "checkpoints"}
    for name in ("model_checkpoint", "last_checkpoint", "save_on_interrupt"):
        if (found := OmegaConf.select(cfg, f"callbacks.{name}.dirpath", default=None)) is not None:
            dirs.add(Path(found))
    return sorted(dirs)


def newest_checkpoint(cfg: DictConfig, job_dir: Path) -> Path | None:
    """The job's own `interrupted.ckpt` or `last.ckpt`, whichever was written last."""
    found = [
        d / name
        for d in checkpoint_dirs(cfg, job_dir)
        for name in ("interrupted.ckpt", "last.ckpt")
        if (d / name).is_file()
    ]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def sibling_records(sweep_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for record_path in sorted(sweep_dir.glob(f"*/{RECORD}")):
        if (record := read_record(record_path.parent)) is not None:
            yield record_path.parent, record


# ------------------------------------------------------------------------------------- one job


def run_job(cfg: DictConfig, run: Callable[[DictConfig], dict[str, float]]) -> Any:
    """Run one multirun job with its record: skip it, resume it, or run it; never raise on failure.

    Returns the objective (`cfg.optimized_metric`) for the sweeper, or `JobFailed`.
    Ctrl-C / SIGTERM still stop the sweep (recorded as `interrupted`).
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweep_dir = Path(hydra_cfg.sweep.dir)
    overrides = redact(list(hydra_cfg.overrides.task))  # job.json and summary.csv keep no secret
    job = job_dir.name

    prior = read_record(job_dir)
    same = prior is not None and prior.get("overrides") == overrides
    if same and prior["status"] == "finished":
        log.info("job %s: finished before with the same overrides; reusing its metrics", job)
        return prior["objective"]
    if global_rank() != 0:  # under srun every rank runs the job; rank 0 decides and records
        return follow_rank_zero(cfg, run, job_dir)

    resume_from, wall_before = None, 0.0
    if same and prior["status"] in UNFINISHED:
        resume_from, wall_before = newest_checkpoint(cfg, job_dir), prior.get("wall_time_s", 0.0)
    elif prior is None:  # an Optuna trial queued again with the params of one killed or failed
        for other_dir, other in sibling_records(sweep_dir):
            if other.get("overrides") == overrides and other["status"] in (*UNFINISHED, "failed"):
                if other["status"] in UNFINISHED:
                    resume_from = newest_checkpoint(cfg, other_dir)
                    wall_before = other.get("wall_time_s", 0.0)
                write_record(other_dir, {**other, "status": SUPERSEDED, "superseded_by": job})
                break
    else:  # failed before, or another job's folder: start clean, not from its weights
        for d in checkpoint_dirs(cfg, job_dir):
            if d.is_dir():
                shutil.rmtree(d)
        log.info("job %s: was %s; running it again from scratch", job, prior["status"])

    if resume_from is not None and cfg.stage == "fit" and cfg.ckpt_path is None:
        cfg.ckpt_path = str(resume_from)
        log.info("job %s: continuing from %s", job, resume_from)

    record: dict[str, Any] = {
        "job": job,
        "status": "running",
        "overrides": overrides,
        "folder": str(job_dir),
        "objective_key": cfg.optimized_metric,
        "started": datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "attempt": attempt_id(),
        "ckpt_path": cfg.ckpt_path,
        "wall_time_s": wall_before,
    }
    tic = time.monotonic()

    def finish(status: str, **fields: Any) -> None:
        record.update(status=status, wall_time_s=round(wall_before + time.monotonic() - tic, 1))
        record.update(ended=datetime.now().isoformat(timespec="seconds"), **fields)
        write_record(job_dir, record)

    try:
        with job_resources(cfg, sweep_dir, hydra_cfg.launcher) as resources:
            record["resources"] = resources
            write_record(job_dir, record)
            metrics = run(cfg)
    except (KeyboardInterrupt, SystemExit) as e:
        finish("interrupted", reason=stopped_by(e))
        then = "continues from its checkpoint" if newest_checkpoint(cfg, job_dir) else "runs again"
        print(
            f"[sweep] job {job} stopped by {stopped_by(e)}. Resume the sweep: the same command "
            f"with hydra.sweep.dir={sweep_dir} (finished jobs are reused, this one {then})",
            file=sys.stderr,
            flush=True,
        )
        raise
    except Exception as e:
        reason = one_line(e)
        if not isinstance(e, UserError):
            log.error("job %s failed:\n%s", job, traceback.format_exc())
        print(f"[sweep] job {job} failed: {reason}", file=sys.stderr, flush=True)
        finish("failed", reason=reason)
        return JobFailed(reason)

    objective = metrics.get(cfg.optimized_metric)
    if objective is None or not math.isfinite(objective):
        known = ", ".join(sorted(metrics))
        reason = f"optimized_metric: {cfg.optimized_metric} is {objective}; final metrics: {known}"
        finish("failed", reason=reason, metrics=metrics)
        return JobFailed(reason)
    finish("finished", metrics=metrics, objective=objective)
    return objective


def stopped_by(error: BaseException) -> str:
    """Ctrl-C, SIGTERM or an exit code: Lightning turns a Ctrl-C into `sys.exit(1)`."""
    if isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
        return "Ctrl-C"
    if type(error).__name__ == "SIGTERMException":  # Lightning's, on SIGTERM
        return "SIGTERM"
    return f"exit code {getattr(error, 'code', None)}"


def attempt_id() -> str:
    """The same in every rank of one (re)start of a job: SLURM's job id and restart count."""
    if "SLURM_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    return f"{socket.gethostname()}.{os.getpid()}"


def follow_rank_zero(
    cfg: DictConfig, run: Callable[[DictConfig], dict[str, float]], job_dir: Path
) -> Any:
    """A rank > 0 that srun started: run what rank 0 decided for this attempt (the checkpoint to
    continue from), so every rank loads the same weights; rank 0 alone writes the record."""
    attempt, deadline = attempt_id(), time.monotonic() + 600
    while (record := read_record(job_dir)) is None or record.get("attempt") != attempt:
        if time.monotonic() > deadline:
            raise UserError(f"{job_dir / RECORD}: rank 0 did not start this job in 10 minutes")
        time.sleep(0.5)
    cfg.ckpt_path = record["ckpt_path"]
    try:
        metrics = run(cfg)
    except Exception as e:
        return JobFailed(one_line(e))
    return metrics.get(cfg.optimized_metric)


# ------------------------------------------------------------------------------ parallel jobs

_SLOT: tuple[int, Any] | None = None  # (slot, held lock file): a worker keeps its slot for life
_ORIGINAL: dict[str, Any] = {}


@contextlib.contextmanager
def job_resources(cfg: DictConfig, sweep_dir: Path, launcher: DictConfig) -> Iterator[dict]:
    """Pin a job that runs beside others to its own GPUs / CPU cores; give its DDP its own port.

    Under a parallel launcher (`hydra.launcher.n_jobs` > 1: joblib) each worker process takes a
    slot k < n_jobs for its lifetime (a lock file in `<sweep>/.slots/`) and, with
    `trainer.devices=d`, sees GPUs k*d .. k*d+d-1 (CUDA_VISIBLE_DEVICES, set before CUDA starts);
    on the CPU it gets cores len(cores)/n_jobs * k ... and as many threads, split between its DDP
    ranks. Every job not under srun/torchrun gets a free MASTER_PORT of its own.
    """
    from hotcv_train.launch import ranks_run_the_script

    saved = dict(os.environ)
    resources: dict[str, Any] = {}
    try:
        n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
        if n_jobs is not None and n_jobs != 1:
            resources.update(pin_to_slot(cfg, sweep_dir, n_jobs))
        if "MASTER_PORT" not in os.environ and "SLURM_NTASKS" not in os.environ:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
            resources["master_port"] = int(os.environ["MASTER_PORT"])
        with ranks_run_the_script():
            yield resources
    finally:
        os.environ.clear()
        os.environ.update(saved)


def acquire_slot(sweep_dir: Path, n: int) -> int:
    global _SLOT
    if _SLOT is None:
        slots = sweep_dir / ".slots"
        slots.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 600
        while _SLOT is None:
            for k in range(n):
                handle = open(slots / f"{k}.lock", "w")  # noqa: SIM115 (held for the process's life)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    continue
                _SLOT = (k, handle)
                break
            else:
                if time.monotonic() > deadline:
                    raise UserError(f"hydra.launcher.n_jobs: all {n} slots in {slots} stay taken")
                time.sleep(0.5)
    return _SLOT[0]


def pin_to_slot(cfg: DictConfig, sweep_dir: Path, n_jobs: int) -> dict[str, Any]:
    import torch

    if not _ORIGINAL:  # what this process could use before any job narrowed it
        _ORIGINAL["cores"] = sorted(os.sched_getaffinity(0))
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = torch.cuda.device_count()  # NVML: does not start CUDA
        _ORIGINAL["gpus"] = env.split(",")[:count] if env else [str(i) for i in range(count)]
    cores, gpus = _ORIGINAL["cores"], _ORIGINAL["gpus"]
    n = n_jobs if n_jobs > 0 else len(cores)
    slot = acquire_slot(sweep_dir, n)
    devices = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1
    pinned: dict[str, Any] = {"slot": slot}

    if gpus and str(cfg.trainer.accelerator) in ("auto", "gpu", "cuda"):
        mine = gpus[slot * devices : (slot + 1) * devices]
        if len(mine) < devices:
            raise UserError(
                f"hydra.launcher.n_jobs={n} jobs x trainer.devices={devices} need "
                f"{n * devices} GPUs; {len(gpus)} visible: lower hydra.launcher.n_jobs"
            )
        if torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != ",".join(mine):
            log.warning("CUDA already started in this worker; cannot move it to GPUs %s", mine)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
        pinned["gpus"] = mine

    share = max(1, len(cores) // n)
    mine_cores = cores[slot * share : (slot + 1) * share] if len(cores) >= n else cores
    os.sched_setaffinity(0, mine_cores)
    ranks = devices if str(cfg.trainer.accelerator) == "cpu" else 1
    threads = max(1, len(mine_cores) // ranks)
    if "OMP_NUM_THREADS" in os.environ:
        threads = min(threads, int(os.environ["OMP_NUM_THREADS"]))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # DDP ranks this job starts inherit it
    torch.set_num_threads(threads)
    pinned.update(cores=mine_cores, threads=threads)
    return pinned


# ------------------------------------------------------------------------------------ summary


class SweepSummary(Callback):
    """Hydra callback: `summary.csv` as jobs end; table, plots, W&B tag and exit code at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hotcv_train.cli import release_stderr, unknown_sweep_key

        conf = next(
            Path(s.path) for s in config.hydra.runtime.config_sources if s.provider == "main"
        )
        if error := unknown_sweep_key(list(config.hydra.overrides.task), config, conf):
            release_stderr(error + "\n")
            raise SystemExit(2)
        release_stderr()  # the sweep composed: its own output (Optuna's, a launcher's) goes out
        if problems := check_grid(config):
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr, flush=True)
            raise SystemExit(2)
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = [r for _, r in sibling_records(sweep_dir)]
        if rows:
            done = sum(r["status"] == "finished" for r in rows)
            print(
                f"[sweep] resuming {sweep_dir}: {done} finished job(s) are reused, "
                f"{len(rows) - done} unfinished or failed one(s) run again"
            )

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN and global_rank() == 0:
            write_summary(Path(config.hydra.sweep.dir), str(config.optimized_mode))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        mode = str(config.optimized_mode)
        rows = write_summary(sweep_dir, mode)
        if not rows:
            return
        swept = swept_params(rows)
        best = best_row(rows, mode)
        optuna = "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
        plotted = plot_summary(sweep_dir, rows, swept, mode, optuna)
        print(format_table(sweep_dir, rows, swept, best, config.optimized_metric, mode))
        for path in plotted:
            print(f"plot: {path}")
        if best is not None and OmegaConf.select(config, "logger.wandb", default=None):
            tag_best_wandb(Path(best["folder"]), config.logger.wandb)
        failed = [r for r in rows if r["status"] != "finished"]
        if failed:
            print(f"\n{len(failed)} job(s) did not finish:", file=sys.stderr)
            for r in failed:
                reason = r.get("reason") or "killed while running"
                print(f"  job {r['job']} [{r['status']}] {r['folder']}: {reason}", file=sys.stderr)
            print(f"resume: {resume_command(config)}", file=sys.stderr, flush=True)
            raise SystemExit(1)


MAX_CHECKED_JOBS = 256  # a grid sweep's jobs whose configs are checked before the first runs


def check_grid(config: DictConfig) -> list[str]:
    """Every job of a grid sweep (Hydra's basic sweeper), composed and checked as a run checks
    its config, before the first job starts: a bad value in the last job would otherwise show
    only after the others trained. One line per problem, with the jobs it is in."""
    if "BasicSweeper" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
        return []  # Optuna and others choose their values as they go
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import open_dict

    from hotcv_train.checks import check_config

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    swept = {o.get_key_element() for o in overrides if o.is_sweep_override()}
    if len(jobs) > MAX_CHECKED_JOBS:
        return []
    loader, found = GlobalHydra.instance().config_loader(), {}
    try:
        for job in jobs:
            try:
                cfg = loader.load_sweep_config(config, list(job))
                with open_dict(cfg):  # what a job's paths resolve against (nothing is made)
                    cfg.hydra.runtime.output_dir = cfg.hydra.sweep.dir
                    cfg.hydra.job.num = 0
                HydraConfig.instance().set_config(cfg)
                with open_dict(cfg):
                    del cfg["hydra"]
                check_config(cfg)
            except UserError as e:
                problems = e.problems
            except Exception as e:  # a swept option that does not exist, say
                problems = [one_line(e)]
            else:
                continue
            values = " ".join(o for o in job if o.partition("=")[0] in swept)
            for problem in problems:
                found.setdefault(problem, []).append(values)
    finally:
        HydraConfig.instance().cfg = None  # the launcher sets each job's
    lines = []
    for problem, where in found.items():
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        lines.append(f"{problem} (in {len(where)} of {len(jobs)} jobs: {where[0]}{more})")
    return lines


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's record, in job order, but those run again in another folder."""
    rows = [dict(r) for _, r in sibling_records(sweep_dir) if r["status"] != SUPERSEDED]
    return sorted(rows, key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else math.inf)


def write_summary(sweep_dir: Path, mode: str) -> list[dict[str, Any]]:
    """Rewrite `summary.csv` from the job records (under a lock: parallel jobs end together)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = collect(sweep_dir)
        metric_keys = sorted({k for r in rows for k in r.get("metrics", {})})
        best = best_row(rows, mode)
        out = io.StringIO()
        writer = csv.writer(out)
        head = ["job", "status", "best", "objective", "wall_time_s", "overrides", "reason"]
        writer.writerow(head + metric_keys)
        for r in rows:
            writer.writerow(
                [
                    r["job"],
                    r["status"],
                    "*" if r is best else "",
                    r.get("objective", ""),
                    r.get("wall_time_s", ""),
                    " ".join(r["overrides"]),
                    r.get("reason", ""),
                ]
                + [r.get("metrics", {}).get(k, "") for k in metric_keys]
            )
        atomic_write(sweep_dir / SUMMARY, out.getvalue())
    return rows


def best_row(rows: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    done = [r for r in rows if r["status"] == "finished"]
    if not done:
        return None
    pick = min if mode == "min" else max
    return pick(done, key=lambda r: r["objective"])


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept_params(rows: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between jobs, in command-line order."""
    values: dict[str, set[str]] = {}
    for r in rows:
        for o in r["overrides"]:
            key, value = split_override(o)
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1]


def param_value(row: dict[str, Any], key: str) -> str:
    return next((v for k, v in map(split_override, row["overrides"]) if k == key), "")


def format_table(
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    swept: list[str],
    best: dict[str, Any] | None,
    metric: str,
    mode: str,
) -> str:
    head = ["", "job", "status", metric, "wall", *swept]
    body = [
        [
            "*" if r is best else "",
            str(r["job"]),
            r["status"],
            f"{r['objective']:.4f}" if r.get("objective") is not None else "-",
            f"{r.get('wall_time_s', 0):.0f}s",
            *(param_value(r, k) for k in swept),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body]]
    done = sum(r["status"] == "finished" for r in rows)
    text = [
        "",
        f"sweep: {sweep_dir}  ({done}/{len(rows)} jobs finished; objective {metric}, {mode})",
        *lines,
        f"summary: {sweep_dir / SUMMARY}",
    ]
    if best is not None:
        # One run: without the sweeper and launcher choices (an Optuna search would start over).
        single = [o for o in best["overrides"] if not o.startswith(SWEEP_ONLY)]
        command = " ".join(["python train.py", *(shlex.quote(o) for o in single)])
        text.append(f"best: job {best['job']} ({metric}={best['objective']:.4f}): {command}")
    return "\n".join(text)


# Overrides that configure the sweep itself, not its jobs: left out of the best job's command.
SWEEP_ONLY = ("hparams_search=", "hydra/", "hydra.", "+hydra.")


def resume_command(config: DictConfig) -> str:
    hydra_overrides = [
        o
        for o in config.hydra.overrides.hydra
        if not o.startswith(("hydra.sweep.dir=", "hydra.mode="))
    ]
    args = [
        *config.hydra.overrides.task,
        *hydra_overrides,
        f"hydra.sweep.dir={config.hydra.sweep.dir}",
    ]
    return " ".join(["python train.py -m", *(shlex.quote(a) for a in args)])


def numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot_summary(
    sweep_dir: Path, rows: list[dict[str, Any]], swept: list[str], mode: str, optuna: bool
) -> list[Path]:
    """`objective_vs_params.png` (one panel per swept key) and, for Optuna, its history."""
    from hotcv_train import plots

    done = [r for r in rows if r["status"] == "finished"]
    if not done:
        return []
    paths = []
    metric = done[0].get("objective_key", "objective")
    if swept:
        points = {
            k: ([param_value(r, k) for r in done], [r["objective"] for r in done]) for k in swept
        }
        paths.append(
            plots.objective_vs_params(points, metric, sweep_dir / "objective_vs_params.png")
        )
    if optuna:
        history = [(int(r["job"]), r.get("objective")) for r in rows if str(r["job"]).isdigit()]
        paths.append(
            plots.optimization_history(
                history, metric, mode, sweep_dir / "optimization_history.png"
            )
        )
    return paths


def tag_best_wandb(job_dir: Path, wandb_cfg: DictConfig) -> None:
    """Add the tag `best` to the W&B run of `job_dir` (offline runs carry it when synced)."""
    runs = sorted((job_dir / "wandb").glob("*run-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return
    run_id = runs[-1].name.rsplit("-", 1)[-1]
    try:
        import wandb

        run = wandb.init(
            id=run_id,
            resume="allow",
            project=wandb_cfg.get("project"),
            entity=wandb_cfg.get("entity"),
            dir=str(job_dir),
        )
        run.tags = (*(run.tags or ()), "best")
        wandb.finish()
        print(f"[sweep] tagged W&B run {run_id} 'best'")
    except Exception as e:  # the summary matters more than the tag
        log.warning("could not tag W&B run %s as best: %s", run_id, one_line(e))
