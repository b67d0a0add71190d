"""Checkpoints: written so a kill never leaves half of one; checked before a run resumes one.

What can still reach a run is a file damaged elsewhere (a copy cut short) or one saved from
another model: each is a one-line error that names the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO

from hotcv_train.errors import UserError
from hotcv_train.redaction import redact


class SafeCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, synced, then renamed over it.

    Lightning's own save writes the temporary file in the system temp folder and moves it into
    place: where that folder is another filesystem (a local /tmp, a tmpfs, beside network
    storage) the move is a copy into the checkpoint's name, which a kill cuts short, and a kill
    leaves whole checkpoints behind in /tmp. A rename within one folder is atomic. Secrets in
    the hyperparameters (a hub token in `module.model.config`) are redacted.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        import torch

        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint = {**checkpoint, key: redact(checkpoint[key])}
        if "://" in str(path):  # remote storage: fsspec's own transaction
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.ckpt: never taken for one
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def readable(path: Path) -> bool:
    """Whether `path` loads as a checkpoint (weights-only, memory-mapped: no tensor is read)."""
    try:
        read_checkpoint(str(path))
    except Exception:
        return False
    return True


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint's contents, weights-only and memory-mapped (no tensor is read)."""
    import torch

    import hotcv_train.models  # noqa: F401  (registers ModelSpec for weights-only loads)

    path = Path(ckpt_path).expanduser()
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def saved_labels(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The classes a checkpoint's model was trained on (`num_labels`, `label_names`), as saved in
    its hyperparameters: what `stage=predict` on unlabelled inputs builds the model with."""
    saved = checkpoint.get("hyper_parameters", {})
    return {k: saved[k] for k in ("num_labels", "label_names") if saved.get(k) is not None}


def checkpoint_notes(
    checkpoint: dict[str, Any], ckpt_path: str, data_labels: list[str] | None, max_epochs: Any
) -> list[str]:
    """What a user should hear before a fit or test from `checkpoint`: the same number of
    classes under other names (the weights load, the scores would compare class i with class
    i), and a fit that has no epoch left to train."""
    notes = []
    names = saved_labels(checkpoint).get("label_names")
    if names and data_labels and len(names) == len(data_labels) and names != data_labels:
        notes.append(
            f"ckpt_path: the checkpoint's classes {names} are not the data's {data_labels}; "
            "class i of the model is taken as class i of the data"
        )
    done = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    epochs = done.get("current", {}).get("processed")
    if max_epochs is not None and max_epochs >= 0 and epochs is not None and epochs >= max_epochs:
        notes.append(
            f"ckpt_path: {ckpt_path} has trained {epochs} epoch(s), trainer.max_epochs="
            f"{max_epochs}: nothing is left to train; raise trainer.max_epochs to train on"
        )
    return notes


def recipe_note(ckpt_path: str, overrides: list[str]) -> str | None:
    """A note when the checkpoint's run was started with a `task=` or `experiment=` this run
    lacks: its data and model settings differ (a quickstart checkpoint tested on the default
    task's hub data, say). Read from the run folder the checkpoint sits in, if it is there."""
    saved = Path(ckpt_path).expanduser().resolve().parents[1] / ".hydra" / "overrides.yaml"
    try:
        import yaml

        theirs = yaml.safe_load(saved.read_text()) or []
    except (OSError, ValueError):
        return None
    missing = [
        o for o in theirs if str(o).startswith(("task=", "experiment=")) and o not in overrides
    ]
    if not missing:
        return None
    return (
        f"ckpt_path: the checkpoint's run was started with {' '.join(missing)} ({saved}); "
        "this run was not: add it, or its data and model settings differ from the checkpoint's"
    )


def check_checkpoint(ckpt_path: str) -> None:
    """Raise a one-line `UserError` when `ckpt_path` is damaged, naming the newest good one."""
    path = Path(ckpt_path).expanduser()
    if readable(path):
        return
    others = sorted(
        (p for p in path.parent.glob("*.ckpt") if p != path),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    good = next((p for p in others if readable(p)), None)
    fix = (
        f"resume from the newest good one: ckpt_path={good}"
        if good
        else "no other checkpoint there loads"
    )
    raise UserError(f"ckpt_path: {path} is damaged or not a checkpoint (cannot load it); {fix}")


@contextlib.contextmanager
def restore_errors(ckpt_path: str | None) -> Iterator[None]:
    """A checkpoint of another model (other shapes or keys) as one line, not a state-dict dump."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        if ckpt_path is None or "Error(s) in loading state_dict" not in text:
            raise
        detail = next(
            (line.strip() for line in text.splitlines()[1:] if line.strip()), "shapes differ"
        )
        raise UserError(
            f"ckpt_path: {ckpt_path} holds weights of another model ({detail[:200]}); use a "
            "checkpoint of this config's model, or drop ckpt_path"
        ) from None
