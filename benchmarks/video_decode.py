"""Clips/s of seek-decoding (read only a clip's frames) vs decoding every frame, on one video.

    PYTHONPATH=src python benchmarks/video_decode.py [--seconds 12 --fps 25 --width 320 --height 240]

Writes a synthetic video of `--seconds` (UCF101-like: 320x240, 25 fps, MPEG-4 with a keyframe every
12 frames), then reads `--clips` random clips of 16 frames, 4 apart (VideoMAE's clip) both ways:
- seek: `video_io.read_clips` (seek to the keyframe before the clip, decode to its last frame,
  convert only the 16 frames to RGB);
- decode all: decode and convert every frame of the video, then take the clip's 16.
Both open the file once per clip, as a DataLoader worker does. One process, one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hotcv_train import video_io


def make_video(path: Path, seconds: float, fps: float, width: int, height: int, codec: str) -> Path:
    rng = np.random.default_rng(0)
    n = round(seconds * fps)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(n):  # a moving textured block on a static textured background
        frame = background.copy()
        x = int((width - 60) * (0.5 + 0.5 * np.sin(i / 15)))
        frame[height // 3 : height // 3 + 60, x : x + 60] = rng.integers(0, 255, (60, 60, 3))
        frames.append(frame)
    return video_io.write_video(path, frames, fps, codec, gop_size=12, bit_rate=1_500_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--codec", default="mpeg4")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--sample-rate", type=int, default=4)
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(
            Path(tmp) / "bench.avi", args.seconds, args.fps, args.width, args.height, args.codec
        )
        rng = np.random.default_rng(0)
        container, stream = video_io.open_video(path)
        info = video_io.probe(container, stream)
        container.close()
        clips = [
            video_io.random_clip(info.num_frames, args.num_frames, args.sample_rate, 0, rng)
            for _ in range(args.clips)
        ]
        print(
            f"video: {args.seconds:g} s, {info.num_frames} frames, {args.width}x{args.height}, "
            f"{info.fps:g} fps, {args.codec}; clips of {args.num_frames} frames every "
            f"{args.sample_rate}"
        )

        _, (first,) = video_io.read_clips(path, lambda info: clips[:1])
        np.testing.assert_array_equal(first, video_io.read_all_frames(path)[clips[0]])

        start = time.perf_counter()
        for clip in clips:
            video_io.read_clips(path, lambda info, c=clip: [c])
        seek = args.clips / (time.perf_counter() - start)

        start = time.perf_counter()
        for clip in clips:
            video_io.read_all_frames(path)[clip]
        decode_all = args.clips / (time.perf_counter() - start)

    print(f"seek-decoding:     {seek:7.1f} clips/s")
    print(f"decode all frames: {decode_all:7.1f} clips/s")
    print(f"speed-up:          {seek / decode_all:7.1f}x")


if __name__ == "__main__":
    main()
