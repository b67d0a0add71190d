"""A tiny VideoMAE (classifier and pretraining model) and tiny folders of real motion videos."""

from __future__ import annotations

from pathlib import Path

NUM_FRAMES = 4
SIZE = 32
CLASSES = ["left", "right", "up", "down"]
NUM_TEST = 9  # odd, so 2 DDP ranks get 5 and 4: padding would show as 10


def _config(**extra):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(
        image_size=SIZE,
        patch_size=8,
        num_frames=NUM_FRAMES,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
        **extra,
    )


def _processor(folder: Path) -> None:
    from transformers import VideoMAEImageProcessor

    VideoMAEImageProcessor(
        size={"shortest_edge": SIZE},
        crop_size={"height": SIZE, "width": SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)


def tiny_videomae(folder: Path) -> Path:
    """A 2-layer, 32-wide VideoMAE classifier (4-frame clips) and its processor, hub-style."""
    if not (folder / "config.json").exists():
        from transformers import VideoMAEForVideoClassification

        VideoMAEForVideoClassification(_config(num_labels=len(CLASSES))).save_pretrained(folder)
        _processor(folder)
    return folder


def tiny_videomae_pretraining(folder: Path) -> Path:
    """The same encoder with a 1-layer decoder: VideoMAEForPreTraining, hub-style.

    Its targets are pixels, not VideoMAE's per-patch normalized ones: the tiny videos' static
    background patches are flat plus noise, which normalized is noise no model can predict.
    """
    if not (folder / "config.json").exists():
        from transformers import VideoMAEForPreTraining

        VideoMAEForPreTraining(_config(norm_pix_loss=False)).save_pretrained(folder)
        _processor(folder)
    return folder


def tiny_videos(folder: Path, num_train: int = 24, num_val: int = 8) -> Path:
    """Split/class folders of .avi motion clips (UCF101's layout), 12 frames of 32x32 each."""
    from hotcv_train.data.synthetic_video import make_videos

    return Path(
        make_videos(
            str(folder),
            CLASSES,
            num_train,
            num_val,
            NUM_TEST,
            SIZE,
            12,
            12,
            [0.03, 0.045],
            [8, 15],
            0,
        )
    )


def video_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_videomae(root / 'videomae')}",
        f"dataset.path={tiny_videos(root / 'videos')}",
        f"dataset.num_frames={NUM_FRAMES}",
        "dataset.eval_clips=2",
        "dataset.batch_size=4",
    ]


def pretrain_overrides(root: Path) -> list[str]:
    return [
        f"module.model.name_or_path={tiny_videomae_pretraining(root / 'videomae_pretraining')}",
        f"dataset.path={tiny_videos(root / 'videos')}",
        f"dataset.num_frames={NUM_FRAMES}",
        "dataset.batch_size=4",
    ]


def synthetic_overrides(root: Path) -> list[str]:
    """experiment=video_synthetic, small: fewer videos, one epoch."""
    return [
        f"dataset.generator.folder={root / 'synthetic_video'}",
        "dataset.generator.num_train=48",
        "dataset.generator.num_val=12",
        "dataset.generator.num_test=12",
        "dataset.num_workers=0",
        "trainer.max_epochs=1",
    ]


TASKS = {"videomae_ucf101": video_overrides, "videomae_pretrain": pretrain_overrides}
EXPERIMENTS = {"video_synthetic": synthetic_overrides}
