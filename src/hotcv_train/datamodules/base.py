"""The data source every datamodule shares: splits from a hub id, a local folder or a generator."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hotcv_train.checks import Count, Fraction, HubOrPath, NonNegative, Workers, looks_local
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors

log = logging.getLogger(__name__)


# What sources call their validation split (an image folder's val/ or valid/ folder is
# `validation`): used when dataset.val_split is null or names a split the source lacks.
VAL_SPLITS = ("validation", "valid", "val", "dev")

# One data file as dataset.path: the packaged builder that reads it.
DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
}


def load_source(
    path: str | None,
    name: str | None,
    generator: Callable[[], Any] | None,
    revision: str | None = None,
    data_dir: str | None = None,
) -> Any:
    """A `datasets.DatasetDict` from a generator, a `save_to_disk` folder, a data folder or the hub."""
    import datasets

    if generator is not None:
        data = generator()
    elif path is not None and looks_local(path):
        folder = Path(path).expanduser()
        if data_dir is not None and folder.is_dir() and not (folder / data_dir).is_dir():
            # A task's default for its hub export (data_dir: default) is not the user's layout.
            log.info(
                "dataset.data_dir=%s: no such subfolder in %s; reading all of it", data_dir, path
            )
            data_dir = None
        if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
            data = datasets.load_from_disk(str(folder))
        elif folder.is_file():  # one data file: its suffix names the builder
            builder = DATA_FILE_BUILDERS.get(folder.suffix.lower())
            if builder is None:
                raise UserError(
                    f"dataset.path: {path} is a file datasets cannot read as data; point it at "
                    f"the folder that holds it, or at a {'/'.join(DATA_FILE_BUILDERS)} file"
                )
            data = datasets.load_dataset(builder, data_files=str(folder))
        else:  # image folder (class subfolders) or data files: the packaged builders infer which
            try:
                data = datasets.load_dataset(str(folder), name, data_dir=data_dir)
            except (FileNotFoundError, ValueError) as e:  # no data files, nothing it can read
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(
                    f"dataset.path: no data that datasets can read in {path} ({reason}); point it "
                    "at a save_to_disk folder, an image folder (a subfolder per class) or data "
                    "files (csv, json, parquet)"
                ) from None
    elif path is not None:
        with hub_errors(path, "dataset.path", repo_type="dataset"):
            data = datasets.load_dataset(path, name, revision=revision, data_dir=data_dir)
    else:
        raise UserError("dataset.path: null needs dataset.generator to make the data")
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({"train": data})
    return data


class RowDataset(Dataset):
    """Rows of an HF dataset turned into tensors by `to_sample`, in DataLoader workers.

    A row whose image cannot be decoded is skipped with a warning naming it (see `collate`).
    With `cache`, each sample is kept once made and handed out again (as a fresh dict): for
    a deterministic `to_sample` on data that fits in memory, later epochs skip the decoding.
    With `ids`, each sample carries its name as `id` (predictions).
    """

    def __init__(
        self,
        rows: Any,
        to_sample: Callable[[dict], dict],
        split: str,
        cache: bool = False,
        ids: Sequence[str | int] | None = None,
    ):
        self.rows, self.to_sample, self.split, self.ids = rows, to_sample, split, ids
        self.cache: dict[int, dict | None] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict | None:
        if self.cache is not None and index in self.cache:
            kept = self.cache[index]
            return None if kept is None else dict(kept)
        try:
            row = self.rows[index]
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated/corrupt files
            where = describe_row(self.rows, index, self.split)
            log.warning("skipping %s: cannot decode it (%s)", where, e)
            row = None
        sample = None if row is None else self.to_sample(row)
        if sample is not None and self.ids is not None:
            sample["id"] = self.ids[index]
        if self.cache is not None:
            self.cache[index] = None if sample is None else dict(sample)
        return sample


def describe_row(rows: Any, index: int, split: str) -> str:
    """The file behind a row, for the user to find and fix: image columns keep their source path
    (image folders); otherwise the split and row number."""
    from datasets import Image

    name = f"{split} row {index}"
    try:
        raw = rows
        for column, feature in rows.features.items():
            if isinstance(feature, Image):
                raw = raw.cast_column(column, Image(decode=False))  # metadata only: no rewrite
        row = raw[index]
        paths = [v["path"] for v in row.values() if isinstance(v, dict) and v.get("path")]
    except Exception:  # naming the file is best effort; the warning must not fail
        paths = []
    return f"{paths[0]} ({name})" if paths else name


def source_name(generator: Any) -> str:
    """A generator's name for messages (`load_digits`), whatever a config put there."""
    return getattr(getattr(generator, "func", generator), "__name__", repr(generator))


def collate(samples: list[dict | None]) -> dict | None:
    """Default collation, minus the samples that could not be decoded."""
    samples = [s for s in samples if s is not None]
    return torch.utils.data.default_collate(samples) if samples else None


def collate_counting(samples: list[dict | None]) -> dict:
    """Default collation of the samples that decoded, plus `skipped`: how many did not (None).

    The module adds `skipped` to `<stage>/skipped`; a batch of only undecodable samples is
    `{"skipped": n}`, which it counts and otherwise passes over.
    """
    good = [s for s in samples if s is not None]
    skipped = torch.tensor(len(samples) - len(good))
    if not good:
        return {"skipped": skipped}
    return {**torch.utils.data.default_collate(good), "skipped": skipped}


def missing_columns(rows: Any, source: str, **columns: str | None) -> list[str]:
    """One problem line per configured column (keyword = its `dataset.` key) that `rows` lacks."""
    have = ", ".join(rows.column_names)
    return [
        f"dataset.{key}: no column {col!r} in {source} (columns: {have})"
        for key, col in columns.items()
        if col is not None and col not in rows.column_names
    ]


def resolve_workers(num_workers: int | str, trainer: Any) -> int:
    """`num_workers`, or for `auto` the CPU cores this process may use shared among the node's
    devices, at most 8 (more rarely helps and each worker holds a copy of the transforms)."""
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = max(1, getattr(trainer, "num_devices", 1) or 1)
    return max(0, min(8, (cores or 1) // devices))


def shard_sampler(dataset: Dataset) -> Any:
    """Under DDP, every world_size-th sample for this rank, unpadded; None on one process.

    Padding (the DistributedSampler default) would score or write the last samples twice.
    Lightning leaves a loader that already has a DistributedSampler alone.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    if len(dataset) < dist.get_world_size():
        # A rank with nothing to do would wait forever in the end-of-epoch metric sync.
        raise UserError(
            f"trainer.devices: {len(dataset)} sample(s) cannot be shared by "
            f"{dist.get_world_size()} ranks; use at most {len(dataset)} devices"
        )
    return UnrepeatedDistributedSampler(dataset, shuffle=False)


def training_position(trainer: Any) -> tuple[int, int]:
    """Where the fit loop goes on from: the epoch, and how many of its batches are trained.

    Read live as each epoch's batches start, and saved with each checkpoint for the resumed run
    (`HFDataModule.state_dict`). Mid-epoch, a batch counts once `processed` (its optimizer step
    done): a restored loop goes on after those batches, and so must the data. Once an epoch's
    last batch is trained, the loop moves on to the next epoch.
    """
    loop = trainer.fit_loop
    epochs, batches = loop.epoch_progress.current, loop.epoch_loop.batch_progress
    if epochs.started == epochs.processed:  # between epochs
        return epochs.processed, 0
    if batches.is_last_batch and batches.current.processed == batches.current.ready:
        return epochs.processed + 1, 0
    return epochs.processed, batches.current.processed


class EpochSampler(DistributedSampler):
    """This rank's share of epoch e's order, each index with the seed its sample is made under.

    Everything random in epoch e is a function of (seed, e): the order, each sample's
    augmentations (whichever worker makes it, persistent or not) and, reseeded as the epoch's
    batches start, the model's own randomness (dropout). So a run resumed from a checkpoint at an
    epoch boundary repeats the uninterrupted run exactly, and one resumed mid-epoch trains the
    samples of that epoch it had not trained yet. Under DDP every rank takes its own slice of the
    same order (padded by repeats, as DistributedSampler does, so ranks step together); Lightning
    leaves a DistributedSampler in place.

    Args:
        position: Returns (epoch, batches of it already trained) when an epoch's batches start.
    """

    def __init__(
        self,
        dataset: Dataset,
        seed: int,
        batch_size: int,
        position: Callable[[], tuple[int, int]],
    ):
        dist = torch.distributed
        ddp = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if ddp else 1,
            rank=dist.get_rank() if ddp else 0,
            shuffle=True,
            seed=seed,
        )
        self.batch_size, self.position = batch_size, position

    def __iter__(self) -> Any:
        epoch, done = self.position()
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.dataset))
        seeds = rng.integers(2**63, size=len(self.dataset))
        torch.manual_seed(int(rng.integers(2**63)))
        mine = np.resize(order, self.total_size)[self.rank :: self.num_replicas]
        return iter([(int(i), int(seeds[i])) for i in mine[done * self.batch_size :]])


class Reseeded(Dataset):
    """`dataset`, each sample made under the seed that comes with its index (`EpochSampler`).

    Augmentations draw from torch's RNG (torchvision's do); the caller's RNG is left as it was.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        if isinstance(key, int):  # a plain sampler Lightning put in (`overfit_batches`)
            return self.dataset[key]
        index, seed = key
        # The CPU generator alone: torch.manual_seed also seeds every accelerator backend, ~4 ms
        # a call with a CUDA build, more than making the sample.
        cpu = torch.default_generator
        state = cpu.get_state()
        cpu.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            cpu.set_state(state)


class HFDataModule(L.LightningDataModule):
    """Loads and checks the splits once; shards val/test/predict across ranks without padding.

    Training draws each epoch's order and augmentations from (seed, epoch) (`EpochSampler`) and
    keeps where it is in its checkpoints, so a resumed run goes on where it stopped.

    Subclasses say which columns they need (`check`) and how a row becomes tensors (`to_sample`).

    Args:
        path: Hub dataset id, `save_to_disk` folder, or data/image folder. Null with `generator`.
        name: Hub dataset config name, if the dataset has several.
        generator: Callable returning a DatasetDict (built-in and synthetic data).
        revision: Hub branch, tag or commit (e.g. `refs/convert/parquet`, the hub's parquet
            export of datasets that ship a loading script, which datasets 5 refuses).
        data_dir: Subfolder of the source to read (e.g. one config's folder of that export).
        train_split: Split to train on.
        val_split: Split to validate on; null carves `val_fraction` of train with `split_seed`.
        test_split: Split to test on; null carves `test_fraction` of train. A source with only a
            train split (a folder of class folders) gets both carved whatever their names.
        val_fraction: Fraction of train held out for validation when it is carved.
        test_fraction: Fraction of train held out for testing when it is carved.
        split_seed: Seed of those carves (fixed, so every rank and every run agree).
        batch_size: Per-device training batch size.
        eval_batch_size: Per-device batch size for val/test/predict.
        num_workers: DataLoader worker processes per device; `auto`: this process's CPU cores
            shared among the devices of this node, at most 8.
    """

    def __init__(
        self,
        path: HubOrPath | None,
        name: str | None,
        generator: Callable[[], Any] | None,
        revision: str | None,
        data_dir: str | None,
        train_split: str,
        val_split: str | None,
        test_split: str | None,
        val_fraction: Fraction,
        test_fraction: Fraction,
        split_seed: NonNegative,
        seed: NonNegative,
        batch_size: Count,
        eval_batch_size: Count,
        num_workers: Workers | Literal["auto"],
    ):
        super().__init__()
        if path is not None and generator is not None:
            raise UserError(
                f"dataset.generator: {source_name(generator)} makes the "
                f"data, so dataset.path={path} is unused; add dataset.generator=null to read "
                "dataset.path"
            )
        self.path, self.name, self.generator = path, name, generator
        self.revision, self.data_dir = revision, data_dir
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed, self.seed = split_seed, seed
        self.resume_at: tuple[int, int] | None = None
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )
        self.splits: dict[str, Any] | None = None
        self.predict_ids: list[str] | None = None  # names of a `predict` split's rows

    @property
    def source(self) -> str:
        return self.path or source_name(self.generator)

    def prepare(self, data: Any) -> Any:
        """The whole source (every split) as loaded, before splits are picked and carved: where
        what must agree across splits is decided (e.g. class ids of string labels)."""
        return data

    def adapt(self, rows: Any) -> Any:
        """A split as loaded, brought to the configured schema (e.g. renamed columns)."""
        return rows

    def check(self, rows: Any, split: str) -> list[str]:
        """Problems with a split's columns or values, one line each (subclasses extend)."""
        return []

    def to_sample(self, split: str) -> Callable[[dict], dict]:
        """The function that turns one row of `split` into a dict of tensors."""
        raise NotImplementedError

    def cached(self, split: str) -> bool:
        """Whether `split`'s samples are kept in memory once made (`RowDataset`)."""
        return False

    def collate_fn(self, split: str) -> Callable[[list], Any]:
        """How `split`'s samples become a batch: a picklable function (DataLoader workers).

        The default stacks equal-shaped tensors; detection (boxes per image) or video overrides it.
        Undecodable samples arrive as None and must be dropped.
        """
        return collate

    def module_kwargs(self) -> dict[str, Any]:
        """Facts the module needs from the data (after setup), e.g. `num_labels`, `label_names`.

        `run.py` passes each one whose key the module config leaves null.
        """
        return {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self._load_splits()

    def _load_splits(self) -> dict[str, Any]:
        data = self.prepare(
            load_source(self.path, self.name, self.generator, self.revision, self.data_dir)
        )
        available = ", ".join(data)
        train = self.split_names["train"]
        if train not in data:
            raise UserError(
                f"dataset.train_split: no split {train!r} in {self.source} (it has: {available}); "
                "set dataset.train_split to one of them"
            )
        splits, carve, problems = {"train": data[train]}, [], []
        for role in ("test", "val"):  # test first: its carve must not depend on val_fraction
            split = self.split_names[role]
            if role == "val" and split not in data:  # the source's own validation split, if any
                taken = {train, self.split_names["test"]}
                found = next((n for n in VAL_SPLITS if n in data and n not in taken), None)
                if found is not None:
                    log.info(
                        "dataset.val_split: validating on the %r split of %s", found, self.source
                    )
                    split = found
            if split is not None and split in data:
                splits[role] = data[split]
            elif split is None or list(data) == [train]:  # a folder of class folders has only train
                carve.append(role)
            else:
                problems.append(
                    f"dataset.{role}_split: no split {split!r} in {self.source} (it has: "
                    f"{available}); set dataset.{role}_split to one of them, or null to carve "
                    f"dataset.{role}_fraction of train"
                )
        if problems:
            raise UserError(*problems)
        for role in carve:
            fraction = self.fractions[role]
            if not 0 < fraction < 1:
                raise UserError(
                    f"dataset.{role}_fraction: must be in (0, 1) to carve {role} from train, "
                    f"got {fraction}"
                )
            if len(splits["train"]) < 2:
                raise UserError(
                    f"dataset.train_split: {len(splits['train'])} sample(s) in {self.source} "
                    f"cannot be split into train and {role}; add data or set dataset.{role}_split"
                )
            parts = splits["train"].train_test_split(test_size=fraction, seed=self.split_seed)
            splits["train"], splits[role] = parts["train"], parts["test"]
        for role, rows in splits.items():
            splits[role] = rows = self.adapt(rows)
            if len(rows) == 0:
                problems.append(f"dataset.{role}_split: split of {self.source} is empty")
            else:
                problems.extend(self.check(rows, role))
        if problems:
            raise UserError(*dict.fromkeys(problems))
        sizes = ", ".join(
            f"{role} {len(splits[role])}" + (" (carved from train)" if role in carve else "")
            for role in ("train", "val", "test")
        )
        log.info("data from %s: %s (split_seed=%d)", self.source, sizes, self.split_seed)
        return splits

    def dataset(self, role: str) -> Dataset:
        """The torch dataset behind `role` (train, val, test or predict).

        Predict takes a `predict` split where a subclass made one (files named by
        `predict_ids`), else the test split, its rows named by their numbers.
        """
        assert self.splits is not None, "call setup() first"
        split = "test" if role == "predict" and "predict" not in self.splits else role
        rows = self.splits.get(split)
        if rows is None:
            raise UserError(f"dataset.{split}_split: {self.source} has no {split} split configured")
        ids = None
        if role == "predict":
            ids = self.predict_ids if split == "predict" else range(len(rows))
            if split == "test":
                log.info(
                    "predicting the test split of %s: %d rows, named by number",
                    self.source,
                    len(rows),
                )
        return RowDataset(rows, self.to_sample(role), role, cache=self.cached(role), ids=ids)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def state_dict(self) -> dict[str, Any]:
        """Where training goes on from (`training_position`), saved in each checkpoint, with the
        batches' shape that counts it (per-device batch size, devices)."""
        if self.trainer is None:
            return {}
        return {
            "train_position": list(training_position(self.trainer)),
            "batch_size": self.batch_size,
            "world_size": self.trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train_position" not in state_dict:
            return
        self.resume_at = tuple(state_dict["train_position"])
        # Mid-epoch, the trained part of the epoch is a count of batches: of another size (or
        # split over other devices) it would skip samples, or train some twice.
        now = {"batch_size": self.batch_size, "world_size": getattr(self.trainer, "world_size", 1)}
        changed = [k for k, v in now.items() if state_dict.get(k, v) != v]
        if self.resume_at[1] and changed:
            saved = ", ".join(f"{k} {state_dict[k]}" for k in changed)
            raise UserError(
                f"ckpt_path: saved mid-epoch (epoch {self.resume_at[0] + 1}, batch "
                f"{self.resume_at[1]}) with {saved}, not {', '.join(f'{now[k]}' for k in changed)}: "
                "resume with the same dataset.batch_size and trainer.devices, or from an "
                "end-of-epoch checkpoint (last.ckpt) to change them"
            )

    def train_position(self) -> tuple[int, int]:
        """Where the train loader's next epoch starts: a restored checkpoint's position, once,
        then the fit loop's. Lightning may make a resumed run's first train iterator (workers
        prefetching from it) before it restores the loop, when a scheduler asks for
        `estimated_stepping_batches`; the datamodule's state is restored before that."""
        if self.resume_at is not None:
            position, self.resume_at = self.resume_at, None
            return position
        return training_position(self.trainer) if self.trainer is not None else (0, 0)

    def workers(self) -> int:
        """DataLoader processes per device (`num_workers`, resolving `auto`)."""
        return resolve_workers(self.num_workers, getattr(self, "trainer", None))

    def _loader(self, role: str) -> DataLoader:
        dataset = self.dataset(role)
        train = role == "train"
        if train:
            sampler = EpochSampler(dataset, self.seed, self.batch_size, self.train_position)
            dataset = Reseeded(dataset)
        else:
            sampler = shard_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=(workers := self.workers()),
            collate_fn=self.collate_fn(role),
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )
