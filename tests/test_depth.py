"""Depth estimation: metrics by hand, paired transforms, invalid depth, bad input, learning."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

from hotcv_train.datamodules.depth import DepthEstimationDataModule
from hotcv_train.errors import UserError
from hotcv_train.metrics.depth import depth_metrics
from hotcv_train.modules.depth_estimation import eigen_mask, silog_loss
from hotcv_train.run import instantiate, run
from tests.conftest import newest_run, train_py
from tests.tiny.depth import depth_overrides, tiny_glpn

NAN = float("nan")


# --- metrics -----------------------------------------------------------------------------------


def hand_metrics(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """The eight metrics over (pred, target) pairs, written out from their definitions."""
    n = len(pairs)
    ratio = [max(p / t, t / p) for p, t in pairs]
    return {
        "abs_rel": sum(abs(p - t) / t for p, t in pairs) / n,
        "sq_rel": sum((p - t) ** 2 / t for p, t in pairs) / n,
        "rmse": math.sqrt(sum((p - t) ** 2 for p, t in pairs) / n),
        "rmse_log": math.sqrt(sum((math.log(p) - math.log(t)) ** 2 for p, t in pairs) / n),
        "log10": sum(abs(math.log10(p) - math.log10(t)) for p, t in pairs) / n,
        "delta1": sum(r < 1.25 for r in ratio) / n,
        "delta2": sum(r < 1.25**2 for r in ratio) / n,
        "delta3": sum(r < 1.25**3 for r in ratio) / n,
    }


def test_depth_metrics_match_hand_computed_values() -> None:
    pred = torch.tensor([[[1.8, 1.0, 5.0, 6.0], [4.0, 3.0, 0.5, 12.0]]])
    target = torch.tensor([[[1.0, 0.0, 12.0, 5.0], [4.0, NAN, 2.0, 9.0]]])
    # Valid: target finite and in (1e-3, 10]. 0, NaN and 12 m are not; the 12 m prediction is
    # clamped to 10. Ratios 1.8 (delta3 only), 1.2 (all deltas), 1 (all), 4 (none), 1.11 (all).
    pairs = [(1.8, 1.0), (6.0, 5.0), (4.0, 4.0), (0.5, 2.0), (10.0, 9.0)]
    metrics = depth_metrics(min_depth=1e-3, max_depth=10.0)
    metrics.update(pred, target)
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert got == pytest.approx(hand_metrics(pairs), rel=1e-6)
    assert got["delta1"] == pytest.approx(3 / 5)
    assert got["delta3"] == pytest.approx(4 / 5)
    assert got["abs_rel"] == pytest.approx((0.8 + 0.2 + 0 + 0.75 + 1 / 9) / 5)


def test_depth_metrics_pool_pixels_over_batches_ranks_and_masks() -> None:
    """Per valid pixel over the whole split: not a mean of batch means; masks drop pixels."""
    first_pred, first_target = torch.tensor([[[2.0]]]), torch.tensor([[[1.0]]])
    second_pred = torch.tensor([[[1.0, 1.0, 1.0, 9.0]]])
    second_target = torch.tensor([[[1.0, 1.0, 1.0, 3.0]]])
    mask = torch.tensor([[[True, True, True, False]]])
    pooled = hand_metrics([(2.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)])

    one = depth_metrics(1e-3, 10.0)
    one.update(first_pred, first_target)
    one.update(second_pred, second_target, second_target.new_ones(1, 1, 4).bool() & mask)
    assert {k: float(v) for k, v in one.compute().items()} == pytest.approx(pooled)

    # Two "ranks" whose states are summed, as DDP's reduction does.
    rank0, rank1 = depth_metrics(1e-3, 10.0), depth_metrics(1e-3, 10.0)
    rank0.update(first_pred, first_target)
    rank1.update(second_pred, second_target, mask)
    for name, metric in rank0.items():
        metric.merge_state(rank1[name])
    assert {k: float(v) for k, v in rank0.compute().items()} == pytest.approx(pooled)


def test_depth_metrics_without_valid_pixels_are_nan_not_zero() -> None:
    metrics = depth_metrics(1e-3, 10.0)
    metrics.update(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
    assert all(math.isnan(float(v)) for v in metrics.compute().values())


def test_eigen_crop_scales_with_the_frame() -> None:
    full = eigen_mask((480, 640), torch.device("cpu"))
    assert full.sum() == (471 - 45) * (601 - 41)
    assert full[45, 41] and not full[44, 41] and not full[45, 40] and not full[471, 600]
    half = eigen_mask((240, 320), torch.device("cpu"))
    assert half.sum() == (236 - 22) * (300 - 20)


# --- loss --------------------------------------------------------------------------------------


def test_silog_loss_skips_samples_without_valid_pixels() -> None:
    pred = torch.full((3, 4, 4), 2.0, requires_grad=True)
    target = torch.full((3, 4, 4), 2.0)
    target[0] = 0.0  # nothing valid
    target[1, 0, 0] = NAN
    target[2] = 4.0
    valid = torch.isfinite(target) & (target > 0)
    loss, skipped = silog_loss(pred, target, valid, lambd=0.5)
    alone = silog_loss(pred[2:].detach(), target[2:], valid[2:], lambd=0.5)[0]
    d = math.log(2.0) - math.log(4.0)
    assert skipped == 1
    assert torch.isfinite(loss)
    assert float(alone) == pytest.approx(math.sqrt(d**2 - 0.5 * d**2), rel=1e-5)
    assert float(loss) == pytest.approx((float(alone) + 1e-4) / 2, rel=1e-4)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0].abs().sum() == 0


def test_silog_loss_of_an_all_invalid_batch_is_a_connected_zero() -> None:
    pred = torch.full((2, 3, 3), 5.0, requires_grad=True)
    target = torch.tensor(NAN).expand(2, 3, 3)
    loss, skipped = silog_loss(pred, target, torch.zeros(2, 3, 3, dtype=torch.bool), 0.5)
    assert skipped == 2 and float(loss) == 0.0 and loss.requires_grad
    loss.backward()  # DDP needs every rank to run backward, even on such a batch
    assert (pred.grad == 0).all()


# --- data --------------------------------------------------------------------------------------


def coded_rows(height: int = 32, width: int = 64, n: int = 2):
    """Images whose red/green channels code column/row, and depth coding the same pixel."""
    import datasets
    from PIL import Image

    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([cols * 4, rows * 4, np.full_like(rows, 128)], -1).astype(np.uint8)
    depth = (1 + 0.1 * cols + 0.01 * rows).astype(np.float32)
    depth[0, 0] = 0.0  # an invalid pixel must stay exactly 0 (never blended into neighbours)
    features = datasets.Features({"image": datasets.Image(), "depth_map": datasets.Image()})
    data = {
        "image": [Image.fromarray(pixels)] * n,
        "depth_map": [Image.fromarray(depth, mode="F")] * n,
    }
    split = datasets.Dataset.from_dict(data, features=features)
    return datasets.DatasetDict({"train": split, "validation": split})


def make_datamodule(generator, **settings) -> DepthEstimationDataModule:
    args = {
        "path": None,
        "name": None,
        "generator": generator,
        "revision": None,
        "data_dir": None,
        "train_split": "train",
        "val_split": "validation",
        "test_split": "validation",
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "split_seed": 0,
        "seed": 0,
        "batch_size": 2,
        "eval_batch_size": 2,
        "num_workers": 0,
        "image_column": "image",
        "depth_column": "depth_map",
        "depth_scale": 1.0,
        "processor": None,
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "size_divisor": 32,
        "crop_size": [32, 64],
        "eval_size": None,
        "hflip": 0.5,
        "color_jitter": [0.0, 0.0, 0.0, 0.0],
        **settings,
    }
    dm = DepthEstimationDataModule(**args)
    dm.setup("fit")
    return dm


def decode(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column and row each pixel of the image came from, and the depth at that pixel."""
    image = sample["pixel_values"].numpy() * 255
    return np.round(image[0] / 4), np.round(image[1] / 4), sample["labels"].numpy()


@pytest.mark.parametrize("crop", [[32, 64], [32, 32]])
def test_paired_flip_and_crop_keep_image_and_depth_aligned(crop: list[int]) -> None:
    dm = make_datamodule(coded_rows, hflip=1.0, crop_size=crop)
    torch.manual_seed(0)
    for _ in range(4):
        col, row, depth = decode(dm.dataset("train")[0])
        valid = depth > 0
        assert valid.sum() >= depth.size - 1
        # Flipping only the image (or only the depth) breaks this pixel-for-pixel identity.
        np.testing.assert_allclose(depth[valid], (1 + 0.1 * col + 0.01 * row)[valid], rtol=1e-5)
        assert (np.diff(col, axis=1) == -1).all(), "the image should be mirrored (hflip=1)"


def test_photometric_jitter_touches_the_image_only() -> None:
    dm = make_datamodule(coded_rows, hflip=0.0, color_jitter=[0.5, 0.5, 0.5, 0.1])
    raw = make_datamodule(coded_rows, hflip=0.0)
    torch.manual_seed(0)
    jittered = dm.dataset("train")[0]
    plain = raw.dataset("train")[0]
    assert not torch.allclose(jittered["pixel_values"], plain["pixel_values"])
    assert torch.equal(jittered["labels"], plain["labels"])


def test_depth_is_resized_with_nearest_neighbours() -> None:
    dm = make_datamodule(coded_rows, eval_size=[64, 96])
    sample = dm.dataset("val")[0]
    original = np.asarray(coded_rows()["train"][0]["depth_map"], dtype=np.float32)
    assert sample["pixel_values"].shape == (3, 64, 96) and sample["labels"].shape == (64, 96)
    assert set(sample["labels"].unique().tolist()) <= set(np.unique(original).tolist())
    assert sample["labels"][0, 0] == 0  # the invalid corner is still invalid, not blended


def test_eval_keeps_frames_that_already_fit_and_rounds_down_others() -> None:
    dm = make_datamodule(coded_rows)
    assert dm.dataset("val")[0]["labels"].shape == (32, 64)
    dm = make_datamodule(partial(coded_rows, 40, 70))
    sample = dm.dataset("val")[0]
    assert sample["pixel_values"].shape == (3, 32, 64) and sample["labels"].shape == (32, 64)


def with_depth(depths: list[np.ndarray], size: tuple[int, int] = (32, 64)):
    import datasets
    from PIL import Image

    image = Image.fromarray(np.zeros((*size, 3), dtype=np.uint8))
    features = datasets.Features({"image": datasets.Image(), "depth_map": datasets.Image()})
    maps = [Image.fromarray(d) for d in depths]
    split = datasets.Dataset.from_dict(
        {"image": [image] * len(maps), "depth_map": maps}, features=features
    )
    return datasets.DatasetDict({"train": split, "validation": split})


def test_a_depth_map_of_another_size_fails_naming_the_sample() -> None:
    good, bad = np.ones((32, 64), np.float32), np.ones((16, 64), np.float32)
    dm = make_datamodule(partial(with_depth, [good, bad]))
    with pytest.raises(UserError, match=r"train row 1 .*image is 32x64 but depth is 16x64"):
        dm.dataset("train")[1]
    with pytest.raises(UserError, match=r"depth_column: train sample 0 .*16x64"):
        make_datamodule(partial(with_depth, [bad, good]))  # found by check(), before any model


def test_a_bad_sample_in_a_dataloader_worker_is_still_one_line() -> None:
    good, bad = np.ones((32, 64), np.float32), np.ones((16, 64), np.float32)
    dm = make_datamodule(partial(with_depth, [good, bad]), num_workers=1)
    with pytest.raises(UserError) as raised:
        next(iter(dm.val_dataloader()))
    assert raised.value.problems == [
        "dataset: val row 1 of with_depth: image is 32x64 but depth is 16x64 (height x width); "
        "they must match pixel for pixel"
    ]


def test_a_multi_channel_depth_map_fails_naming_the_sample() -> None:
    rgb = np.zeros((32, 64, 3), np.uint8)
    with pytest.raises(UserError, match=r"train sample 0 .*3-channel RGB image"):
        make_datamodule(partial(with_depth, [rgb]))


def test_a_missing_depth_column_is_reported_before_any_model_loads(make_config) -> None:
    cfg = make_config(
        "task=glpn_nyu",  # its model is a hub id that cannot load offline: data errors come first
        "dataset=synthetic_depth",
        "dataset.generator.num_train=2",
        "dataset.generator.num_validation=2",
        "dataset.depth_column=depth",
    )
    with pytest.raises(UserError, match=r"dataset.depth_column: no column 'depth'.*depth_map"):
        run(cfg)


def test_crop_size_must_fit_the_size_divisor() -> None:
    with pytest.raises(UserError, match=r"dataset.crop_size: .*multiples of dataset.size_divisor"):
        make_datamodule(coded_rows, crop_size=[30, 64])


def test_synthetic_scenes_are_seeded_and_in_the_nyu_schema() -> None:
    from hotcv_train.data.synthetic_depth import make_scenes

    a, b = (make_scenes(3, 2, 64, 96, 7, 2, 2, 0.0) for _ in range(2))
    assert set(a) == {"train", "validation"}
    assert a["train"].column_names == ["image", "depth_map"]
    row = a["train"][0]
    depth = np.asarray(row["depth_map"])
    assert row["image"].mode == "RGB" and row["depth_map"].mode == "F"
    assert depth.shape == (64, 96) and depth.dtype == np.float32
    assert (depth[:2] == 0).all() and (depth[2:-2, 2:-2] > 0.5).all() and depth.max() < 10
    assert np.array_equal(np.asarray(a["validation"][1]["image"]), b["validation"][1]["image"])
    assert not np.array_equal(np.asarray(a["train"][0]["image"]), a["train"][1]["image"])


# --- end to end --------------------------------------------------------------------------------


def depth_module(tiny_dir, **overrides) -> Any:
    """The tiny GLPN's DepthEstimationModule, built directly (no Trainer), in eval mode."""
    from hotcv_train.models import ModelSpec
    from hotcv_train.modules.depth_estimation import DepthEstimationModule

    torch.manual_seed(0)
    settings = {
        "min_depth": 1e-3,
        "max_depth": 10.0,
        "silog_lambda": 0.5,
        "eigen_crop": False,
        "flip_test": True,
        "num_plot_samples": 0,
        "optimizer": torch.optim.AdamW,
        "scheduler": None,
        "compile": False,
        "channels_last": False,
    }
    module = DepthEstimationModule(
        model=ModelSpec(str(tiny_glpn(tiny_dir / "glpn"))), **{**settings, **overrides}
    )
    module.configure_model()
    return module.eval()


def test_channels_last_puts_convolutions_and_images_in_that_layout(tiny_dir) -> None:
    """`module.channels_last=true`: 4-D conv weights and the batch's images are channels-last,
    and the loss is the one the default layout gives."""
    batch = {"pixel_values": torch.rand(2, 3, 32, 64), "labels": torch.rand(2, 32, 64) + 1}
    plain, fast = depth_module(tiny_dir), depth_module(tiny_dir, channels_last=True)
    convs = [w for w in fast.parameters() if w.ndim == 4]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    seen = []
    fast.model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.extend([*args, *kwargs.values()]), with_kwargs=True
    )
    with torch.no_grad():
        expected = plain.step(dict(batch), "val")
        assert fast.step(dict(batch), "val") == pytest.approx(float(expected), rel=1e-4)
    images = [x for x in seen if isinstance(x, torch.Tensor) and x.ndim == 4]
    assert images and all(x.is_contiguous(memory_format=torch.channels_last) for x in images)
    assert not batch["pixel_values"].is_contiguous(memory_format=torch.channels_last)


def test_labels_follow_the_model_output_resolution(tiny_dir) -> None:
    """Depth finer than the prediction is brought down with nearest, not the prediction up."""
    module = depth_module(tiny_dir)
    labels = torch.full((2, 64, 128), 3.0)
    labels[:, :, 1::2] = 0.0  # odd columns invalid; halving with nearest keeps the even ones
    loss = module.step({"pixel_values": torch.rand(2, 3, 32, 64), "labels": labels}, "val")
    assert torch.isfinite(loss)
    assert int(module.val_metrics["abs_rel"].count) == 2 * 32 * 64  # every kept pixel is valid


def test_fit_then_test_checkpoint_and_pretrained_on_tiny_glpn(
    make_config, tiny_dir, tmp_path, caplog
):
    """Real `name_or_path` / `dataset.path` loading: fit, test a checkpoint, test the model as is."""
    tiny = depth_overrides(tiny_dir)
    metrics = run(make_config("task=glpn_nyu", *tiny))
    run_dir = tmp_path / "run"
    written = json.loads((run_dir / "metrics.json").read_text())
    names = ["abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3"]
    assert {f"test/{k}" for k in names} <= set(written)
    assert all(math.isfinite(v) for v in written.values()), written
    assert written["train/skipped"] == 1  # the tiny train split's all-invalid sample
    assert "train: skipped 1 sample(s) with no valid depth pixel" in caplog.text
    assert written["test/samples"] == 8 and written["test/skipped"] == 0
    assert 0 < written["test/delta1"] <= 1
    plots = run_dir / "plots"
    assert (plots / "val_depth_epoch_000.png").stat().st_size > 0
    assert (plots / "test_depth.png").stat().st_size > 0

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    again = run(make_config("task=glpn_nyu", *tiny, "stage=test", f"ckpt_path={ckpt}"))
    for k in names:  # one epoch: the best checkpoint that fit tested is the last one
        assert again[f"test/{k}"] == pytest.approx(metrics[f"test/{k}"], rel=1e-5)

    as_is = run(make_config("task=glpn_nyu", *tiny, "stage=test"))
    assert as_is["test/samples"] == 8
    assert as_is["test/abs_rel"] != pytest.approx(metrics["test/abs_rel"], rel=1e-6)


def test_a_tiny_glpn_learns_synthetic_depth(make_config) -> None:
    """experiment=depth_synthetic, smaller: delta1 clearly up, abs rel clearly down."""
    small = [
        "experiment=depth_synthetic",
        "dataset.generator.num_train=128",
        "dataset.generator.num_validation=32",
        "dataset.generator.height=64",
        "dataset.generator.width=96",
        "dataset.crop_size=[64,96]",
        "module.num_plot_samples=2",
        "callbacks.model_checkpoint.save_top_k=0",
        "test_after_fit=false",
    ]
    before = run(make_config(*small, "trainer.max_epochs=0", "test_after_fit=true"))  # untrained
    after = run(make_config(*small, "trainer.max_epochs=10"))
    print(
        f"untrained: delta1 {before['test/delta1']:.3f} abs_rel {before['test/abs_rel']:.3f}; "
        f"trained: delta1 {after['val/delta1']:.3f} abs_rel {after['val/abs_rel']:.3f}"
    )
    assert after["val/delta1"] > before["test/delta1"] + 0.12
    assert after["val/abs_rel"] < before["test/abs_rel"] - 0.08


def test_ddp_metrics_equal_a_single_process_evaluation(tiny_dir, tmp_path) -> None:
    """2 gloo ranks: depth metrics and the skipped count are summed over ranks, not averaged."""
    args = ["task=glpn_nyu", *depth_overrides(tiny_dir)]
    ddp = train_py(*args, "trainer=ddp_cpu", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    ddp_dir = newest_run(tmp_path, "glpn_nyu")
    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert metrics["train/skipped"] == 1 and metrics["test/samples"] == 8
    assert (ddp_dir / "plots" / "test_depth.png").exists()

    best = next((ddp_dir / "checkpoints").glob("best-*.ckpt"))
    single = train_py(*args, "stage=test", f"ckpt_path={best}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    assert newest_run(tmp_path, "glpn_nyu") != ddp_dir
    reference = json.loads((newest_run(tmp_path, "glpn_nyu") / "metrics.json").read_text())
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3"):
        assert metrics[f"test/{key}"] == pytest.approx(reference[f"test/{key}"], rel=1e-5), key


def write_nyu_shards(folder, frames: dict[str, int], size=(8, 12)) -> dict[str, list]:
    """Tar shards of .h5 frames in sayakpaul/nyu_depth_v2's layout; returns each split's frames."""
    import io
    import tarfile

    import h5py

    rng = np.random.default_rng(0)
    written: dict[str, list] = {}
    for prefix, n in frames.items():
        shard = folder / "data" / f"{prefix}-000000.tar"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(shard, "w") as archive:
            for i in range(n):
                rgb = rng.integers(0, 256, (3, *size), dtype=np.uint8)
                depth = rng.uniform(0.5, 9.5, size).astype(np.float32)
                buffer = io.BytesIO()
                with h5py.File(buffer, "w") as h5:
                    h5["rgb"], h5["depth"] = rgb, depth
                info = tarfile.TarInfo(f"{prefix}/scene_{i:03d}.h5")
                info.size = buffer.getbuffer().nbytes
                buffer.seek(0)
                archive.addfile(info, buffer)
                written.setdefault(prefix, []).append((rgb, depth))
    return written


def test_full_nyu_reads_the_tar_shards_of_h5_frames(tmp_path, make_config) -> None:
    from hotcv_train.data.nyu_shards import load_nyu_shards

    written = write_nyu_shards(tmp_path / "nyu", {"train": 3, "val": 2})
    data = load_nyu_shards(str(tmp_path / "nyu"))
    assert {k: len(v) for k, v in data.items()} == {"train": 3, "validation": 2}
    row = data["validation"][1]
    rgb, depth = written["val"][1]
    np.testing.assert_array_equal(np.asarray(row["image"]), rgb.transpose(1, 2, 0))
    np.testing.assert_array_equal(np.asarray(row["depth_map"], dtype=np.float32), depth)

    # The dataset option feeds the depth task's datamodule as it is.
    cfg = make_config(
        "task=glpn_nyu",
        "dataset=nyu_depth_v2_full",
        f"dataset.generator.path={tmp_path / 'nyu'}",
        "dataset.image_mean=[0.5,0.5,0.5]",
        "dataset.image_std=[0.5,0.5,0.5]",
    )
    datamodule = instantiate(cfg.dataset, "dataset")
    datamodule.setup("fit")
    assert {k: len(v) for k, v in datamodule.splits.items()} == {"train": 3, "val": 2, "test": 2}
    with pytest.raises(UserError, match=r"dataset.generator.path: no train-\*\.tar or val-"):
        load_nyu_shards(str(tmp_path / "nyu" / "data" / "missing"))


def test_the_hub_parquet_export_layout_loads_with_data_dir(tmp_path) -> None:
    """The default NYU source is the hub's parquet export (revision refs/convert/parquet): one
    folder per config, a split per subfolder, `partial-` where the export stopped early."""

    from hotcv_train.datamodules.base import load_source

    rows = coded_rows(n=3)["train"]
    for split in ("partial-train", "validation"):
        (tmp_path / "default" / split).mkdir(parents=True)
        rows.to_parquet(str(tmp_path / "default" / split / "0000.parquet"))
    data = load_source(str(tmp_path), None, None, data_dir="default")
    assert {k: len(v) for k, v in data.items()} == {"train": 3, "validation": 3}


def test_a_users_folder_of_rgb_and_millimetre_pngs(tiny_dir, tmp_path) -> None:
    """What a user's depth data looks like: rgb/ and depth/ PNG files (16-bit millimetres) paired
    by a metadata.csv (the image-folder layout of datasets), no splits; glpn_nyu's default
    `data_dir` (the hub export's folder) does not apply to it. Read as metres, every pixel lies
    beyond max_depth: the first batch stops the run naming depth_scale, instead of training on
    nothing; with the scale it trains."""
    from PIL import Image

    from hotcv_train.data.synthetic_depth import make_scenes
    from tests.conftest import compose_config

    folder = tmp_path / "my depth"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    lines = ["file_name,depth_file_name"]
    for i, row in enumerate(make_scenes(12, 0, 64, 96, 3, 2, 2, 0.0)["train"]):
        row["image"].save(folder / "rgb" / f"{i:04d}.png")
        millimetres = (np.asarray(row["depth_map"]) * 1000).astype(np.uint16)
        Image.fromarray(millimetres).save(folder / "depth" / f"{i:04d}.png")  # mode I;16
        lines.append(f"rgb/{i:04d}.png,depth/{i:04d}.png")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    overrides = [
        "task=glpn_nyu",
        *depth_overrides(tiny_dir),
        f"dataset.path={folder}",
        "dataset.depth_column=depth",
        "dataset.val_fraction=0.25",
        "dataset.test_fraction=0.25",
    ]
    with pytest.raises(UserError, match=r"depth_scale=0\.001"):
        run(compose_config(tmp_path / "metres", *overrides))
    metrics = run(compose_config(tmp_path / "mm", *overrides, "dataset.depth_scale=0.001"))
    assert np.isfinite(metrics["test/abs_rel"]) and metrics["test/delta1"] > 0, metrics
