"""OmegaConf resolvers the YAML uses; registered on import (train.py imports the package)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf


def launcher_job_id() -> str | None:
    """The id shared by every rank that torchrun or srun started together; None otherwise."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")  # "none" unless --rdzv-id/--standalone
    return f"torchrun-{run_id}" if run_id != "none" else None


def run_stamp(fmt: str) -> str:
    """The time now in `fmt`; for ranks that torchrun or srun started together, their job's id.

    Those launchers start every rank as a separate `python train.py`, and each composes its own
    config: a timestamp could differ by a second between them and split one run into two folders.
    (Ranks that Lightning launches reuse the parent's config instead; see launch.py.)
    """
    return launcher_job_id() or datetime.now().strftime(fmt)


_claimed: dict[str, str] = {}


def fresh_dir(path: str) -> str:
    """`path`, created now by this run alone; `path_1`, `path_2`, ... when another run has it.

    Runs started in the same second (from scripts, job arrays) would otherwise share one folder
    and overwrite each other's checkpoints and metrics. Ranks of one torchrun/srun job share a
    folder named by the job id: that one is never suffixed. Remembered per process, since Hydra
    resolves the run folder more than once.
    """
    if path in _claimed or launcher_job_id() is not None:
        return _claimed.get(path, path)
    candidate, n = Path(path), 0
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            n += 1
            candidate = Path(f"{path}_{n}")
    _claimed[path] = str(candidate)
    return str(candidate)


def rank_suffix(name: str) -> str:
    """`name` on global rank 0, `name_rank<N>` elsewhere: ranks never write the same file."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    return name if rank == 0 else f"{name}_rank{rank}"


def sweep_group(prefix: str) -> str | None:
    """`<prefix>/<sweep timestamp>` for the jobs of a multirun, None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"{prefix}/{Path(HydraConfig.get().sweep.dir).name}"


def sweep_job_name(override_dirname: str) -> str | None:
    """A multirun job's overrides (`lr=1e-3,seed=1`) to name its W&B run; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    from hotcv_train.redaction import redact

    return redact(override_dirname) or None


def cwd() -> str:
    """The folder train.py was started from: `hydra:runtime.cwd` is unset while Hydra resolves
    `hydra.sweep.dir`, so a sweep folder built from it fails before its first job."""
    return os.getcwd()


for _name, _resolver in (
    ("cwd", cwd),
    ("sweep_group", sweep_group),
    ("sweep_job_name", sweep_job_name),
    ("run_stamp", run_stamp),
    ("fresh_dir", fresh_dir),
    ("rank_suffix", rank_suffix),
):
    if not OmegaConf.has_resolver(_name):
        # Cached like Hydra's own `now`: a sweep resolves its folder many times, to one value.
        OmegaConf.register_new_resolver(_name, _resolver, use_cache=True)
