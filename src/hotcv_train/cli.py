"""Hydra's errors about the command line (a mistyped key or option) as one line with the fix.

Hydra composes the config before any code of ours runs and reports a mistyped key with advice
that does not fit a typo ("To append to your config use +dataset.batchsize=4"). `train.py`
holds stderr back while Hydra composes (`HeldStderr`); if composing fails this way, the held
text is replaced by one `error:` line naming the closest key or option (`explain`).
"""

from __future__ import annotations

import difflib
import io
import re
import sys
from pathlib import Path
from typing import Any, TextIO

OVERRIDE = re.compile(r"Could not override '([^']+)'\.\nTo append to your config use \+(\S+)")
OPTION = re.compile(
    r"Could not find '([^']+)/([^'/]+)'\n\nAvailable options in '[^']+':\n((?:\t.*\n)+)"
)


class HeldStderr(io.TextIOBase):
    """`sys.stderr` held back until `release()`, then written through (and put back)."""

    def __init__(self, stream: TextIO):
        self.stream, self.held, self.released = stream, [], False

    def write(self, text: str) -> int:
        if self.released:
            return self.stream.write(text)
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        if self.released:
            self.stream.flush()

    def text(self) -> str:
        return "".join(self.held)

    def release(self, replacement: str | None = None) -> None:
        """Write what was held (or `replacement`) and give stderr back."""
        if self.released:
            return
        self.released = True
        self.stream.write(self.text() if replacement is None else replacement)
        self.held = []
        if sys.stderr is self:
            sys.stderr = self.stream

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


def explain(text: str, conf: Path) -> str | None:
    """One `error:` line for Hydra's unknown-key or unknown-option error in `text`, else None."""
    if match := OVERRIDE.search(text):
        key, line = match.groups()
        if key.startswith("hydra."):  # Hydra's own keys are not in our YAML files
            return None
        return no_such_key(key, line, config_keys(conf))
    if match := OPTION.search(text):
        group, name, listed = match.groups()
        options = [o.strip() for o in listed.splitlines() if o.strip()]
        guess = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
        hint = f"did you mean {group}={guess[0]}? " if guess else ""
        return f"error: {group}={name}: no such option; {hint}(options: {', '.join(options)})"
    return None


def no_such_key(key: str, override: str, known: set[str]) -> str:
    guess = closest_key(key, known)
    hint = f"did you mean {guess}? " if guess else ""
    return (
        f"error: {key}: no such key; {hint}(a new key needs a +: +{override}; "
        "python train.py ... --cfg job lists every key)"
    )


def unknown_sweep_key(overrides: list[str], config: Any, conf: Path) -> str | None:
    """The `error:` line for a mistyped key among a multirun's overrides, else None.

    Hydra composes a sweep's values per job, after the sweep started: its error would come
    from the first job, worded for a run. A key is mistyped when neither the sweep's config nor
    any YAML file (a swept option may bring it) has it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import OmegaConf

    absent, known = object(), None
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.type != OverrideType.CHANGE or override.package is not None:
            continue
        if key.startswith("hydra") or "/" in key or (conf / key).is_dir():  # groups, Hydra's
            continue
        if OmegaConf.select(config, key, default=absent) is not absent:
            continue
        known = config_keys(conf) if known is None else known
        if key not in known:
            return no_such_key(key, override.input_line or key, known)
    return None


def config_keys(conf: Path) -> set[str]:
    """Every dotted key any YAML file under `conf` can put in the composed config."""
    import yaml

    keys: set[str] = set()
    for file in conf.rglob("*.yaml"):
        group = file.parent.relative_to(conf).as_posix().replace("/", ".")
        text = file.read_text()
        package = re.search(r"^# @package (\S+)", text, flags=re.M)
        prefix = group if package is None else package.group(1)
        prefix = "" if prefix in ("_global_", ".") else prefix.replace("_group_", group)
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            continue
        _collect(tree, prefix, keys)
    return keys


def _collect(tree: Any, prefix: str, keys: set[str]) -> None:
    if not isinstance(tree, dict):
        return
    for name, value in tree.items():
        if name == "defaults" and not prefix:
            continue
        key = f"{prefix}.{name}" if prefix else str(name)
        keys.add(key)
        _collect(value, key, keys)


def closest_key(key: str, known: set[str]) -> str | None:
    """`key` with its first unknown part replaced by the closest known one there, if any."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        parent = ".".join(parts[:i])
        if ".".join(parts[: i + 1]) in known:
            continue
        siblings = {k.rsplit(".", 1)[-1] for k in known if k.rpartition(".")[0] == parent}
        guess = difflib.get_close_matches(part, sorted(siblings), n=1, cutoff=0.6)
        return ".".join([*parts[:i], guess[0], *parts[i + 1 :]]) if guess else None
    return None


def run_main(main: Any, conf: Path) -> None:
    """`main()` (a `@hydra.main` function) with stderr held until it starts (`release_stderr`)."""
    held = sys.stderr = HeldStderr(sys.stderr)
    try:
        main()
    except SystemExit as e:
        if not held.released and e.code == 1 and (line := explain(held.text(), conf)):
            held.release(line + "\n")
            raise SystemExit(2) from None
        raise
    finally:
        held.release()


def release_stderr(replacement: str | None = None) -> None:
    """Called as the task function starts: Hydra composed the config, stderr is written again
    (what was held, or `replacement`)."""
    if isinstance(sys.stderr, HeldStderr):
        sys.stderr.release(replacement)
    elif replacement is not None:
        sys.stderr.write(replacement)
