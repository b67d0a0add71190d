"""Validate a composed config before anything is built.

Every `_target_` node is checked against the signature of what it names: unknown keys (with a
"did you mean"), missing required keys, values of the wrong type, and local paths that do not
exist. All problems are collected so a run fails once, listing them all, before any model loads.
"""

from __future__ import annotations

import collections.abc
import contextlib
import difflib
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from hotcv_train.errors import UserError

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
STAGES = ("fit", "test", "predict")
RUN_KEYS = {
    "task_name",
    "stage",
    "test_after_fit",
    "ckpt_path",
    "seed",
    "float32_matmul_precision",
    "monitor",
    "monitor_mode",
    "optimized_metric",
    "optimized_mode",
    "dataset",
    "module",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
}

# The optional extra that provides a package, for the error when a target's import fails.
EXTRAS = {
    "diffusers": "diffusion",
    "accelerate": "diffusion",
    "tensorflow": "tf",
    "av": "video",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
    "tensorboardX": "tensorboard",
    "scipy": "detection",
    "pycocotools": "detection",
    "optuna": "sweep",
}


class PathArg:
    """Marks a `str` argument as a path (`hub=False`) or a hub id or path (`hub=True`)."""

    def __init__(self, hub: bool):
        self.hub = hub


class Range:
    """Marks a number argument with the values it accepts: `low` <= x (< when `open`), x <= `high`."""

    def __init__(self, low: float | None = None, high: float | None = None, open: bool = False):
        self.low, self.high, self.open = low, high, open

    def problem(self, value: float) -> str | None:
        low_ok = self.low is None or (value > self.low if self.open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.open else value <= self.high)
        if low_ok and high_ok:
            return None
        if self.low is not None and self.high is not None:
            return f"must be in {'(' if self.open else '['}{self.low}, {self.high}{')' if self.open else ']'}"
        return (
            f"must be {'>' if self.open else '>='} {self.low}"
            if self.high is None
            else f"must be <= {self.high}"
        )


HubOrPath = Annotated[str, PathArg(hub=True)]
LocalPath = Annotated[str, PathArg(hub=False)]
Count = Annotated[int, Range(1)]  # sizes and counts: at least one
NonNegative = Annotated[int, Range(0)]  # samples to draw, seeds
Workers = Annotated[int, Range(0, 128)]  # processes to start: a typo must not fork a thousand
Fraction = Annotated[float, Range(0, 1, open=True)]  # a share carved out of something
Pixels = Annotated[int, Range(1, 16384)]  # an image side: a typo must not allocate petabytes
Probability = Annotated[float, Range(0, 1)]
Positive = Annotated[float, Range(0, open=True)]  # scales, depths

# Ranges of other libraries' arguments that they take unchecked and fail on mid-run (a
# ZeroDivisionError once training starts), keyed by the class's module and name.
LIBRARY_RANGES = {
    "lightning.pytorch.trainer.trainer.Trainer": {
        "accumulate_grad_batches": Range(1),
        "check_val_every_n_epoch": Range(1),
        "val_check_interval": Range(0, open=True),
        "log_every_n_steps": Range(0),  # 0: no step logging
        "num_sanity_val_steps": Range(-1),  # -1: the whole validation set
    }
}


def looks_local(path: str) -> bool:
    """A hub id is `name` or `org/name`; anything absolute, relative-dotted or deeper is a path."""
    return (
        Path(path).expanduser().exists()
        or path.startswith(("/", ".", "~"))
        or path.count("/") > 1
        or "\\" in path
    )


def check_config(cfg: DictConfig) -> None:
    """Raise `UserError` listing every problem in `cfg`, or return quietly."""
    tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    problems = _check_run_keys(tree)
    _walk(tree, "", problems, _interpolated(cfg, ""))
    if problems:
        raise UserError(*problems)


def wandb_can_log_in() -> bool:
    """Whether W&B will start: offline or disabled (WANDB_MODE, `wandb offline`), or a key in
    the environment or ~/.netrc (`wandb login`). Without one it stops mid-run with a traceback."""
    import configparser
    import netrc
    from urllib.parse import urlparse

    settings = configparser.ConfigParser()  # `wandb offline` writes mode = offline here
    config_dir = os.environ.get("WANDB_CONFIG_DIR", Path("~/.config/wandb").expanduser())
    settings.read([Path(config_dir) / "settings", Path("wandb") / "settings"])
    mode = os.environ.get("WANDB_MODE") or settings.get("default", "mode", fallback="")
    if mode.lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _check_run_keys(tree: dict) -> list[str]:
    problems = []
    for key in sorted(set(tree) - RUN_KEYS):
        problems.append(f"{key}: unknown top-level key{_suggest(key, RUN_KEYS)}; remove it")
    if tree.get("stage") not in STAGES:
        problems.append(f"stage: must be one of {', '.join(STAGES)}, got {tree.get('stage')!r}")
    target = (tree.get("module") or {}).get("_target_")
    if tree.get("stage") == "predict" and target and not _overrides(target, "predict_step"):
        problems.append(
            f"stage: {target.rsplit('.', 1)[-1]} has no predict stage; use stage=test to "
            "evaluate (it writes metrics.json and plots)"
        )
    if tree.get("stage") == "fit" and target and not _overrides(target, "training_step"):
        problems.append(
            f"stage: {target.rsplit('.', 1)[-1]} is eval-only (nothing to train); use "
            "stage=test (scores with dataset.references) or stage=predict (outputs only)"
        )
    for key, node in (tree.get("logger") or {}).items():
        wandb = isinstance(node, dict) and str(node.get("_target_", "")).endswith("WandbLogger")
        if wandb and not node.get("offline") and not wandb_can_log_in():
            problems.append(
                f"logger.{key}: no W&B API key (WANDB_API_KEY or `wandb login`); log offline "
                "with WANDB_MODE=offline (`wandb sync` uploads later) or use logger=csv"
            )
    seed = tree.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        problems.append(f"seed: must be a whole number in [0, 2**32), got {seed!r}")
    if not isinstance(tree.get("test_after_fit"), bool):
        problems.append(
            f"test_after_fit: expected true or false, got {tree.get('test_after_fit')!r}"
        )
    if tree.get("monitor_mode") not in ("min", "max"):
        problems.append(f"monitor_mode: must be min or max, got {tree.get('monitor_mode')!r}")
    precision = tree.get("float32_matmul_precision")
    if precision not in ("highest", "high", "medium"):
        problems.append(
            f"float32_matmul_precision: must be one of highest, high, medium, got {precision!r}"
        )
    problems.extend(_schedule_problems(tree))
    problems.extend(_untrained_problems(tree))
    ckpt = tree.get("ckpt_path")
    folder = Path(str(ckpt)).expanduser()
    if ckpt is not None and folder.is_dir():
        found = sorted(folder.glob("*.ckpt")) or sorted(folder.glob("checkpoints/*.ckpt"))
        hint = f"e.g. ckpt_path={found[-1]}" if found else "it holds no .ckpt file"
        problems.append(f"ckpt_path: {ckpt} is a folder; give one checkpoint file in it ({hint})")
    elif ckpt is not None and not folder.is_file():
        problems.append(f"ckpt_path: no such checkpoint file: {ckpt}")
    return problems


def _schedule_problems(tree: dict) -> list[str]:
    """A scheduler is built for `estimated_stepping_batches` steps, which endless training
    (`max_epochs=-1` without `max_steps`) makes infinite: it fails as training starts."""
    trainer = tree.get("trainer") or {}
    scheduler = (tree.get("module") or {}).get("scheduler")
    endless = trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (-1, None)
    if tree.get("stage") != "fit" or scheduler is None or not endless:
        return []
    return [
        "trainer.max_epochs: -1 (no end) leaves module.scheduler no number of steps to "
        "schedule; set trainer.max_epochs=N or trainer.max_steps=N, or module.scheduler=null "
        "(a constant learning rate)"
    ]


def _untrained_problems(tree: dict) -> list[str]:
    """Testing or predicting with a model built with random weights and no checkpoint scores
    noise, reported as a result: a forgotten `ckpt_path`."""
    stage, model = tree.get("stage"), (tree.get("module") or {}).get("model")
    if stage not in ("test", "predict") or tree.get("ckpt_path") is not None:
        return []
    if not isinstance(model, dict) or "name_or_path" not in model:
        return []
    if model["name_or_path"] is None:
        why = "module.model.name_or_path=null builds it from scratch"
    elif model.get("pretrained") is False:
        why = "module.model.pretrained=false"
    else:
        return []
    on_purpose = " (to score the untrained model: stage=fit trainer.max_epochs=0)"
    return [
        f"ckpt_path: stage={stage} would run a model with random weights ({why}); pass "
        f"ckpt_path=<run>/checkpoints/best-<epoch>.ckpt{on_purpose if stage == 'test' else ''}"
    ]


def _interpolated(node: Any, key: str) -> set[str]:
    """Keys whose value is a copy of another key's (`${...}`): problems are reported there."""
    found = set()
    if isinstance(node, DictConfig):
        for k in node:
            child = f"{key}.{k}" if key else str(k)
            if OmegaConf.is_interpolation(node, str(k)):
                found.add(child)
            elif not OmegaConf.is_missing(node, str(k)):
                found |= _interpolated(node._get_node(k), child)
    return found


def _overrides(target: str, method: str) -> bool:
    """Whether the class `target` implements `method` itself rather than inheriting Lightning's."""
    import lightning as L

    try:
        cls = get_object(target)
    except Exception:
        return True  # reported as an import problem of module._target_
    return getattr(cls, method, None) is not getattr(L.LightningModule, method)


def _walk(value: Any, key: str, problems: list[str], copies: set[str]) -> None:
    if isinstance(value, dict):
        if "_target_" in value:
            _check_node(value, key, problems, copies)
        for k, v in value.items():
            _walk(v, f"{key}.{k}" if key else str(k), problems, copies)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, f"{key}[{i}]", problems, copies)
    elif value == "???":
        problems.append(f"{key}: missing value; set it, e.g. on the command line: {key}=...")


def _check_node(node: dict, key: str, problems: list[str], copies: set[str]) -> None:
    target_name = node["_target_"]
    try:
        target = get_object(target_name)
    except Exception as e:  # hydra wraps the ImportError; find the package that is missing
        cause = e.__cause__ or e
        missing = getattr(cause, "name", None) or ""
        extra = EXTRAS.get(missing.split(".")[0])
        hint = f"; install it: pip install -e '.[{extra}]'" if extra else ""
        problems.append(f"{key}._target_: cannot import {target_name!r} ({cause}){hint}")
        return
    params, hints, open_kwargs = _signature(target)
    if params is None:
        return
    qualified = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    for k, mark in LIBRARY_RANGES.get(qualified, {}).items():
        hints[k] = Annotated[hints.get(k, Any), mark]
    name = getattr(target, "__name__", target_name)
    given = [k for k in node if k not in HYDRA_KEYS]
    if not open_kwargs:
        for k in given:
            if k not in params:
                problems.append(
                    f"{key}.{k}: unknown key for {name}{_suggest(k, params)}; "
                    f"known keys: {', '.join(sorted(params))}"
                )
    if not node.get("_partial_", False):
        for p, param in params.items():
            if param.default is inspect.Parameter.empty and p not in node:
                problems.append(f"{key}.{p}: missing (required by {name})")
    for k in given:
        if k not in hints or node[k] == "???" or f"{key}.{k}" in copies:
            continue  # copies of another key's value are reported at that key
        value, hint = node[k], hints[k]
        if not _matches(value, hint):
            problems.append(f"{key}.{k}: expected {_type_name(hint)}, got {value!r}")
        elif isinstance(value, str):
            problems.extend(_path_problems(f"{key}.{k}", value, hint))
        elif (problem := _range_problem(value, hint)) is not None:
            problems.append(f"{key}.{k}: {problem}, got {value!r}")


def _signature(target: Any) -> tuple[dict | None, dict, bool]:
    """Named parameters and type hints of `target`, following `**kwargs` up a class's bases."""
    owners = [target]
    if inspect.isclass(target):
        owners = [c.__init__ for c in target.__mro__ if "__init__" in vars(c) and c is not object]
        if not owners:
            return {}, {}, False
    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for owner in owners:
        try:
            sig = inspect.signature(owner)
        except (TypeError, ValueError):
            return None, {}, True
        with contextlib.suppress(Exception):  # unresolvable annotations: check keys, not types
            hints = {**typing.get_type_hints(owner, include_extras=True), **hints}
        kinds = {p.kind for p in sig.parameters.values()}
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                params.setdefault(p.name, p)
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            return params, hints, False
        if not owner.__module__.startswith("hotcv_train."):
            break  # elsewhere **kwargs may go anywhere (DDPStrategy's go to DDP): keys stay open
    return params, hints, True


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits a type hint; unknown hints are given the benefit of doubt."""
    if isinstance(value, dict) and "_target_" in value:
        return True  # built by Hydra; its own node is checked separately
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin is Annotated:
        return _matches(value, args[0])
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if getattr(hint, "__name__", None) == "Tensor":  # torch's optimizers: `lr: float | Tensor`
        return isinstance(value, (int, float, list)) and not isinstance(value, bool)
    base = origin or hint
    if base in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        item = args[0] if args and (base is not tuple or args[-1] is Ellipsis) else None
        return item is None or all(_matches(v, item) for v in value)
    if base in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def _path_problems(key: str, value: str, hint: Any) -> list[str]:
    marks = [m for a in _annotated(hint) for m in get_args(a)[1:] if isinstance(m, PathArg)]
    if not marks or Path(value).expanduser().exists():
        return []
    if marks[0].hub and not looks_local(value):
        return []  # a hub id: reached (or reported) when loaded
    return [f"{key}: no such file or folder: {value}"]


def _range_problem(value: Any, hint: Any) -> str | None:
    """What is out of range in `value` (a number, or numbers in a list) for `hint`'s `Range`s."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for mark in args[1:]:
                if isinstance(mark, Range) and (problem := mark.problem(value)):
                    return problem
        return _range_problem(value, args[0])
    if origin in (Union, types.UnionType):
        fitting = [a for a in args if _matches(value, a)]
        return _range_problem(value, fitting[0]) if fitting else None
    if origin in (list, collections.abc.Sequence) and isinstance(value, list) and args:
        found = (_range_problem(v, args[0]) for v in value)
        return next((f"each value {p}" for p in found if p), None)
    return None


def _annotated(hint: Any) -> list[Any]:
    if get_origin(hint) is Annotated:
        return [hint]
    return [a for a in get_args(hint) if get_origin(a) is Annotated]


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Annotated:
        return _type_name(get_args(hint)[0])
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(hint))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
