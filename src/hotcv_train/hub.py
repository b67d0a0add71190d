"""Loading from the Hugging Face Hub or a local copy, with one clear line when the hub is out of reach."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hotcv_train.checks import looks_local
from hotcv_train.errors import UserError


@contextlib.contextmanager
def hub_errors(source: str, key: str, repo_type: str = "model") -> Iterator[None]:
    """Turn a failed download of `source` into a `UserError` naming `key` and the offline fix."""
    try:
        yield
    except (OSError, ConnectionError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if looks_local(source):
            what = "a save_pretrained folder" if repo_type == "model" else "a save_to_disk folder"
            raise UserError(f"{key}: cannot load {source} ({reason}); point it at {what}") from e
        flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
        raise UserError(
            f"{key}: cannot load {repo_type} {source!r} from the Hugging Face Hub ({reason}); "
            f"download it where the hub is reachable (hf download {source}{flag} --local-dir DIR) "
            f"and set {key}=DIR"
        ) from e
