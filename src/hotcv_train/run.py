"""Config in, run folder out: instantiate, run the stage, write metrics. Nothing task-specific."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hotcv_train.checkpoints import (
    SafeCheckpointIO,
    check_checkpoint,
    checkpoint_notes,
    read_checkpoint,
    recipe_note,
    restore_errors,
    saved_labels,
)
from hotcv_train.checks import check_config
from hotcv_train.errors import UserError
from hotcv_train.launch import job_environment
from hotcv_train.loggers import log_to_files
from hotcv_train.redaction import redact

log = logging.getLogger("hotcv_train")

# Lightning's notes on its own bookkeeping, printed on every evaluation of a checkpoint: a
# checkpoint's callback state from another run folder, and predict_step writing files itself;
# its warning that a mid-epoch resume is unreliable with a plain DataLoader (the datamodule
# resumes mid-epoch itself: HFDataModule.state_dict); Lightning 2.6 using an API that torch
# 2.14 deprecated; and its model summary sizing bf16-mixed weights as the fp32 they are (every
# `trainer=gpu` run). Nothing for a user to do about any of them.
LIGHTNING_NOISE = (
    "The dirpath has changed",
    "predict returned None",
    "You're resuming from a checkpoint that ended before the epoch ended",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    "Precision bf16-mixed is not supported by the model summary",
)


def run(cfg: DictConfig) -> dict[str, float]:
    """Run `cfg.stage` (fit then test, test, or predict) and return the final metrics."""
    check_config(cfg)  # every config problem, listed at once, before anything is built
    if cfg.ckpt_path is not None:
        check_checkpoint(cfg.ckpt_path)
        overrides = command_overrides()
        if overrides is not None and (note := recipe_note(cfg.ckpt_path, overrides)):
            log.warning(note)

    import lightning as L
    import torch
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from hotcv_train.callbacks import CtrlCStops

    output_dir = Path(cfg.paths.output_dir)
    hparams = redact(OmegaConf.to_container(cfg, resolve=True))  # what files and loggers get
    if rank_zero_only.rank == 0:
        resolved = output_dir / ".hydra" / "resolved.yaml"
        resolved.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(hparams), resolved)

    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", f"{message}.*")
    # huggingface_hub prints each line twice: through a stderr handler of its own, then through
    # Hydra's (console and train.log). Keep Hydra's.
    import huggingface_hub  # noqa: F401  (its logger gets its handler on import)

    hub_log = logging.getLogger("huggingface_hub")
    hub_log.handlers = [h for h in hub_log.handlers if type(h) is not logging.StreamHandler]
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    datamodule = instantiate(cfg.dataset, "dataset")
    datamodule.setup(cfg.stage)  # load and check the data before any model loads
    facts = getattr(datamodule, "module_kwargs", dict)()
    if cfg.ckpt_path is not None:
        saved = read_checkpoint(cfg.ckpt_path)
        if cfg.stage == "predict":  # the checkpoint's classes name the predictions
            facts.update(saved_labels(saved))
        else:
            max_epochs = cfg.trainer.get("max_epochs") if cfg.stage == "fit" else None
            for note in checkpoint_notes(
                saved, cfg.ckpt_path, facts.get("label_names"), max_epochs
            ):
                log.warning(note)
    module = instantiate(cfg.module, "module", **from_data(cfg.module, facts))
    callbacks = [instantiate(c, f"callbacks.{k}") for k, c in (cfg.callbacks or {}).items() if c]
    callbacks.append(CtrlCStops())
    if cfg.trainer.get("enable_progress_bar") is False:  # the switch a user reaches for first
        from lightning.pytorch.callbacks import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [instantiate(c, f"logger.{k}") for k, c in (cfg.logger or {}).items() if c]
    if not loggers:  # logger=none: the learning rate has nowhere to go (Lightning would raise)
        from lightning.pytorch.callbacks import LearningRateMonitor

        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(output_dir),
        plugins=[SafeCheckpointIO()],
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        if cfg.stage == "fit" and cfg.trainer.get(key) == 0:
            log.warning("trainer.%s=0: nothing is trained; the model stays as it was loaded", key)
    metrics: dict[str, float] = {}
    try:
        with job_environment(cfg), restore_errors(cfg.ckpt_path):
            if cfg.stage == "fit":
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
                metrics.update(scalars(trainer.callback_metrics))
                if cfg.test_after_fit:
                    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
                    if best:  # the final metrics mix it with the last epoch's: say which
                        log.info("testing %s", tested(trainer.checkpoint_callback))
                    trainer.test(module, datamodule=datamodule, ckpt_path=best)
            elif cfg.stage == "test":
                trainer.test(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            else:
                trainer.predict(
                    module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, return_predictions=False
                )
            metrics.update(scalars(trainer.callback_metrics))
            written = output_dir / "predictions.jsonl"  # Lightning logs nothing while predicting
            if cfg.stage == "predict" and written.is_file() and "predict/samples" not in metrics:
                metrics["predict/samples"] = float(len(written.read_text().splitlines()))
    except SIGTERMException:
        raise SystemExit(143) from None  # Lightning's SIGTERM exit would otherwise report success
    finally:
        finish_loggers(trainer.loggers)

    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        print_summary(output_dir, metrics)
    return metrics


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, logged by config key, with our own errors unwrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    log.info("instantiating %s <%s>", key, node.get("_target_"))
    try:
        return hydra_instantiate(node, _convert_="object", **kwargs)
    except InstantiationException as e:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, (UserError, MisconfigurationException)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, UserError):
            raise cause from None
        if cause is not None:  # Lightning rejecting a combination of settings
            raise UserError(f"{key}: {cause}") from None
        raise


def command_overrides() -> list[str] | None:
    """This run's command-line overrides; None outside a Hydra run (a DDP rank, a test)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def tested(checkpoint: Any) -> str:
    """`best-020.ckpt (the best val/acc: 0.9861)`: the checkpoint the test after fit scores."""
    name = Path(checkpoint.best_model_path).name
    if checkpoint.monitor is None or checkpoint.best_model_score is None:
        return f"{name} (the last epoch)"
    return f"{name} (the best {checkpoint.monitor}: {float(checkpoint.best_model_score):.4f})"


def from_data(module_cfg: DictConfig, facts: dict[str, Any]) -> dict[str, Any]:
    """Facts of the data (`num_labels`, `label_names`, ...) for module keys the config leaves null."""
    return {k: v for k, v in facts.items() if k in module_cfg and module_cfg[k] is None}


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def finish_loggers(loggers: list[Any]) -> None:
    """End each W&B run, so the next job of a multirun logs into a run of its own."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()


def print_summary(output_dir: Path, metrics: dict[str, float]) -> None:
    width = max((len(k) for k in metrics), default=0)
    # 4 decimals, but a learning rate of 2e-5 is not 0.0000
    lines = [
        f"  {k:<{width}}  {v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"  {k:<{width}}  {v:.2e}"
        for k, v in sorted(metrics.items())
    ]
    text = "\n".join([f"run folder: {output_dir}", "final metrics:", *lines])
    print(f"\n{text}", flush=True)
    log_to_files(log, text)
