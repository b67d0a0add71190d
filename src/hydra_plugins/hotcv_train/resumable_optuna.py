"""Hydra's Optuna sweeper, made resumable: `hydra.sweeper._target_` in conf/hparams_search/optuna.yaml.

Re-running a killed Optuna sweep with `hydra.sweep.dir=<its folder>` opens the same study (SQLite
in the sweep folder) and, before Hydra's sweeper asks for trials:
- marks trials left running by the kill as failed, and queues every failed trial's parameters
  again (its job continues from its own checkpoint when it has one; see hotcv_train/sweeps.py);
- counts the trials that ended towards `n_trials`, so the study stops at `n_trials`, not after
  `n_trials` more;
- numbers the new jobs after the study's trials, so no job folder is reused for another trial;
- reseeds the sampler, which would otherwise propose the first sweep's points again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the `sweep` extra is not installed; Hydra scans this module anyway
    OptunaSweeper = None

log = logging.getLogger(__name__)

REQUEUED = "hotcv_requeued"  # study user attr: failed trials whose parameters were queued again


if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """Hydra's `OptunaSweeper` that continues its study instead of starting it over."""

        def sweep(self, arguments: list[str]) -> Any:
            continue_study(self.sweeper)
            return super().sweep(arguments)


def continue_study(impl: Any) -> None:
    """Prepare `impl` (Hydra's OptunaSweeperImpl, after setup) to continue its stored study."""
    import optuna

    if impl.storage is None:
        return
    if str(impl.storage).startswith("sqlite:///"):  # SQLite does not make its folder
        Path(str(impl.storage).removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=impl.study_name,
        storage=impl.storage,
        directions=impl._get_directions(),
        load_if_exists=True,
    )
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return
    impl.job_idx = len(trials)  # job folders so far are numbered below this
    requeued = set(study.user_attrs.get(REQUEUED, []))
    again = []
    for trial in trials:
        if trial.state == optuna.trial.TrialState.RUNNING:  # its sweep was killed
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        elif trial.state != optuna.trial.TrialState.FAIL or trial.number in requeued:
            continue
        study.enqueue_trial(trial.params)
        again.append(trial.number)
    requeued.update(again)
    study.set_user_attr(REQUEUED, sorted(requeued))
    ended = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.number not in requeued
    ]
    impl.n_trials = max(0, impl.n_trials - len(ended))
    if hasattr(impl.sampler, "reseed_rng"):
        impl.sampler.reseed_rng()
    log.info(
        "Continuing study %s: %d trials ended, %d queued again, %d to run",
        impl.study_name,
        len(ended),
        len(again),
        impl.n_trials,
    )
