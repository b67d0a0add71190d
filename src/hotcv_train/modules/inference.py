"""What every eval-only job shares: per-rank outputs, a merged predictions.jsonl, stable seeds."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hotcv_train.errors import UserError

log = logging.getLogger(__name__)


class InferenceModule(L.LightningModule):
    """Runs a pretrained model over inputs in `test` (scored) or `predict` (outputs only) stages.

    Each rank writes the outputs of its own share of the inputs under `<run>/predictions/`, named
    from each input's id (its relative stem), and one JSON line per input to a per-rank file;
    rank 0 merges those into `predictions.jsonl`, sorted by id, once every rank is done.
    Subclasses implement `infer`, and `check_references` where a reference can be unusable.

    Every run counts, summed over ranks, the inputs processed (`test/samples`), those skipped
    as undecodable (`test/skipped`) and, when the data has references, those scored against
    one (`test/scored`); at `stage=predict` the counts go to the log. A run that processed no
    input at all is an error, not an empty success.

    Args:
        seed: Global seed; each input's randomness derives from it and the input's id, so the
            results do not depend on the number of ranks or the batch an input landed in.
    """

    uses_references = True  # False: the job scores without references (they are ignored)

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.scoring = False
        self.counts = {"samples": 0, "skipped": 0, "scored": 0}

    def infer(self, samples: list[dict]) -> list[dict]:
        """Process a batch of `{"id", "image", "reference"}` samples, writing their outputs.

        Returns one record per sample: `{"id", "outputs": [paths], "metrics": {name: value}}`.
        When `self.scoring`, also update (and `self.log`) the aggregate metrics.
        """
        raise NotImplementedError

    @property
    def output_dir(self) -> Path:
        return Path(self.trainer.default_root_dir) / "predictions"

    def output_path(self, sample_id: str, suffix: str) -> Path:
        """`<run>/predictions/<id><suffix>`, with the id's subfolders created."""
        path = self.output_dir / f"{sample_id}{suffix}"
        if not path.resolve().is_relative_to(self.output_dir.resolve()):  # ids are checked earlier
            raise UserError(
                f"dataset: input id {sample_id!r} would write outside {self.output_dir}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.trainer.default_root_dir).as_posix()

    def sample_seed(self, sample_id: str) -> int:
        digest = hashlib.sha256(f"{self.seed}:{sample_id}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def sample_generator(
        self, sample_id: str, device: torch.device | str = "cpu"
    ) -> torch.Generator:
        """A generator seeded from the global seed and `sample_id` alone."""
        return torch.Generator(device=device).manual_seed(self.sample_seed(sample_id))

    @property
    def _rank_file(self) -> Path:
        return self.output_dir / f"predictions.rank{self.global_rank}.jsonl"

    @property
    def has_references(self) -> bool:
        """Whether the data pairs inputs with references this job scores against."""
        datamodule = getattr(self.trainer, "datamodule", None)
        return self.uses_references and getattr(datamodule, "references", None) is not None

    def setup(self, stage: str) -> None:
        if stage == "test" and self.has_references:
            self.check_references(self.trainer.datamodule)

    def check_references(self, datamodule: Any) -> None:
        """Raise `UserError` for references this job cannot score; called once the data is set
        up and before any input is processed, so a bad reference stops the run before anything
        is written (rather than after some outputs, or on one rank only)."""

    def _start(self, scoring: bool) -> None:
        self.scoring = scoring
        self.counts = dict.fromkeys(self.counts, 0)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._rank_file.unlink(missing_ok=True)

    def _step(self, batch: dict) -> None:
        """`batch`: `{"samples": [...], "skipped": n}` (`images.collate_list`)."""
        self.counts["skipped"] += batch["skipped"]
        samples = batch["samples"]
        if not samples:
            return
        records = self.infer(samples)
        self.counts["samples"] += len(records)
        if self.scoring and self.uses_references:
            self.counts["scored"] += sum(s["reference"] is not None for s in samples)
        with self._rank_file.open("a") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def _finish(self, stage: str) -> None:
        """Sum the counts over ranks, log them, stop a run that processed nothing, and merge."""
        local = torch.tensor(list(self.counts.values()), dtype=torch.long, device=self.device)
        total = dict(
            zip(self.counts, self.trainer.strategy.reduce(local, reduce_op="sum").tolist())
        )
        samples, skipped, scored = total["samples"], total["skipped"], total["scored"]
        if samples == 0:  # the same on every rank: all stop together
            raise UserError(
                f"dataset: no input could be processed: all {skipped} were skipped as "
                "undecodable (each is named above); fix or replace those files"
            )
        zero = self.trainer.is_global_zero
        if skipped and zero:
            log.warning("%s: skipped %d undecodable input(s) (named above)", stage, skipped)
        references = self.scoring and self.has_references
        if references and scored == 0 and zero:
            log.warning(
                "dataset.references: none of the %d processed input(s) had a usable reference; "
                "nothing was scored (see the warnings above)",
                samples,
            )
        if stage == "test":
            # Equal on every rank already; sync_dist only keeps Lightning from warning.
            self.log("test/samples", float(samples), sync_dist=True)
            self.log("test/skipped", float(skipped), sync_dist=True)
            if references:
                self.log("test/scored", float(scored), sync_dist=True)
        elif zero:
            log.info("%s: wrote the outputs of %d input(s)", stage, samples)
        merge_rank_predictions(self.trainer, self.output_dir)

    def on_test_epoch_start(self) -> None:
        self._start(scoring=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch)

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def on_predict_epoch_start(self) -> None:
        self._start(scoring=False)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch)

    def on_predict_epoch_end(self) -> None:
        self._finish("predict")

    def configure_optimizers(self) -> Any:
        return None  # eval-only


def merge_rank_predictions(trainer: L.Trainer, folder: Path) -> None:
    """Rank 0 merges every rank's `folder/predictions.rank*.jsonl` into the run folder's
    `predictions.jsonl`, sorted by id, once every rank is done writing."""
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        records = []
        for part in sorted(folder.glob("predictions.rank*.jsonl")):
            records += [json.loads(line) for line in part.read_text().splitlines() if line]
            part.unlink()
        records.sort(key=lambda r: r["id"])
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        (Path(trainer.default_root_dir) / "predictions.jsonl").write_text(lines)
    trainer.strategy.barrier()
