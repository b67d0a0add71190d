"""Video classification data: folders (or lists) of video files, read as clips in DataLoader workers.

Sources, by `dataset.path`:
- a hub dataset id: the archive `dataset.name` of that dataset repo (UCF101's subset ships one
  `UCF101_subset.tar.gz`) is downloaded and extracted once into the Hugging Face cache;
- a folder of split folders (`train/`, `val/`, `test/`) of class folders of videos;
- one folder of class folders (validation and test are carved per class with `split_seed`);
- a CSV or JSON list of `path,label` rows (paths relative to the list), carved the same way.
Videos directly in a folder, outside class folders, are unlabelled: masked pretraining and
`stage=predict` take them (predict takes every video under `dataset.path`).

Training reads one random clip per video; validation and test read `eval_clips` evenly spaced
clips per video, which the module scores as one prediction for the video.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from hotcv_train.checks import Count, HubOrPath, NonNegative, Probability, looks_local
from hotcv_train.datamodules.base import HFDataModule, collate_counting
from hotcv_train.datamodules.preprocessing import Preprocessing, resolve_preprocessing
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors
from hotcv_train.video_io import VIDEO_SUFFIXES, VideoError, random_clip, read_clips, uniform_clips

log = logging.getLogger(__name__)

MOTION_AUGMENTATIONS = ("hflip", "vflip", "time_reverse")
LIST_SUFFIXES = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class VideoItem:
    """One video: its file, class name (None: unlabelled) and id (relative path, no suffix)."""

    path: str
    label: str | None
    id: str


# --- sources ---------------------------------------------------------------------------------------


def fetch_archive(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Download `filename` of hub dataset `repo_id` and extract it once; the extracted folder.

    Extraction goes to a temporary folder renamed into place, so ranks starting together never see
    half an archive, and uses tarfile's `data` filter (no absolute paths, links out or devices).
    """
    from huggingface_hub import hf_hub_download

    with hub_errors(repo_id, "dataset.path", repo_type="dataset"):
        archive = hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision)
        archive = Path(archive).resolve()
    target = archive.parent.parent / "extracted" / archive.name
    if not target.is_dir():
        tmp = target.with_name(f"{archive.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("extracting %s (%s) into %s", filename, repo_id, target)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(target)
        except OSError:  # another rank finished first
            shutil.rmtree(tmp, ignore_errors=True)
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def find_videos(folder: Path) -> list[Path]:
    """Video files under `folder`, recursively, in a stable order."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
    )


def folder_items(folder: Path, root: Path) -> list[VideoItem]:
    """Videos under `folder`: labelled by their class folder, unlabelled when directly in it."""
    items = []
    for video in find_videos(folder):
        parts = video.relative_to(folder).parts
        label = parts[0] if len(parts) > 1 else None
        items.append(
            VideoItem(str(video), label, video.relative_to(root).with_suffix("").as_posix())
        )
    return items


def list_items(file: Path) -> list[VideoItem]:
    """Rows of a CSV (`path,label` header) or JSON list (`[{"path", "label"}]`, or JSON lines)."""
    text = file.read_text()
    if file.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif file.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = json.loads(text)
    if not isinstance(rows, list) or any(not isinstance(r, dict) or "path" not in r for r in rows):
        raise UserError(f"dataset.path: {file} must list rows with a 'path' (and 'label') field")
    items = []
    for row in rows:
        path = (file.parent / row["path"]).expanduser()
        label = row.get("label")
        items.append(
            VideoItem(str(path), None if label in (None, "") else str(label), str(row["path"]))
        )
    return items


def carve(
    items: list[VideoItem], fractions: dict[str, float], seed: int
) -> dict[str, list[VideoItem]]:
    """Split `items` into train and the roles in `fractions`, per class, with a fixed seed."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[VideoItem]] = {"train": [], **{role: [] for role in fractions}}
    by_class: dict[str | None, list[VideoItem]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    for label in sorted(by_class, key=str):
        group = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        for role, fraction in fractions.items():
            take = max(1, round(fraction * len(group))) if len(group) > 2 else 0
            out[role] += group[:take]
            group = group[take:]
        out["train"] += group
    return {role: sorted(rows, key=lambda r: r.id) for role, rows in out.items()}


# --- samples ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSampling:
    """Which frames a sample reads: one random clip (train) or `num_clips` uniform clips (eval)."""

    num_frames: int
    sample_rate: int
    jitter: int
    num_clips: int | None  # None: one random training clip

    def __call__(self, info: Any) -> list[list[int]]:
        total = info.num_frames
        if self.num_clips is None:
            rng = np.random.default_rng(int(torch.randint(2**31, ())))
            return [random_clip(total, self.num_frames, self.sample_rate, self.jitter, rng)]
        return uniform_clips(total, self.num_frames, self.sample_rate, self.num_clips)


def video_sample(
    item: VideoItem,
    sampling: ClipSampling,
    transform: Callable,
    label_index: dict[str, int],
    motion: dict[str, tuple[float, list[int] | None]],
    split: str,
) -> dict | None:
    """Read and transform one video's clip(s); None (with a warning naming it) if it is bad.

    `motion` maps each motion-changing augmentation to (probability, new label of each label).
    """
    try:
        _, clips = read_clips(item.path, sampling)
    except VideoError as e:
        log.warning("skipping %s video %s: %s", split, item.path, e)
        return None
    label = label_index.get(item.label, -1) if item.label is not None else -1
    videos = []
    for frames in clips:
        video = transform(tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2)))
        videos.append(video.as_subclass(torch.Tensor))
    if sampling.num_clips is None:  # training: one clip, motion augmentations relabel it
        (video,) = videos
        for name, (probability, relabel) in motion.items():
            if probability > 0 and float(torch.rand(())) < probability:
                video = video.flip(0 if name == "time_reverse" else -1 if name == "hflip" else -2)
                if relabel is not None and label >= 0:
                    label = relabel[label]
        return {"pixel_values": video, "labels": torch.tensor(label), "id": item.id}
    return {"pixel_values": torch.stack(videos), "labels": torch.tensor(label), "id": item.id}


def collate_clips(samples: list[dict | None]) -> dict:
    """Stack clips into `pixel_values` (B, T, C, H, W), or (B, clips, T, C, H, W) with `views`.

    Undecodable videos arrive as None and are counted in `skipped` (`collate_counting`).
    """
    batch = collate_counting(samples)
    if "pixel_values" in batch and batch["pixel_values"].ndim == 6:  # clips scored as one
        batch["views"] = batch["pixel_values"].shape[1]
    return batch


class VideoDataset(Dataset):
    """Video items made into samples in DataLoader workers (one file open per sample)."""

    def __init__(self, items: list[VideoItem], to_sample: Callable[[VideoItem], dict | None]):
        self.items, self.to_sample = items, to_sample

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict | None:
        return self.to_sample(self.items[index])


# --- the datamodule --------------------------------------------------------------------------------


class VideoClassificationDataModule(HFDataModule):
    """Clips of labelled videos, decoded by seeking (PyAV) and augmented alike on every frame.

    Args:
        num_frames: Frames per clip; must equal the model's `num_frames` (16 for VideoMAE).
        sample_rate: Stride between a clip's frames, in video frames.
        temporal_jitter: Training only: each clip frame moves by up to this many frames.
        eval_clips: Evenly spaced clips per video in validation/test, scored as one prediction.
        with_labels: False for unlabelled videos (masked pretraining): no class folders needed.
        processor: Where mean/std/size come from (the model's name_or_path).
        image_size: Frame size override (int or [h, w]); null reads it from `processor`.
        image_mean: Normalization mean override; null reads it from `processor`.
        image_std: Normalization std override; null reads it from `processor`.
        crop_scale: Area range of the training RandomResizedCrop (same crop on every frame).
        hflip: Probability of mirroring a training clip left-right.
        vflip: Probability of flipping a training clip upside down.
        time_reverse: Probability of playing a training clip backwards.
        relabel: For each of hflip, vflip, time_reverse: old class -> class after it (the motion
            changed); classes not listed keep their label. Null: flips never change a label.
        **kwargs: The source and loader settings of `HFDataModule`; `name` is the archive file
            of a hub dataset repo.
    """

    def __init__(
        self,
        num_frames: Count,
        sample_rate: Count,
        temporal_jitter: NonNegative,
        eval_clips: Count,
        with_labels: bool,
        processor: HubOrPath | None,
        image_size: int | list[int] | None,
        image_mean: list[float] | None,
        image_std: list[float] | None,
        crop_scale: list[float],
        hflip: Probability,
        vflip: Probability,
        time_reverse: Probability,
        relabel: dict[str, dict[str, str]] | None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        for key, value in (("num_frames", num_frames), ("sample_rate", sample_rate)):
            if value < 1:
                raise UserError(f"dataset.{key}: must be at least 1, got {value}")
        if eval_clips < 1:
            raise UserError(f"dataset.eval_clips: must be at least 1, got {eval_clips}")
        relabel = relabel or {}
        unknown = sorted(set(relabel) - set(MOTION_AUGMENTATIONS))
        if unknown:
            raise UserError(
                f"dataset.relabel: unknown augmentation(s) {unknown}; "
                f"use {', '.join(MOTION_AUGMENTATIONS)}"
            )
        self.num_frames, self.sample_rate = num_frames, sample_rate
        self.temporal_jitter, self.eval_clips = temporal_jitter, eval_clips
        self.with_labels = with_labels
        self.processor = processor
        self.overrides = (image_size, image_mean, image_std)
        self.crop_scale = tuple(crop_scale)
        self.motion_probability = {"hflip": hflip, "vflip": vflip, "time_reverse": time_reverse}
        self.relabel = {k: dict(v) for k, v in relabel.items()}
        self.preprocessing: Preprocessing | None = None
        self.label_names: list[str] = []
        self.stage: str | None = None

    def setup(self, stage: str | None = None) -> None:
        self.stage = self.stage or stage
        super().setup(stage)
        if self.preprocessing is None:
            self.preprocessing = resolve_preprocessing(self.processor, *self.overrides)

    def module_kwargs(self) -> dict[str, Any]:
        if not self.label_names:
            return {}
        return {"num_labels": len(self.label_names), "label_names": list(self.label_names)}

    def _root(self) -> Path:
        if self.generator is not None:
            return Path(self.generator())
        if self.path is None:
            raise UserError("dataset.path: null needs dataset.generator to make the videos")
        if not looks_local(self.path):
            if not self.name:
                raise UserError(
                    f"dataset.name: the archive to fetch from hub dataset {self.path!r}, e.g. "
                    "UCF101_subset.tar.gz"
                )
            return fetch_archive(self.path, self.name, self.revision)
        root = Path(self.path).expanduser()
        if not root.exists():
            raise UserError(f"dataset.path: no such file or folder: {self.path}")
        return root

    def _load_splits(self) -> dict[str, Any]:
        root = self._root()
        if self.stage == "predict":  # every video, labelled or not
            items = list_items(root) if root.is_file() else folder_items(root, root)
            if not items:
                raise UserError(self._no_videos(root))
            return {"predict": items}
        splits = self._split_items(root)
        if not any(splits.values()):
            raise UserError(self._no_videos(root))
        if self.with_labels:
            self._label_classes(splits, root)
        problems = [
            f"dataset.{role}_split: no videos for {role} in {root}"
            for role, items in splits.items()
            if not items
        ]
        if problems:
            raise UserError(*problems)
        return splits

    def _no_videos(self, root: Path) -> str:
        return (
            f"dataset.path: no videos ({', '.join(VIDEO_SUFFIXES)}) in {root}; expected "
            "split folders of class folders of videos, class folders of videos, or a CSV/JSON list"
        )

    def _split_items(self, root: Path) -> dict[str, list[VideoItem]]:
        if root.is_file():
            if root.suffix.lower() not in LIST_SUFFIXES:
                raise UserError(
                    f"dataset.path: {root} is a file; give a folder or a .csv/.json list"
                )
            return carve(list_items(root), dict(self.fractions), self.split_seed)
        named = {role: name for role, name in self.split_names.items() if name is not None}
        if (root / named.get("train", "train")).is_dir():
            splits = {}
            for role, name in named.items():
                folder = root / name
                splits[role] = folder_items(folder, root) if folder.is_dir() else []
            missing = {r: self.fractions[r] for r in ("val", "test") if not splits.get(r)}
            if missing:  # no such split folder: carve it from train
                splits.update(carve(splits["train"], missing, self.split_seed))
            return splits
        return carve(folder_items(root, root), dict(self.fractions), self.split_seed)

    def _label_classes(self, splits: dict[str, list[VideoItem]], root: Path) -> None:
        unlabelled = [i for items in splits.values() for i in items if i.label is None]
        if unlabelled:
            raise UserError(
                f"dataset.path: {len(unlabelled)} video(s) in {root} are not in class folders "
                f"(first: {unlabelled[0].path}); put each class's videos in a folder named after "
                "it, or set dataset.with_labels=false for unlabelled videos"
            )
        self.label_names = sorted({i.label for i in splits["train"]})
        extra = sorted({i.label for items in splits.values() for i in items} - {*self.label_names})
        if extra:
            raise UserError(
                f"dataset.path: class(es) {extra} of {root} have no training videos; "
                "every class needs some"
            )
        problems = []
        for name, mapping in self.relabel.items():
            unknown = sorted((set(mapping) | set(mapping.values())) - set(self.label_names))
            if unknown:
                problems.append(
                    f"dataset.relabel.{name}: {unknown} are not classes of {root} "
                    f"({', '.join(self.label_names)})"
                )
        if problems:
            raise UserError(*problems)

    def dataset(self, role: str) -> Dataset:
        assert self.splits is not None, "call setup() first"
        items = self.splits.get(role)
        if items is None:
            raise UserError(f"dataset.{role}_split: {self.source} has no {role} split configured")
        return VideoDataset(items, self.to_sample(role))

    def predict_dataloader(self) -> Any:
        return self._loader("predict" if "predict" in (self.splits or {}) else "test")

    def collate_fn(self, split: str) -> Callable[[list], Any]:
        return collate_clips

    def transform(self, split: str) -> v2.Compose:
        """Spatial transforms for `(T, C, H, W)` uint8 clips: one draw of parameters per clip."""
        p = self.preprocessing
        if p is None:
            raise UserError("datamodule used before setup()")
        if split == "train":
            geometry = [v2.RandomResizedCrop(p.size, scale=self.crop_scale, antialias=True)]
        else:
            geometry = [v2.Resize(min(p.size), antialias=True), v2.CenterCrop(p.size)]
        return v2.Compose(
            [*geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(p.mean, p.std)]
        )

    def to_sample(self, split: str) -> Callable[[VideoItem], dict | None]:
        train = split == "train"
        sampling = ClipSampling(
            self.num_frames,
            self.sample_rate,
            self.temporal_jitter if train else 0,
            None if train else self.eval_clips,
        )
        index = {name: i for i, name in enumerate(self.label_names)}
        motion: dict[str, tuple[float, list[int] | None]] = {}
        if train:
            for name, probability in self.motion_probability.items():
                mapping = self.relabel.get(name) or {}
                relabel = [index[mapping.get(n, n)] for n in self.label_names] if mapping else None
                motion[name] = (probability, relabel)
        return partial(
            video_sample,
            sampling=sampling,
            transform=self.transform(split),
            label_index=index,
            motion=motion,
            split=split,
        )
