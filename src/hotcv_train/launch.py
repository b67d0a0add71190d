"""Hydra x Lightning DDP: ranks that Lightning launches rebuild the parent's config, not Hydra's.

Lightning's DDP launcher starts each extra rank by re-running `sys.argv`. Under Hydra that would
compose again (a new `${now:}`, a second run folder) and, under `-m`, re-run the whole sweep into
a second multirun folder. Instead the parent puts its resolved config in an environment variable
(secrets included, so never in a file: the run folder's copy has them redacted); a launched rank
(LOCAL_RANK set) reads it and calls `run()` directly. The parent restores its environment after
each job, so the next job of a multirun launches its own ranks instead of believing it is one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_ENV = "HOTCV_TRAIN_RESOLVED_CONFIG"


def launched_rank_config() -> DictConfig | None:
    """The parent's resolved config when this process is a rank Lightning launched, else None."""
    text = os.environ.get(CONFIG_ENV)
    if text and "LOCAL_RANK" in os.environ:
        return OmegaConf.create(text)
    return None


@contextlib.contextmanager
def job_environment(cfg: DictConfig) -> Iterator[None]:
    """Hand `cfg` to launched ranks; afterwards leave no DDP state for the next job."""
    saved = dict(os.environ)
    os.environ[CONFIG_ENV] = OmegaConf.to_yaml(cfg, resolve=True)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def ranks_run_the_script() -> Iterator[None]:
    """In a worker process (a parallel launcher's), make Lightning start extra ranks as train.py.

    Lightning starts each extra DDP rank by re-running `__main__`: `python -m <its module>` when
    `__main__` was run as a module, else `python <sys.argv[0]>`. In a joblib (loky) worker
    `__main__` is the worker's module while `sys.argv` is still train.py's, so ranks would start
    as bare workers. While the job runs, `__main__` looks like the script it came from.
    """
    import __main__

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    own_file = Path(getattr(__main__, "__file__", "") or "")
    if script is None or not script.is_file() or own_file.resolve() == script.resolve():
        yield
        return
    spec = __main__.__spec__
    __main__.__spec__ = None
    try:
        yield
    finally:
        __main__.__spec__ = spec
