"""Checkpoints a run is asked to resume or evaluate: checked before any work, errors in one line.

Lightning saves through an fsspec transaction (a temporary file moved into place), so a kill
during a save leaves the previous file whole; what can still reach a run is a file damaged
elsewhere (a copy cut short, a full disk) or one saved from another model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from hotcv_train.errors import UserError


def readable(path: Path) -> bool:
    """Whether `path` loads as a checkpoint (weights-only, memory-mapped: no tensor is read)."""
    import torch

    import hotcv_train.models  # noqa: F401  (registers ModelSpec for weights-only loads)

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return True


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
