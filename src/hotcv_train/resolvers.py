"""OmegaConf resolvers the YAML uses; registered on import (train.py imports the package)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def sweep_group(prefix: str) -> str | None:
    """`<prefix>/<sweep timestamp>` for the jobs of a multirun, None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"{prefix}/{Path(HydraConfig.get().sweep.dir).name}"


if not OmegaConf.has_resolver("sweep_group"):
    OmegaConf.register_new_resolver("sweep_group", sweep_group)
