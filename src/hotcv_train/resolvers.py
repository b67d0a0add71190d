"""OmegaConf resolvers the YAML uses; registered on import (train.py imports the package)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf


def run_stamp(fmt: str) -> str:
    """The time now in `fmt`; for ranks that torchrun or srun started together, their job's id.

    Those launchers start every rank as a separate `python train.py`, and each composes its own
    config: a timestamp could differ by a second between them and split one run into two folders.
    (Ranks that Lightning launches reuse the parent's config instead; see launch.py.)
    """
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")  # "none" unless --rdzv-id/--standalone
    if run_id != "none":
        return f"torchrun-{run_id}"
    return datetime.now().strftime(fmt)


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


def cwd() -> str:
    """The folder train.py was started from: `hydra:runtime.cwd` is unset while Hydra resolves
    `hydra.sweep.dir`, so a sweep folder built from it fails before its first job."""
    return os.getcwd()


for _name, _resolver in (
    ("cwd", cwd),
    ("sweep_group", sweep_group),
    ("run_stamp", run_stamp),
    ("rank_suffix", rank_suffix),
):
    if not OmegaConf.has_resolver(_name):
        # Cached like Hydra's own `now`: a sweep resolves its folder many times, to one value.
        OmegaConf.register_new_resolver(_name, _resolver, use_cache=True)
