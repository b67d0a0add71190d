"""Video classification data: folders (or lists) of video files, read as clips in DataLoader workers.

Sources, by `dataset.path`:
- a hub dataset id: the archive `dataset.name` of that dataset repo (UCF101's subset ships one
  `UCF101_subset.tar.gz`) is downloaded and extracted once into the Hugging Face cache;
- a folder of split folders (`train/`, `val/` or `valid/` or `validation/`, `test/`) of class
  folders of videos;
- one folder of class folders (validation and test are carved per class with `split_seed`);
- a CSV or JSON list of `path,label` rows (paths relative to the list), carved the same way;
- for `stage=predict`, one video file.
Videos directly in a folder, outside class folders, are unlabelled: masked pretraining and
`stage=predict` take them (predict takes every video under `dataset.path`). Files that are not
videos (`VIDEO_SUFFIXES`) are left out with one warning naming them, so no class vanishes unseen;
so are `.ts` files that are not MPEG transport streams (TypeScript sources), by their first bytes.

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
from collections import Counter
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
from hotcv_train.datamodules.base import VAL_SPLITS, HFDataModule, collate_counting
from hotcv_train.datamodules.preprocessing import Preprocessing, resolve_preprocessing
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors
from hotcv_train.video_io import VIDEO_SUFFIXES, VideoError, random_clip, read_clips, uniform_clips

log = logging.getLogger(__name__)

MOTION_AUGMENTATIONS = ("hflip", "vflip", "time_reverse")
LIST_SUFFIXES = (".csv", ".json", ".jsonl")
# Files that live beside videos (notes, lists, subtitles, thumbnail caches): not left-out videos.
NOTES = (".txt", ".md", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".log")
SIDECAR_SUFFIXES = frozenset((*NOTES, ".srt", ".vtt", ".nfo", ".ini", ".db"))
MAX_LISTED = 10  # bad rows of a list named one by one; the rest counted
# MPEG transport stream packets: 188 bytes, 192 with a timecode (BDAV), 204 with error correction;
# each starts with the sync byte 0x47 ("G").
TS_PACKET_SIZES = (188, 192, 204)


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


def scan(folder: Path) -> tuple[list[Path], list[Path]]:
    """Video files under `folder`, recursively and in a stable order, and the files left out.

    Hidden files and folders (macOS `._clip.mp4` forks, `.ipynb_checkpoints`) and files expected
    beside videos (notes, lists, subtitles) are not counted as left out: the count is there to
    show a class lost to a container nobody told us about, not to nag about a readme.
    """
    videos, others, scripts = [], [], []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        suffix = path.suffix.lower()
        if suffix == ".ts" and path.is_file() and not is_transport_stream(path):
            scripts.append(path)  # TypeScript's suffix too: code beside videos, not a video
        elif (suffix in VIDEO_SUFFIXES or suffix not in SIDECAR_SUFFIXES) and path.is_file():
            (videos if suffix in VIDEO_SUFFIXES else others).append(path)
    if scripts:
        log.warning(
            "dataset.path: left out %d .ts file(s) under %s that are not MPEG transport stream "
            "videos (TypeScript?; first: %s)",
            len(scripts),
            folder,
            scripts[0],
        )
    return videos, others


def is_transport_stream(path: Path) -> bool:
    """Whether a `.ts` file starts like an MPEG transport stream: three packets' sync bytes in a
    row, from any of the first packet's bytes (a capture may start mid-packet). Reads 1 KB."""
    try:
        with path.open("rb") as f:
            head = f.read(4 * max(TS_PACKET_SIZES))
    except OSError:
        return True  # unreadable: reading it as a video names the problem
    return any(head[start::size][:3] == b"GGG" for size in TS_PACKET_SIZES for start in range(size))


def class_folders(files: list[Path], containers: list[Path]) -> set[Path]:
    """The class folders (subfolders of one of `containers`) that hold some of `files`."""
    return {
        folder / path.relative_to(folder).parts[0]
        for path in files
        for folder in containers
        if path.is_relative_to(folder) and len(path.relative_to(folder).parts) > 1
    }


def folder_items(videos: list[Path], folder: Path, root: Path) -> list[VideoItem]:
    """`videos` under `folder`: labelled by their class folder, unlabelled when directly in it."""
    items = []
    for video in videos:
        if not video.is_relative_to(folder):
            continue
        parts = video.relative_to(folder).parts
        label = parts[0] if len(parts) > 1 else None
        items.append(
            VideoItem(str(video), label, video.relative_to(root).with_suffix("").as_posix())
        )
    return items


def read_list(file: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    """`(where, row)` pairs of a CSV, JSON or JSON-lines list (`where`: its line or item) and the
    columns it has; a file that is not such a list is a `UserError`."""
    kind = {".csv": "CSV", ".jsonl": "JSON lines"}.get(file.suffix.lower(), "JSON")
    fix = 'give a CSV with a "path,label" header, or JSON [{"path": ..., "label": ...}]'
    try:
        text = file.read_text()
        if kind == "CSV":
            reader = csv.DictReader(text.splitlines())
            rows = [(f"line {reader.line_num}", row) for row in reader]
            return rows, [c for c in reader.fieldnames or [] if c]
        if kind == "JSON lines":
            lines = enumerate(text.splitlines(), 1)
            rows = [(f"line {n}", json.loads(line)) for n, line in lines if line.strip()]
        else:
            listed = json.loads(text)
            rows = [(f"item {n}", row) for n, row in enumerate(listed)]
            if not isinstance(listed, list):
                raise ValueError("not a list")
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        reason = "binary, not text" if isinstance(e, UnicodeDecodeError) else e
        raise UserError(f"dataset.path: {file} is not a {kind} list ({reason}); {fix}") from None
    if any(not isinstance(row, dict) for _, row in rows):
        raise UserError(f"dataset.path: {file} must hold one object per video; {fix}")
    return rows, list(dict.fromkeys(key for _, row in rows for key in row))


def list_items(file: Path, labelled: bool) -> list[VideoItem]:
    """Rows of a CSV (`path,label` header) or JSON list (`[{"path", "label"}]`, or JSON lines).

    Paths are relative to the list's folder. A listed file that does not exist, or (`labelled`) a
    row without a label, stops the run at setup naming its row: a typo in a list is not a video
    to skip while training.
    """
    rows, columns = read_list(file)
    have = f"(columns: {', '.join(columns) or 'none'})"
    problems = []
    if rows and "path" not in columns:
        problems.append(
            f"dataset.path: {file} has no 'path' column {have}; name the video column path"
        )
    if rows and labelled and "label" not in columns:
        problems.append(
            f"dataset.path: {file} has no 'label' column {have}; name the class column label, "
            "or set dataset.with_labels=false for unlabelled videos"
        )
    if problems:
        raise UserError(*problems)
    items = []
    for where, row in rows:
        listed = str(row.get("path") or "")
        path = file.parent / Path(listed).expanduser()
        label = None if row.get("label") in (None, "") else str(row["label"])
        if not listed or not path.is_file():
            problems.append(f"dataset.path: {file} {where}: no video file {listed!r} ({path})")
        elif labelled and label is None:
            problems.append(f"dataset.path: {file} {where}: {listed} has no label")
        else:
            items.append(VideoItem(str(path), label, listed))
    if len(problems) > MAX_LISTED:
        more = len(problems) - MAX_LISTED
        problems = [*problems[:MAX_LISTED], f"dataset.path: ... and {more} more such row(s)"]
    if problems:
        raise UserError(*problems)
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
            if root.is_file():
                items = self._file_items(root, labelled=False, one_video=True)
            else:
                items = folder_items(self._scan(root, [root]), root, root)
            if not items:
                raise UserError(self._no_videos(root))
            log.info("data from %s: predict %d", self.source, len(items))
            return {"predict": items}
        splits, origins = self._split_items(root)
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
        sizes = ", ".join(
            f"{role} {len(splits[role])}" + (f" ({origins[role]})" if role in origins else "")
            for role in ("train", "val", "test")
            if role in splits
        )
        log.info("data from %s: %s (split_seed=%d)", self.source, sizes, self.split_seed)
        return splits

    def _no_videos(self, root: Path) -> str:
        return (
            f"dataset.path: no videos ({', '.join(VIDEO_SUFFIXES)}) in {root}; expected "
            "split folders of class folders of videos, class folders of videos, or a CSV/JSON list"
        )

    def _file_items(self, file: Path, labelled: bool, one_video: bool) -> list[VideoItem]:
        """A file source: a CSV/JSON list, or (`one_video`: predict) a single video."""
        suffix = file.suffix.lower()
        if suffix in LIST_SUFFIXES:
            return list_items(file, labelled)
        if suffix in VIDEO_SUFFIXES and one_video:
            return [VideoItem(str(file), None, file.stem)]
        if suffix in VIDEO_SUFFIXES:
            raise UserError(
                f"dataset.path: {file} is one video; training and testing need a folder of class "
                "folders of videos or a .csv/.json list (stage=predict takes one video)"
            )
        raise UserError(
            f"dataset.path: {file} is neither a video ({', '.join(VIDEO_SUFFIXES)}) nor a "
            ".csv/.json list; point it at one of those or at a folder of videos"
        )

    def _scan(self, root: Path, containers: list[Path]) -> list[Path]:
        """Videos under `root`; warns once about the files left out and the classes they empty.

        `containers` are the folders whose subfolders are classes (split folders, or `root`).
        """
        videos, others = scan(root)
        if others:
            suffixes = Counter(path.suffix.lower() or "no suffix" for path in others)
            emptied = class_folders(others, containers) - class_folders(videos, containers)
            lost = ""
            if emptied:
                names = sorted(folder.relative_to(root).as_posix() for folder in emptied)
                lost = f"; class folder(s) {names} have no videos left"
            log.warning(
                "dataset.path: left out %d file(s) under %s that are not videos (%s; first: %s)%s; "
                "videos are %s: convert the others (e.g. ffmpeg -i in.xyz out.mp4) to use them",
                len(others),
                root,
                ", ".join(f"{suffix} {n}" for suffix, n in sorted(suffixes.items())),
                others[0],
                lost,
                ", ".join(VIDEO_SUFFIXES),
            )
        return videos

    def _split_folder(self, root: Path, role: str) -> Path | None:
        """The folder of split `role`: its configured name, or for val any of `VAL_SPLITS`."""
        name = self.split_names[role]
        if name is None:
            return None
        names = [name] + ([n for n in VAL_SPLITS if n != name] if name in VAL_SPLITS else [])
        return next((root / n for n in names if (root / n).is_dir()), None)

    def _split_items(self, root: Path) -> tuple[dict[str, list[VideoItem]], dict[str, str]]:
        """Items per split, and where each split that is not a configured folder came from."""
        all_roles = ("val", "test")
        if root.is_file():
            items = self._file_items(root, self.with_labels, one_video=False)
            return self._carve(items, all_roles)
        folders = {role: self._split_folder(root, role) for role in self.split_names}
        if folders["train"] is None:  # one folder of class folders
            return self._carve(folder_items(self._scan(root, [root]), root, root), all_roles)
        found = {role: folder for role, folder in folders.items() if folder is not None}
        videos = self._scan(root, list(found.values()))
        splits = {role: folder_items(videos, folder, root) for role, folder in found.items()}
        origins = {
            role: f"{folder.name}/"
            for role, folder in found.items()
            if folder.name != self.split_names[role]
        }
        outside = [v for v in videos if not any(v.is_relative_to(f) for f in found.values())]
        if outside:
            log.warning(
                "dataset.path: left out %d video(s) under %s outside the split folders %s "
                "(first: %s); move them into one, or name their folder in dataset.*_split",
                len(outside),
                root,
                ", ".join(f"{f.name}/" for f in found.values()),
                outside[0],
            )
        missing = [r for r in all_roles if self.split_names[r] is None or not splits.get(r)]
        carved, carved_origins = self._carve(splits["train"], missing)  # no split folder
        return {**splits, **carved}, {**origins, **carved_origins}

    def _carve(
        self, items: list[VideoItem], roles: tuple[str, ...] | list[str]
    ) -> tuple[dict[str, list[VideoItem]], dict[str, str]]:
        fractions = {role: self.fractions[role] for role in roles}
        return carve(items, fractions, self.split_seed), dict.fromkeys(roles, "carved from train")

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
