"""python train.py task=<name> [key=value ...]: compose the config, then hotcv_train.run(cfg).

See README.md for the jobs and config groups; `python train.py --help` lists every option.
"""

import sys

import hydra
from omegaconf import DictConfig

from hotcv_train.errors import UserError
from hotcv_train.launch import launched_rank_config


def run_reporting_errors(cfg: DictConfig) -> dict[str, float]:
    """Run, turning a `UserError` into its lines on stderr and exit code 2 (no traceback)."""
    from hotcv_train.run import run

    try:
        return run(cfg)
    except UserError as e:
        print("\n".join(f"error: {p}" for p in e.problems), file=sys.stderr)
        raise SystemExit(2) from None


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> object:
    from hotcv_train import sweeps

    if sweeps.in_multirun():  # a failing job is recorded and the sweep goes on (sweeps.py)
        from hotcv_train.run import run

        return sweeps.run_job(cfg, run)
    metrics = run_reporting_errors(cfg)
    return metrics.get(cfg.optimized_metric)  # the objective of hyperparameter sweeps


if __name__ == "__main__":
    if (launched := launched_rank_config()) is not None:
        run_reporting_errors(launched)
    else:
        main()
