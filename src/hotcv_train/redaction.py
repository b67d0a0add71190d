"""Secrets a user passes (tokens, API keys, passwords) never land in a file of the run folder.

A value is secret when its key says so: the name contains `api_key`, `apikey`, `password` or
`secret`, or has `token` as a word (`token`, `hf_token`; not `tokenizer`, `max_tokens` or
`pad_token_id`). Wherever the run writes its configuration — Hydra's saved config and overrides,
`resolved.yaml`, the hyperparameters loggers and checkpoints get, sweep records, the command line
W&B records — such a value reads `<redacted>`; the running job keeps the real one.
Secrets in the environment (`HF_TOKEN`, `WANDB_API_KEY`) are read by their libraries, never saved.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

REDACTED = "<redacted>"
_SECRET = re.compile(r"api_?key|password|secret|(?:^|_)token(?:$|_(?!ids?$))", re.IGNORECASE)
_OVERRIDE = re.compile(r"^(?P<key>[+~]*[\w.\-/@]+)=")


def is_secret(key: Any) -> bool:
    """Whether a config key (or the last part of a dotted one) names a secret."""
    return bool(_SECRET.search(str(key).rsplit(".", 1)[-1]))


def redact(value: Any) -> Any:
    """Plain data (`OmegaConf.to_container`) with every secret replaced by `<redacted>`.

    Walks dicts, lists and dataclasses (a `ModelSpec` in a module's hyperparameters); a string is
    read as comma-separated `key=value` overrides (Hydra's `override_dirname`, one argv item).
    """
    if isinstance(value, Mapping):
        return {
            k: REDACTED if is_secret(k) and v is not None else redact(v) for k, v in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(redact(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value) if f.init]
        return dataclasses.replace(value, **{n: redact(getattr(value, n)) for n in names})
    if isinstance(value, str) and "=" in value:
        return ",".join(_redact_override(part) for part in value.split(","))
    return value


def _redact_override(text: str) -> str:
    match = _OVERRIDE.match(text)
    if match is None or not is_secret(match["key"]):
        return text
    return f"{match['key']}={REDACTED}"


def redact_saved_config(folder: Path) -> None:
    """Rewrite Hydra's saved `config.yaml`, `hydra.yaml` and `overrides.yaml` in `folder`, and a
    sweep's `multirun.yaml`, without secrets; files that hold none are left untouched."""
    from hotcv_train.sweeps import atomic_write

    for name in ("config.yaml", "hydra.yaml", "overrides.yaml", "multirun.yaml"):
        path = folder / name
        if not path.is_file():
            continue
        saved = OmegaConf.load(path)
        plain = OmegaConf.to_container(saved, resolve=False)
        clean = redact(plain)
        if clean != plain:
            atomic_write(path, OmegaConf.to_yaml(OmegaConf.create(clean)))


class RedactSecrets(Callback):
    """Hydra callback: the job's saved config and command line without secrets (see module doc).

    Hydra saves the config before the job starts, so this rewrites what it saved.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = config.hydra
        if hydra.output_subdir is not None:
            redact_saved_config(Path(hydra.runtime.output_dir) / hydra.output_subdir)
        if hydra.mode == RunMode.MULTIRUN:
            redact_saved_config(Path(hydra.sweep.dir))
        # W&B records sys.argv; ranks Lightning launches rerun it but read their config from
        # launch.job_environment, so they never need these values from it.
        sys.argv[1:] = [redact(arg) for arg in sys.argv[1:]]
