"""python train.py task=<name> [key=value ...]: compose the config, then hotcv_train.run(cfg).

See README.md for the jobs and config groups; `python train.py --help` lists every option.
"""

import gc
import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from hotcv_train.cli import release_stderr, run_main
from hotcv_train.errors import UserError
from hotcv_train.launch import launched_rank_config

# TensorFlow's C++ INFO lines ("optimized to use available CPU instructions", "Could not find
# cuda drivers"): it is imported by the MAXIM task and by TensorBoard when installed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def import_run():
    """`hotcv_train.run.run`, imported with the garbage collector paused, its objects then frozen.

    torch, lightning and transformers leave ~0.8 M objects that live as long as the process:
    collecting while they load cost ~1 s of start-up on 2 cores, and each full collection
    after (the last one at exit: 2 s) walked them all again. Frozen, no collection visits them.
    """
    if "hotcv_train.run" not in sys.modules:  # once: a later freeze would keep a job's garbage
        gc.disable()
        try:
            import hotcv_train.run  # noqa: F401
        finally:
            gc.freeze()
            gc.enable()
    from hotcv_train.run import run

    return run


def run_reporting_errors(cfg: DictConfig) -> dict[str, float]:
    """Run, turning a `UserError` into its lines on stderr and exit code 2 (no traceback).

    train.log gets the error too (the console's `error:` lines, or the traceback Hydra prints).
    """
    run = import_run()
    try:
        return run(cfg)
    except UserError as e:
        text = "\n".join(f"error: {p}" for p in e.problems)
        print(text, file=sys.stderr)
        log_error(text)
        raise SystemExit(2) from None
    except Exception:
        log_error(f"the run failed:\n{traceback.format_exc()}")
        raise


def log_error(text: str) -> None:
    from hotcv_train.loggers import log_to_files

    log_to_files(logging.getLogger("hotcv_train"), text, level=logging.ERROR)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> object:
    from hotcv_train import sweeps

    release_stderr()  # held while Hydra composed: its command-line errors get explained

    if sweeps.in_multirun():  # a failing job is recorded and the sweep goes on (sweeps.py)
        return sweeps.run_job(cfg, import_run())
    metrics = run_reporting_errors(cfg)
    return metrics.get(cfg.optimized_metric)  # the objective of hyperparameter sweeps


if __name__ == "__main__":
    if (launched := launched_rank_config()) is not None:
        run_reporting_errors(launched)
    else:
        run_main(main, Path(__file__).parent / "conf")
