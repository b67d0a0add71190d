"""Clips from video files with PyAV: which frames a clip takes, and reading only those frames.

A clip is `num_frames` frame indices `sample_rate` apart. Indices count frames at the stream's
average rate and are turned into times with the stream's own time base, so any fps works, and a
variable-frame-rate video gives the frame on screen at each time. Reading seeks to the keyframe
before a clip's first frame and decodes forward until its last one: only the frames a clip needs
are converted to RGB, and never the whole video. A video shorter than a clip repeats its last
frame. PyAV (`pip install -e '.[video]'`) is imported when a video is first read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Containers PyAV's bundled FFmpeg reads (tests/test_video.py writes and reads each): phones write
# .mov/.3gp, camcorders .mts/.m2ts, broadcast captures .ts, older tools .mpg/.wmv/.flv.
VIDEO_SUFFIXES = (
    ".avi",
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".3gp",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
    ".mts",
    ".m2ts",
)


class VideoError(ValueError):
    """A video that cannot give a clip: undecodable, without frames, or truncated."""


@dataclass(frozen=True)
class VideoInfo:
    """What clip sampling needs to know about a video stream."""

    num_frames: int  # frames at the average rate (exact for constant rate, else an estimate)
    fps: float  # average frames per second
    start: float  # time of the first frame, in seconds


# --- which frames ---------------------------------------------------------------------------------


def clip_span(num_frames: int, sample_rate: int) -> int:
    """How many consecutive video frames one clip covers."""
    return (num_frames - 1) * sample_rate + 1


def clip_indices(start: int, num_frames: int, sample_rate: int, total: int) -> list[int]:
    """`num_frames` indices from `start`, `sample_rate` apart; past the end, the last frame."""
    last = max(total - 1, 0)
    return [min(start + k * sample_rate, last) for k in range(num_frames)]


def random_clip(
    total: int, num_frames: int, sample_rate: int, jitter: int, rng: np.random.Generator
) -> list[int]:
    """A training clip: a uniformly random start, each index then moved by up to ±`jitter` frames.

    Jittered indices stay inside the video and in order, so the clip still plays forwards.
    """
    start = int(rng.integers(0, max(total - clip_span(num_frames, sample_rate), 0) + 1))
    indices = np.array(clip_indices(start, num_frames, sample_rate, total))
    if jitter > 0:
        indices = indices + rng.integers(-jitter, jitter + 1, size=len(indices))
        indices = np.sort(np.clip(indices, 0, max(total - 1, 0)))
    return indices.tolist()


def uniform_clips(total: int, num_frames: int, sample_rate: int, num_clips: int) -> list[list[int]]:
    """`num_clips` evaluation clips with evenly spaced starts, first and last frames included."""
    room = max(total - clip_span(num_frames, sample_rate), 0)
    starts = np.linspace(0, room, num_clips).round().astype(int) if num_clips > 1 else [room // 2]
    return [clip_indices(int(s), num_frames, sample_rate, total) for s in starts]


# --- reading ---------------------------------------------------------------------------------------


def _av():
    import av

    av.logging.set_level(av.logging.PANIC)  # we report bad files ourselves, once, by name
    return av


_reformatter = None


def to_rgb(frame) -> np.ndarray:
    """A decoded frame as `(H, W, 3)` uint8 RGB.

    One reformatter per process keeps its scaler context between frames: `frame.to_ndarray`
    builds a new one per call, which costs more than decoding the frame for small videos.
    """
    global _reformatter
    if _reformatter is None:
        from av.video.reformatter import VideoReformatter

        _reformatter = VideoReformatter()
    return _reformatter.reformat(frame, format="rgb24").to_ndarray()


def _errors() -> tuple[type[BaseException], ...]:
    av = _av()
    return (av.FFmpegError, OSError, ValueError, EOFError, IndexError)


def open_video(path: str | Path):
    """`(container, video stream)`; raises `VideoError` when there is no decodable video stream."""
    av = _av()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except _errors() as e:
        raise VideoError(f"cannot open it ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError("it has no video stream")
    return container, container.streams.video[0]


def probe(container, stream) -> VideoInfo:
    """Frame count, rate and start time from the container's header (no frame is decoded).

    Without a frame count or a duration there, the stream's packets are counted (read, not decoded).
    """
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoError("it has no frame rate")
    fps = float(rate)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    total = int(stream.frames or 0)
    if total <= 0:  # Matroska/WebM headers carry a duration, not a frame count
        if stream.duration is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            seconds = 0.0
        total = round(seconds * fps)
    if (
        total <= 0
    ):  # no usable duration either (MPEG-PS guesses it from the bit rate): count packets
        total = sum(1 for packet in container.demux(stream) if packet.size)
    if total <= 0:
        raise VideoError("it has no frames")
    return VideoInfo(num_frames=total, fps=fps, start=start)


def read_clips(
    path: str | Path, choose: Callable[[VideoInfo], Sequence[Sequence[int]]]
) -> tuple[VideoInfo, list[np.ndarray]]:
    """Open `path` once and read the clips `choose(info)` picks (lists of frame indices).

    Returns the video's `VideoInfo` and one uint8 `(T, H, W, 3)` array per clip.
    """
    container, stream = open_video(path)
    try:
        info = probe(container, stream)
        frames = [_read(container, stream, info, list(c)) for c in choose(info)]
    except VideoError:
        raise
    except _errors() as e:
        raise VideoError(f"cannot decode it ({type(e).__name__}: {e})") from None
    finally:
        container.close()
    return info, frames


def _read(container, stream, info: VideoInfo, indices: list[int]) -> np.ndarray:
    """The frames on screen at `indices`' times: seek before the first, decode up to the last."""
    times = [info.start + i / info.fps for i in indices]
    tolerance = 0.5 / info.fps  # a frame belongs to the index whose time it is nearest to
    first = min(times)
    picked = _decode_forward(container, stream, sorted(set(times)), tolerance, seek_to=first)
    if picked is None:  # the seek landed after the clip (imprecise index): start from the top
        picked = _decode_forward(container, stream, sorted(set(times)), tolerance, seek_to=None)
    if picked is None:
        raise VideoError("it has no decodable frames")
    return np.stack([picked[t] for t in times])


def _decode_forward(container, stream, times, tolerance, seek_to):
    """Map each of `times` (sorted) to the RGB frame on screen then; None if the seek overshot."""
    if seek_to is None:
        container.seek(0)
    else:
        container.seek(
            max(int(seek_to / stream.time_base), 0), stream=stream, backward=True, any_frame=False
        )
    picked: dict[float, np.ndarray] = {}
    previous, previous_rgb, previous_time, k = None, None, -math.inf, 0
    step = 1 / float(stream.average_rate or stream.guessed_rate or 30)
    for frame in container.decode(stream):
        t = float(frame.pts * stream.time_base) if frame.pts is not None else previous_time + step
        while k < len(times) and t > times[k] + tolerance:
            if previous is None:
                return None  # the first decoded frame is already past the clip's first time
            if previous_rgb is None:
                previous_rgb = to_rgb(previous)
            picked[times[k]] = previous_rgb
            k += 1
        if k == len(times):
            return picked
        previous, previous_rgb, previous_time = frame, None, t
    if previous is None:
        return None
    # The stream ended: later times get the last frame (a short video) unless the header promised
    # frames that are not there (a truncated file).
    missing = [t for t in times[k:] if t > previous_time + 2 * step]
    expected_end = stream.duration is not None and float(stream.duration * stream.time_base)
    if missing and expected_end and previous_time + 2 * step < expected_end:
        raise VideoError(
            f"it is truncated: frames stop at {previous_time:.2f}s of {expected_end:.2f}s"
        )
    rgb = to_rgb(previous)
    for t in times[k:]:
        picked[t] = rgb
    return picked


def read_all_frames(path: str | Path) -> np.ndarray:
    """Every frame of `path`, decoded and converted: `(N, H, W, 3)` uint8 (tests, benchmarks)."""
    container, stream = open_video(path)
    try:
        frames = [to_rgb(f) for f in container.decode(stream)]
    except _errors() as e:
        raise VideoError(f"cannot decode it ({type(e).__name__}: {e})") from None
    finally:
        container.close()
    if not frames:
        raise VideoError("it has no decodable frames")
    return np.stack(frames)


def write_video(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float,
    codec: str = "mpeg4",
    gop_size: int = 12,
    bit_rate: int | None = None,
) -> Path:
    """Encode `(T, H, W, 3)` uint8 RGB frames to `path` (container from the suffix)."""
    from fractions import Fraction

    av = _av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop_size
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
