"""Hydra x Lightning DDP: ranks that Lightning launches rebuild the parent's config, not Hydra's.

Lightning's DDP launcher starts each extra rank by re-running `sys.argv`. Under Hydra that would
compose again (a new `${now:}`, a second run folder) and, under `-m`, re-run the whole sweep into
a second multirun folder. Instead the parent writes its resolved config into the run folder and
names it in an environment variable; a launched rank (LOCAL_RANK set) loads that file and calls
`run()` directly. The parent restores its environment after each job, so the next job of a
multirun launches its own ranks instead of believing it is one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_ENV = "HOTCV_TRAIN_RESOLVED_CONFIG"


def launched_rank_config() -> DictConfig | None:
    """The parent's resolved config when this process is a rank Lightning launched, else None."""
    path = os.environ.get(CONFIG_ENV)
    if path and "LOCAL_RANK" in os.environ:
        return OmegaConf.load(path)
    return None


@contextlib.contextmanager
def job_environment(resolved_config: Path) -> Iterator[None]:
    """Hand `resolved_config` to launched ranks; afterwards leave no DDP state for the next job."""
    saved = dict(os.environ)
    os.environ[CONFIG_ENV] = str(resolved_config)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
