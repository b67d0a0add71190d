"""What every eval-only job shares: per-rank outputs, a merged predictions.jsonl, stable seeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hotcv_train.errors import UserError


class InferenceModule(L.LightningModule):
    """Runs a pretrained model over inputs in `test` (scored) or `predict` (outputs only) stages.

    Each rank writes the outputs of its own share of the inputs under `<run>/predictions/`, named
    from each input's id (its relative stem), and one JSON line per input to a per-rank file;
    rank 0 merges those into `predictions.jsonl`, sorted by id, once every rank is done.
    Subclasses implement `infer`.

    Args:
        seed: Global seed; each input's randomness derives from it and the input's id, so the
            results do not depend on the number of ranks or the batch an input landed in.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.scoring = False

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

    def _start(self, scoring: bool) -> None:
        self.scoring = scoring
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._rank_file.unlink(missing_ok=True)

    def _step(self, batch: list[dict]) -> None:
        if not batch:
            return
        records = self.infer(batch)
        with self._rank_file.open("a") as f:
            for record in records:
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def _merge(self) -> None:
        merge_rank_predictions(self.trainer, self.output_dir)

    def on_test_epoch_start(self) -> None:
        self._start(scoring=True)

    def test_step(self, batch: list[dict], batch_idx: int) -> None:
        self._step(batch)

    def on_test_epoch_end(self) -> None:
        self._merge()

    def on_predict_epoch_start(self) -> None:
        self._start(scoring=False)

    def predict_step(self, batch: list[dict], batch_idx: int) -> None:
        self._step(batch)

    def on_predict_epoch_end(self) -> None:
        self._merge()

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
