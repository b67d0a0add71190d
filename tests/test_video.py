"""Video: clip sampling, seek-decoding, bad files, the video datamodule, VideoMAE end to end."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from hotcv_train import video_io
from hotcv_train.errors import UserError
from hotcv_train.run import run
from tests.conftest import compose_config, newest_run, train_py
from tests.tiny.video import (
    CLASSES,
    NUM_FRAMES,
    NUM_TEST,
    pretrain_overrides,
    tiny_videos,
    video_overrides,
)

# --- which frames --------------------------------------------------------------------------------


def test_clip_indices_stride_and_short_videos_repeat_the_last_frame() -> None:
    assert video_io.clip_indices(3, 4, 2, 100) == [3, 5, 7, 9]
    assert video_io.clip_indices(0, 5, 3, 7) == [0, 3, 6, 6, 6]  # 7 frames: the last repeats
    assert video_io.clip_indices(0, 3, 1, 1) == [0, 0, 0]
    assert video_io.clip_span(8, 2) == 15


def test_random_clips_stay_inside_and_cover_every_start() -> None:
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        clip = video_io.random_clip(20, 4, 3, 0, rng)  # span 10: starts 0..10
        assert np.diff(clip).tolist() == [3, 3, 3]
        starts.add(clip[0])
    assert starts == set(range(11))
    short = video_io.random_clip(5, 4, 3, 0, rng)
    assert short == [0, 3, 4, 4]
    for _ in range(100):  # jitter moves frames, keeps them in order and inside the video
        clip = video_io.random_clip(20, 4, 3, 1, rng)
        assert clip == sorted(clip) and clip[0] >= 0 and clip[-1] <= 19


def test_uniform_clips_are_evenly_spaced_from_first_to_last_frame() -> None:
    assert video_io.uniform_clips(30, 4, 2, 3) == [[0, 2, 4, 6], [12, 14, 16, 18], [23, 25, 27, 29]]
    assert video_io.uniform_clips(30, 4, 2, 1) == [[11, 13, 15, 17]]  # centred
    assert video_io.uniform_clips(5, 4, 2, 2) == [[0, 2, 4, 4], [0, 2, 4, 4]]


# --- reading -------------------------------------------------------------------------------------


def counter_frames(n: int, size: int = 32) -> np.ndarray:
    """Frame i is flat grey at brightness 2i: which frame was read shows in its mean."""
    return (
        np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 2, size, 1)
        .repeat(size, 2)
        .repeat(3, 3)
    )


@pytest.mark.parametrize(
    ("suffix", "codec", "fps"),
    [(".mp4", "libx264", 25), (".avi", "mpeg4", 30000 / 1001), (".webm", "libvpx", 7.5)],
)
def test_seeking_reads_the_same_frames_as_decoding_everything(
    tmp_path: Path, suffix: str, codec: str, fps: float
) -> None:
    path = video_io.write_video(tmp_path / f"v{suffix}", counter_frames(90), fps, codec, 10)
    everything = video_io.read_all_frames(path)
    assert len(everything) == 90
    clips = [[0, 1, 2], [37, 41, 45, 49], [80, 85, 89], [11], [89, 89]]
    info, read = video_io.read_clips(path, lambda info: clips)
    assert info.num_frames == 90 and info.fps == pytest.approx(fps, rel=1e-3)
    for indices, frames in zip(clips, read):
        np.testing.assert_array_equal(frames, everything[indices])
        assert frames.mean(axis=(1, 2, 3)) == pytest.approx([2 * i for i in indices], abs=2)


# A codec each container holds, to write a clip in it; every accepted suffix must be listed.
CODECS = {".webm": "libvpx", ".mpg": "mpeg1video", ".mpeg": "mpeg2video", ".wmv": "wmv2"}
CODECS |= {".flv": "flv", ".ts": "mpeg2video", ".mts": "mpeg2video", ".m2ts": "mpeg2video"}


@pytest.mark.parametrize("suffix", video_io.VIDEO_SUFFIXES)
def test_every_accepted_suffix_is_a_container_pyav_reads(tmp_path: Path, suffix: str) -> None:
    frames = counter_frames(24, size=64)
    path = video_io.write_video(tmp_path / f"v{suffix}", frames, 25, CODECS.get(suffix, "mpeg4"), 6)
    info, (clip,) = video_io.read_clips(path, lambda info: [[0, 8, info.num_frames - 1]])
    assert info.num_frames >= 18  # MPEG-PS headers estimate the duration, a few frames short
    np.testing.assert_array_equal(clip, video_io.read_all_frames(path)[[0, 8, info.num_frames - 1]])


def test_a_header_without_a_usable_duration_counts_the_packets(tmp_path: Path) -> None:
    path = video_io.write_video(tmp_path / "tiny.mpg", counter_frames(24), 25, "mpeg1video", 6)
    container, stream = video_io.open_video(path)
    assert round(float(stream.duration * stream.time_base) * 25) == 0  # a 2 KB MPEG-PS file
    assert video_io.probe(container, stream).num_frames == 24
    container.close()


def write_timed(path: Path, frames: np.ndarray, seconds: list[float], audio: bool) -> Path:
    """Frames shown at the given times (a variable frame rate), optionally with an audio track."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width = stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if audio:
            sound = container.add_stream("aac", rate=16000)
        for array, t in zip(frames, seconds):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio:
            samples = np.zeros((1, 16000), dtype=np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for packet in [*sound.encode(chunk), *sound.encode()]:
                container.mux(packet)
    return path


def test_variable_frame_rate_gives_the_frame_on_screen_and_audio_is_ignored(
    tmp_path: Path,
) -> None:
    # 20 frames: the first 10 at 10 fps, then 10 at 40 fps (0.0 .. 0.9 s, then 1.0 .. 1.225 s).
    seconds = [i / 10 for i in range(10)] + [1 + i / 40 for i in range(10)]
    path = write_timed(tmp_path / "vfr.mkv", counter_frames(20), seconds, audio=True)
    container, stream = video_io.open_video(path)
    info = video_io.probe(container, stream)
    container.close()
    indices = [0, 4, 31, 33, 36]  # at 30 fps: 0 s, 0.13 s, then inside the 40 fps stretch
    _, (clip,) = video_io.read_clips(path, lambda info: [indices])
    shown = []
    for index in indices:
        t = info.start + index / info.fps
        shown.append(max(i for i, s in enumerate(seconds) if s <= t + 0.5 / info.fps))
    assert shown == [0, 1, 12, 14, 18]
    np.testing.assert_array_equal(clip, video_io.read_all_frames(path)[shown])


def test_bad_files_raise_a_video_error(tmp_path: Path) -> None:
    good = video_io.write_video(tmp_path / "good.mp4", counter_frames(60), 25, "libx264", 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    for path in (empty, garbage, truncated):
        with pytest.raises(video_io.VideoError):
            video_io.read_clips(path, lambda info: [[0, 20, 50]])


# --- the datamodule ------------------------------------------------------------------------------


def test_motion_augmentations_relabel_the_clip(make_config, tiny_dir: Path) -> None:
    from hydra.utils import instantiate

    cfg = make_config(
        "task=videomae_ucf101",
        *video_overrides(tiny_dir),
        "dataset.hflip=1.0",
        "dataset.vflip=0.0",
        "dataset.time_reverse=0.0",
        "dataset.crop_scale=[1.0,1.0]",
        "dataset.relabel={hflip: {left: right, right: left}}",
    )
    dm = instantiate(cfg.dataset, _convert_="object")
    dm.setup("fit")
    assert dm.module_kwargs() == {"num_labels": 4, "label_names": sorted(CLASSES)}
    train = dm.dataset("train")
    names = dm.label_names
    for item_index, item in enumerate(train.items[:8]):
        sample = train[item_index]
        flipped = {"left": "right", "right": "left"}.get(item.label, item.label)
        assert names[int(sample["labels"])] == flipped, item.id
        assert sample["pixel_values"].shape == (NUM_FRAMES, 3, 32, 32)
    evaluation = dm.dataset("val")[0]
    assert evaluation["pixel_values"].shape == (2, NUM_FRAMES, 3, 32, 32)  # eval_clips=2


def test_a_folder_of_class_folders_is_carved_with_a_fixed_seed(make_config, tiny_dir, tmp_path):
    from hydra.utils import instantiate

    pooled = tmp_path / "pooled"
    shutil.copytree(tiny_videos(tiny_dir / "videos") / "train", pooled)
    cfg = make_config("task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={pooled}")
    carves = []
    for _ in range(2):
        dm = instantiate(cfg.dataset, _convert_="object")
        dm.setup("fit")
        carves.append({role: [i.id for i in items] for role, items in dm.splits.items()})
    assert carves[0] == carves[1]
    assert {len(v) for v in carves[0].values()} == {16, 4}  # 24 videos: 4 val, 4 test, 16 train
    assert not set(carves[0]["train"]) & set(carves[0]["test"])


def test_a_csv_list_is_a_source(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    videos = tiny_videos(tiny_dir / "videos")
    rows = ["path,label"] + [
        f"{p},{p.parent.name}" for p in sorted((videos / "train").rglob("*.avi"))
    ]
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(rows))
    cfg = make_config("task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={listing}")
    dm = instantiate(cfg.dataset, _convert_="object")
    dm.setup("fit")
    assert sum(len(v) for v in dm.splits.values()) == 24
    assert dm.label_names == sorted(CLASSES)


def test_a_folder_without_videos_is_one_line(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    (empty / "train" / "left").mkdir(parents=True)
    cfg = make_config("task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={empty}")
    with pytest.raises(UserError) as raised:
        run(cfg)
    (problem,) = raised.value.problems
    suffixes = ", ".join(video_io.VIDEO_SUFFIXES)
    assert problem.startswith(f"dataset.path: no videos ({suffixes}) in {empty}")


def set_up(make_config, tiny_dir: Path, path: Path, stage: str = "fit"):
    """The video datamodule of `task=videomae_ucf101` on `path`, set up for `stage`."""
    from hydra.utils import instantiate

    cfg = make_config("task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={path}")
    dm = instantiate(cfg.dataset, _convert_="object")
    dm.setup(stage)
    return dm


def messages(caplog: pytest.LogCaptureFixture, level: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hotcv_train.datamodules.video" and r.levelname == level
    ]


def test_mov_videos_are_read_and_files_left_out_are_named(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pooled = tmp_path / "pooled"
    shutil.copytree(tiny_videos(tiny_dir / "videos") / "train", pooled)  # 4 classes of 6 .avi
    for i in range(4):  # an iPhone's class: .mov only, upper-case suffix
        video_io.write_video(pooled / "phone" / f"IMG_{i}.MOV", counter_frames(12), 30, "mpeg4", 6)
    (pooled / "left" / "notes.txt").write_text("filmed in March")  # notes and hidden files: fine
    (pooled / "left" / ".DS_Store").write_bytes(b"\0")
    (pooled / "spin").mkdir()
    for i in range(3):  # a container nobody asked PyAV to read: the class is gone, and said so
        (pooled / "spin" / f"clip{i}.ogv").write_bytes(b"OggS")
    with caplog.at_level("INFO"):
        dm = set_up(make_config, tiny_dir, pooled)
    assert dm.label_names == sorted([*CLASSES, "phone"])
    phone = [i for i, item in enumerate(dm.splits["train"]) if item.label == "phone"]
    assert len(phone) == 2  # 4 videos: 1 val, 1 test, 2 train
    assert dm.dataset("train")[phone[0]]["pixel_values"].shape == (NUM_FRAMES, 3, 32, 32)
    (warning,) = messages(caplog, "WARNING")
    assert warning.startswith(
        f"dataset.path: left out 3 file(s) under {pooled} that are not videos (.ogv 3; first: "
        f"{pooled / 'spin' / 'clip0.ogv'}); class folder(s) ['spin'] have no videos left; "
    )


def test_typescript_beside_ts_videos_is_left_out_by_its_first_bytes(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`.ts` is a broadcast capture's suffix and TypeScript's: a transport stream is a video,
    a source file (even directly in the folder, where a video would be unlabelled) is left out
    with one warning naming it."""
    pooled = tmp_path / "pooled"
    shutil.copytree(tiny_videos(tiny_dir / "videos") / "train", pooled)  # 4 classes of 6 .avi
    captures = [
        video_io.write_video(pooled / "up" / f"cap{i}.ts", counter_frames(12), 25, "mpeg2video", 6)
        for i in range(3)
    ]
    (pooled / "index.ts").write_text('import { play } from "./player";\nplay();\n')
    (pooled / "left" / "player.ts").write_text("export function play(): void {}\n" * 40)
    with caplog.at_level("INFO"):
        dm = set_up(make_config, tiny_dir, pooled)
    paths = {Path(item.path) for items in dm.splits.values() for item in items}
    assert set(captures) <= paths and len(paths) == 24 + 3
    assert messages(caplog, "WARNING") == [
        f"dataset.path: left out 2 .ts file(s) under {pooled} that are not MPEG transport "
        f"stream videos (TypeScript?; first: {pooled / 'index.ts'})"
    ]
    from hotcv_train.datamodules.video import is_transport_stream

    (pooled / "cut.ts").write_bytes(captures[0].read_bytes()[100:])  # a capture cut mid-packet
    assert is_transport_stream(pooled / "cut.ts")


@pytest.mark.parametrize("name", ["valid", "validation"])
def test_a_valid_folder_is_the_val_split_and_sizes_are_logged(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(tiny_videos(tiny_dir / "videos"), videos)
    (videos / "val").rename(videos / name)  # Roboflow's / Kaggle's / HF's name
    shutil.copytree(videos / "test" / "up", videos / "extra" / "up")  # in no split folder
    extra = sorted((videos / "extra").rglob("*.avi"))
    with caplog.at_level("INFO"):
        dm = set_up(make_config, tiny_dir, videos)
    assert {i.id.split("/")[0] for i in dm.splits["val"]} == {name}
    assert {role: len(items) for role, items in dm.splits.items()} == {
        "train": 24,
        "val": 8,
        "test": NUM_TEST,
    }
    assert f"data from {videos}: train 24, val 8 ({name}/), test {NUM_TEST} (split_seed=" in (
        " ".join(messages(caplog, "INFO"))
    )
    (warning,) = messages(caplog, "WARNING")
    assert warning.startswith(
        f"dataset.path: left out {len(extra)} video(s) under {videos} outside the split folders "
        f"train/, {name}/, test/ (first: {extra[0]})"
    )


def test_predict_takes_one_video_file(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    video = sorted((tiny_videos(tiny_dir / "videos") / "test").rglob("*.avi"))[0]
    cfg = make_config(
        "task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={video}", "stage=predict"
    )
    run(cfg)
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [video.stem]


@pytest.mark.parametrize(
    ("name", "stage", "problem"),
    [
        ("notes.txt", "predict", "is neither a video (.avi, "),
        ("list.csv", "fit", "is not a CSV list (binary, not text); give a CSV with a "),
        ("clip.avi", "fit", "is one video; training and testing need a folder of class folders"),
    ],
)
def test_a_file_that_is_not_a_list_is_one_line(
    make_config, tiny_dir: Path, tmp_path: Path, name: str, stage: str, problem: str
) -> None:
    file = tmp_path / name
    shutil.copy(sorted((tiny_videos(tiny_dir / "videos") / "test").rglob("*.avi"))[0], file)
    cfg = make_config(
        "task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={file}", f"stage={stage}"
    )
    with pytest.raises(UserError) as raised:
        run(cfg)
    (line,) = raised.value.problems
    assert line.startswith(f"dataset.path: {file} {problem}")


def test_a_list_without_labels_or_with_missing_files_names_the_fix(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    videos = sorted((tiny_videos(tiny_dir / "videos") / "train").rglob("*.avi"))
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(["path,class"] + [f"{v},{v.parent.name}" for v in videos]))
    with pytest.raises(UserError) as raised:
        set_up(make_config, tiny_dir, listing)
    assert raised.value.problems == [
        f"dataset.path: {listing} has no 'label' column (columns: path, class); name the class "
        "column label, or set dataset.with_labels=false for unlabelled videos"
    ]

    rows = [f"{v},{v.parent.name}" for v in videos]
    rows[1] = "clips/gone.avi,left"  # line 3: the header is line 1
    rows[5] = f"{videos[5]},"  # line 7: no label
    listing.write_text("\n".join(["path,label", *rows]))
    with pytest.raises(UserError) as raised:
        set_up(make_config, tiny_dir, listing)
    assert raised.value.problems == [
        f"dataset.path: {listing} line 3: no video file 'clips/gone.avi' "
        f"({tmp_path / 'clips' / 'gone.avi'})",
        f"dataset.path: {listing} line 7: {videos[5]} has no label",
    ]


def test_num_frames_other_than_the_model_fails_naming_both(make_config, tiny_dir, tmp_path):
    cfg = make_config("task=videomae_ucf101", *video_overrides(tiny_dir), "dataset.num_frames=6")
    with pytest.raises(UserError) as raised:
        run(cfg)
    assert raised.value.problems == [
        f"dataset.num_frames: is 6 but the model (videomae) takes clips of {NUM_FRAMES} frames; "
        f"set dataset.num_frames={NUM_FRAMES}"
    ]
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training began


# --- end to end ----------------------------------------------------------------------------------


def test_fit_test_plots_and_resume(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    base = ["task=videomae_ucf101", *video_overrides(tiny_dir)]
    metrics = run(make_config(*base, "trainer.max_epochs=1"))
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "metrics.json").read_text()) == pytest.approx(metrics)
    assert metrics["test/samples"] == NUM_TEST  # one prediction per video, not per clip
    assert metrics["test/skipped"] == 0
    for key in ("test/acc", "test/acc_top4", "val/acc", "train/loss"):
        assert key in metrics, key
    for plot in ("training_curves.png", "confusion_matrix.png", "test_samples.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 1000, plot

    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = tmp_path / "resumed"
    run(compose_config(resumed, *base, "trainer.max_epochs=2", f"ckpt_path={last}"))
    state = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1
    assert state["global_step"] == 2 * torch.load(last, weights_only=True)["global_step"]


def test_bad_videos_are_skipped_named_and_counted(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    videos = tmp_path / "videos"
    shutil.copytree(tiny_videos(tiny_dir / "videos"), videos)
    bad = videos / "test" / "up" / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    (videos / "test" / "down" / "empty.mp4").write_bytes(b"")
    cfg = make_config(
        "task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={videos}", "stage=test"
    )
    with caplog.at_level("WARNING"):
        metrics = run(cfg)  # no checkpoint: the model as loaded is scored
    assert metrics["test/samples"] == NUM_TEST
    assert metrics["test/skipped"] == 2
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"skipping test video {bad}" in warned and "empty.mp4" in warned


def test_predict_writes_one_line_per_video(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    flat = tmp_path / "clips"
    for i, video in enumerate(sorted((tiny_videos(tiny_dir / "videos") / "test").rglob("*.avi"))):
        flat.mkdir(exist_ok=True)
        shutil.copy(video, flat / f"clip{i}.avi")
    cfg = make_config(
        "task=videomae_ucf101", *video_overrides(tiny_dir), f"dataset.path={flat}", "stage=predict"
    )
    run(cfg)
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == sorted(f"clip{i}" for i in range(NUM_TEST))
    for record in records:
        assert len(record["labels"]) == len(record["scores"]) == 4  # top-5 of 4 classes
        assert record["scores"] == sorted(record["scores"], reverse=True)
        assert sum(record["scores"]) == pytest.approx(1, abs=1e-4)


def test_ddp_two_ranks_count_each_video_once(tiny_dir: Path, tmp_path: Path) -> None:
    """The model as loaded, tested on 1 and on 2 ranks: same videos, same accuracy and loss."""
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        done = train_py(
            "task=videomae_ucf101",
            f"trainer={trainer}",
            "stage=test",
            *video_overrides(tiny_dir),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = newest_run(tmp_path, "videomae_ucf101")
        results[trainer] = json.loads((out / "metrics.json").read_text())
    assert results["ddp_cpu"]["test/samples"] == NUM_TEST
    for key in ("test/acc", "test/loss", "test/samples"):
        assert results["ddp_cpu"][key] == pytest.approx(results["cpu"][key], abs=1e-5), key


# --- masked pretraining ---------------------------------------------------------------------------


def test_masked_pretraining_learns_and_its_model_finetunes(make_config, tiny_dir, tmp_path):
    base = ["task=videomae_pretrain", *pretrain_overrides(tiny_dir)]
    untrained = run(compose_config(tmp_path / "before", *base, "stage=test"))
    trained = run(
        make_config(
            *base,
            "trainer.max_epochs=6",
            "module.optimizer.lr=3e-3",
        )
    )
    assert trained["test/loss"] < 0.3 * untrained["test/loss"], (untrained, trained)
    run_dir = tmp_path / "run"
    assert (run_dir / "plots" / "masking.png").stat().st_size > 1000
    pretrained = run_dir / "pretrained"
    assert (pretrained / "config.json").exists()

    finetuned = run(
        compose_config(
            tmp_path / "finetune",
            "task=videomae_ucf101",
            *video_overrides(tiny_dir),
            f"module.model.name_or_path={pretrained}",
            "debug=limit",
        )
    )
    assert finetuned["test/samples"] > 0


def test_tube_mask_hides_the_same_patches_in_every_frame() -> None:
    from transformers import VideoMAEConfig

    from hotcv_train.modules.masked_video import patchify, tube_mask, unpatchify

    config = VideoMAEConfig(image_size=32, patch_size=8, num_frames=8, tubelet_size=2)
    mask = tube_mask(3, config, 0.75)
    assert mask.shape == (3, 4 * 16)
    per_tube = mask.view(3, 4, 16)
    assert (per_tube == per_tube[:, :1]).all() and (per_tube.sum(-1) == 12).all()
    video = torch.randn(2, 8, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(video, 2, 8), video.shape, 2, 8), video)
