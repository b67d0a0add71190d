"""maxim_denoise: seamless tiling, the SavedModel loader, and PSNR/SSIM with a known direction.

Tiling tests are pure numpy/torch. The rest load a tiny SavedModel (tests/tiny/inference_maxim.py)
through the real loader and skip, saying how to install it, where TensorFlow is absent.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hotcv_train.errors import UserError
from hotcv_train.models import ModelSpec
from hotcv_train.modules.denoising import pick_output, resolve_saved_model
from hotcv_train.run import run
from hotcv_train.tiling import ramp, tile_starts, tiled_apply
from tests.conftest import newest_run, train_py
from tests.tiny.inference_maxim import (
    BLUR,
    FINAL,
    PAIRS,
    TILE,
    maxim_overrides,
    noisy_pairs,
    require_tensorflow,
    tiny_denoiser,
)


def conv_model(kernel: np.ndarray):
    """A translation-equivariant NHWC model: a per-channel convolution with zero 'same' padding."""
    weight = torch.from_numpy(kernel).float()[None, None].repeat(3, 1, 1, 1)

    def fn(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2)
        y = F.conv2d(x, weight, padding=kernel.shape[0] // 2, groups=3)
        return y.permute(0, 2, 3, 1).numpy()

    return fn


def blur_reference(image: np.ndarray) -> np.ndarray:
    """The tiny denoiser's blur on a whole HWC image, untiled."""
    return conv_model(BLUR)(image[None].astype(np.float32))[0]


@pytest.mark.parametrize("length", [16, 17, 45, 70, 200])
def test_tile_starts_cover_the_axis_with_the_overlap(length: int) -> None:
    starts = tile_starts(length, 16, 6)
    assert starts[0] == 0 and starts[-1] + 16 == length
    assert all(b - a <= 16 - 6 for a, b in itertools.pairwise(starts)), starts
    assert all(b > a for a, b in itertools.pairwise(starts))


def test_ramps_of_neighbours_sum_to_one() -> None:
    for overlap in (1, 4, 8, 13, 64):
        assert np.allclose(ramp(overlap) + ramp(overlap)[::-1], 1.0)


@pytest.mark.parametrize("size", [(45, 70), (16, 16), (5, 9), (1, 40), (33, 16)])
def test_identity_round_trip_is_exact(size: tuple[int, int]) -> None:
    image = np.random.default_rng(0).random((*size, 3)).astype(np.float32)
    (out,) = tiled_apply([image], lambda t: t, (16, 16), overlap=6, batch_size=3)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_tiling_equals_untiled_output_of_a_translation_equivariant_model() -> None:
    """45x70 is no multiple of 16: the overlap hides every tile border from a 5x5 convolution."""
    image = np.random.default_rng(1).random((45, 70, 3)).astype(np.float32)
    kernel = np.random.default_rng(2).random((5, 5))  # reaches 2 px; overlap // 4 == 2
    model = conv_model(kernel)
    untiled = model(image[None])[0]
    (tiled,) = tiled_apply([image], model, (16, 16), overlap=8, batch_size=4)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)
    # Without overlap the tiles' zero padding shows as seams: the check above has teeth.
    (seamed,) = tiled_apply([image], model, (16, 16), overlap=0, batch_size=4)
    assert np.abs(seamed - untiled).max() > 0.5


def test_images_of_many_sizes_share_batches() -> None:
    sizes = [(40, 23), (7, 7), (16, 50)]
    images = [np.random.default_rng(i).random((*size, 3)) for i, size in enumerate(sizes)]
    calls = []

    def model(tiles: np.ndarray) -> np.ndarray:
        calls.append(len(tiles))
        return tiles * 2

    outs = tiled_apply(images, model, (16, 16), overlap=4, batch_size=5)
    assert [o.shape for o in outs] == [i.shape for i in images]
    for image, out in zip(images, outs):
        np.testing.assert_allclose(out, image * 2, rtol=1e-6)
    assert calls[:-1] == [5] * (len(calls) - 1) and len(calls) > 1  # pooled across images


def test_a_model_that_changes_the_tile_size_is_refused() -> None:
    with pytest.raises(ValueError, match="same batch, height and width"):
        tiled_apply([np.zeros((20, 20, 3))], lambda t: t[:, ::2, ::2], (16, 16), 4, 2)


def test_the_final_output_is_the_last_built_one_at_full_size() -> None:
    keras2 = {
        "tf.__operators__.add_3": (None, 32, 32, 3),
        "tf.__operators__.add_12": (None, 32, 32, 3),  # "12" < "3" as text; built later
        "tf.__operators__.add_14": (None, 16, 16, 3),  # later, but a coarser scale
    }
    assert pick_output(keras2, (32, 32)) == "tf.__operators__.add_12"
    keras3 = {f"output_{i}": (None, 8 * 2 ** (i % 3), 8 * 2 ** (i % 3), 3) for i in range(9)}
    assert pick_output(keras3, (32, 32)) == "output_8"
    with pytest.raises(UserError, match=r"module\.output_key"):
        pick_output({"logits": (None, 10)}, (32, 32))


def test_a_folder_without_a_saved_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"module\.model\.name_or_path: .*no saved_model\.pb"):
        resolve_saved_model(ModelSpec(str(tmp_path)))


def test_an_unreachable_hub_id_names_the_offline_fix() -> None:
    with pytest.raises(UserError, match=r"module\.model\.name_or_path: .*hf download"):
        resolve_saved_model(ModelSpec("google/no-such-denoiser-offline"))


# --- through TensorFlow ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_model(tiny_dir: Path):
    """The tiny SavedModel, loaded by the module's own loader (TensorFlow on the CPU)."""
    require_tensorflow()
    from hotcv_train.modules.denoising import SavedModelTiles, import_tensorflow

    def load(name: str = "tiny_maxim", **kwargs):
        folder = tiny_denoiser(tiny_dir / name, batch=kwargs.pop("batch", None))
        options = {"signature": "serving_default", "output_key": None, "tile_size": "auto"}
        options.update(batch_tiles=4, **kwargs)
        return SavedModelTiles(import_tensorflow(torch.device("cpu")), folder, **options)

    return load


def test_loader_reads_input_and_final_output_from_the_signature(tf_model) -> None:
    model = tf_model()
    assert (model.input_name, model.tile, model.channels) == ("input_1", (TILE, TILE), 3)
    assert model.output_key == FINAL


def test_tiled_savedmodel_equals_the_untiled_model(tf_model) -> None:
    image = np.random.default_rng(3).random((45, 70, 3)).astype(np.float32)
    model = tf_model()
    (out,) = tiled_apply([image], model, model.tile, overlap=8, batch_size=model.batch)
    np.testing.assert_allclose(out, blur_reference(image), atol=1e-5)


def test_a_signature_with_a_fixed_batch_gets_padded_batches(tf_model) -> None:
    model = tf_model("tiny_maxim_batch3", batch=3)
    assert model.batch == 3
    images = [np.random.default_rng(i).random((45, 40, 3)).astype(np.float32) for i in range(2)]
    outs = tiled_apply(images, model, model.tile, overlap=8, batch_size=model.batch)  # 8 tiles
    for image, out in zip(images, outs):
        np.testing.assert_allclose(out, blur_reference(image), atol=1e-5)


def test_loader_config_errors_name_the_key(tf_model) -> None:
    with pytest.raises(UserError, match=r"module\.tile_size: the model takes 32x32"):
        tf_model(tile_size=64)
    with pytest.raises(UserError, match=r"module\.signature: .*has no signature 'predict'"):
        tf_model(signature="predict")
    with pytest.raises(UserError, match=r"module\.output_key: no output 'final'"):
        tf_model(output_key="final")


def test_denoise_end_to_end_beats_the_noisy_input(make_config, tiny_dir: Path, tmp_path: Path):
    """Blur denoises smooth images: PSNR must rise over the input's, for every image."""
    metrics = run(make_config("task=maxim_denoise", *maxim_overrides(tiny_dir)))
    assert metrics["test/psnr"] > metrics["test/psnr_input"] + 3, metrics
    assert 0 < metrics["test/ssim"] <= 1

    run_dir = tmp_path / "run"
    records = [
        json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in records] == sorted(stem for stem, _, _ in PAIRS)
    noisy_dir, _ = noisy_pairs(tiny_dir / "denoise_pairs")
    for record in records:
        assert record["metrics"]["psnr"] > record["metrics"]["psnr_input"], record
        denoised, before_after = (run_dir / p for p in record["outputs"])
        assert denoised.name.endswith("_denoised.png") and before_after.exists()
        noisy = np.asarray(Image.open(noisy_dir / f"{record['id']}.png"), np.float32) / 255
        saved = np.asarray(Image.open(denoised), np.float32) / 255
        assert saved.shape == noisy.shape
        h, w = noisy.shape[:2]
        if min(h, w) >= TILE:  # smaller images are reflect-padded, so their borders differ
            expected = np.clip(blur_reference(noisy), 0, 1)
            assert np.abs(saved - expected).max() <= 0.5 / 255 + 1e-6
        assert Image.open(before_after).width > 3 * w  # noisy | denoised | clean


def test_predict_writes_outputs_without_metrics(make_config, tiny_dir: Path, tmp_path: Path):
    overrides = [o for o in maxim_overrides(tiny_dir) if not o.startswith("dataset.references")]
    metrics = run(make_config("task=maxim_denoise", "stage=predict", *overrides))
    assert not any(k.startswith("test/") for k in metrics)
    records = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(records) == len(PAIRS)
    assert all(json.loads(r)["metrics"] == {} for r in records)


def partial_references(tiny_dir: Path, tmp_path: Path, drop: str = "c") -> list[str]:
    """The task's overrides with the clean image of `drop` missing and `skip` for missing ones."""
    _, clean = noisy_pairs(tiny_dir / "denoise_pairs")
    partial = tmp_path / "clean_partial"
    shutil.copytree(clean, partial)
    (partial / f"{drop}.png").unlink()
    overrides = [o for o in maxim_overrides(tiny_dir) if not o.startswith("dataset.references")]
    return [*overrides, f"dataset.references={partial}", "dataset.missing_reference=skip"]


def test_an_input_without_a_reference_is_denoised_unscored(make_config, tiny_dir, tmp_path):
    metrics = run(make_config("task=maxim_denoise", *partial_references(tiny_dir, tmp_path)))
    assert metrics["test/psnr"] > metrics["test/psnr_input"]
    assert (metrics["test/samples"], metrics["test/scored"]) == (len(PAIRS), len(PAIRS) - 1)
    run_dir = tmp_path / "run"
    records = {
        r["id"]: r
        for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())
    }
    assert records["c"]["metrics"] == {} and records["a"]["metrics"]
    assert (run_dir / "predictions/c_denoised.png").exists()


def resized_reference(tiny_dir: Path, tmp_path: Path, *extra: str) -> tuple[list[str], Path]:
    """The task's overrides with the clean image of scene/b (the last input) 3 px wider."""
    _, clean = noisy_pairs(tiny_dir / "denoise_pairs")
    changed = tmp_path / "clean_resized"
    shutil.copytree(clean, changed)
    image = Image.open(changed / "scene" / "b.png")
    image.resize((image.width + 3, image.height)).save(changed / "scene" / "b.png")
    overrides = [o for o in maxim_overrides(tiny_dir) if not o.startswith("dataset.references")]
    return [*overrides, f"dataset.references={changed}", *extra], changed


def test_a_clean_image_of_another_size_stops_the_run_before_anything_is_written(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    overrides, clean = resized_reference(tiny_dir, tmp_path)
    noisy, _ = noisy_pairs(tiny_dir / "denoise_pairs")
    with pytest.raises(UserError) as error:
        run(make_config("task=maxim_denoise", *overrides))
    assert error.value.problems == [
        f"dataset.references: reference {clean / 'scene' / 'b.png'} is 40x32 px but its input "
        f"{noisy / 'scene' / 'b.png'} is 37x32 px; a reference must be the size of its input: "
        "pair the right files or resize them, or set dataset.missing_reference=skip to evaluate "
        "such inputs unscored"
    ]
    assert not (tmp_path / "run" / "predictions").exists()


def test_a_clean_image_of_another_size_under_skip_is_denoised_unscored(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides, clean = resized_reference(tiny_dir, tmp_path, "dataset.missing_reference=skip")
    metrics = run(make_config("task=maxim_denoise", *overrides))
    assert (metrics["test/samples"], metrics["test/scored"]) == (len(PAIRS), len(PAIRS) - 1)
    assert metrics["test/psnr"] > metrics["test/psnr_input"]
    records = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "run" / "predictions.jsonl").read_text().splitlines())
    }
    assert records["scene/b"]["metrics"] == {} and records["a"]["metrics"]
    assert f"reference {clean / 'scene' / 'b.png'} is 40x32 px" in caplog.text
    assert "evaluated unscored (dataset.missing_reference=skip)" in caplog.text


def test_reference_sizes_come_upright_from_headers(tmp_path: Path) -> None:
    """A phone's clean JPEG (EXIF orientation 6: stored 80x40, seen 40x80) pairs with an upright
    40x80 input; a turned one without EXIF does not. HF image columns are read the same way."""
    import datasets

    from hotcv_train.datamodules.images import ImageInputsDataModule

    def data(path: Path, references: str) -> ImageInputsDataModule:
        return ImageInputsDataModule(
            path=str(path), files=None, split="test", image_column="image", id_column=None,
            references=references, missing_reference="error", image_mode="RGB",
            reference_mode="RGB", max_inputs=None, batch_size=1, num_workers=0,
            max_image_pixels=None,
        )  # fmt: skip

    noisy, clean = tmp_path / "noisy", tmp_path / "clean"
    noisy.mkdir()
    clean.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 80)).save(noisy / "phone.png")
    Image.new("RGB", (80, 40)).save(clean / "phone.jpg", exif=exif)
    folder = data(noisy, str(clean))
    folder.setup("test")
    folder.check_reference_sizes()  # no complaint

    Image.new("RGB", (80, 40)).save(clean / "phone.jpg")  # the same pixels, no EXIF
    folder = data(noisy, str(clean))
    folder.setup("test")
    with pytest.raises(UserError, match=r"phone\.jpg is 80x40 px but its input .*phone\.png is "
                       r"40x80 px;"):  # fmt: skip
        folder.check_reference_sizes()

    rows = {
        "image": [Image.new("RGB", (4, 4)), Image.new("RGB", (6, 5))],
        "clean": [Image.new("RGB", (4, 4)), Image.new("RGB", (5, 6))],
    }
    features = datasets.Features({"image": datasets.Image(), "clean": datasets.Image()})
    datasets.DatasetDict(
        {"test": datasets.Dataset.from_dict(rows, features=features)}
    ).save_to_disk(tmp_path / "pairs")
    hf = data(tmp_path / "pairs", "clean")
    hf.setup("test")
    with pytest.raises(UserError, match=r"reference row 1 \('clean'\) is 5x6 px but its input "
                       r"row 1 \('image'\) is 6x5 px;"):  # fmt: skip
        hf.check_reference_sizes()


@pytest.mark.slow
def test_two_ranks_denoise_every_input_once(tiny_dir: Path, tmp_path: Path) -> None:
    """DDP on the CPU, one rank holding only an unscored input: results equal to one process."""
    overrides = partial_references(tiny_dir, tmp_path)
    single = train_py("task=maxim_denoise", *overrides, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    folders = {"single": newest_run(tmp_path, "maxim_denoise")}
    ddp = train_py("task=maxim_denoise", "trainer=ddp_cpu", *overrides, cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    folders["ddp"] = newest_run(tmp_path, "maxim_denoise")
    assert folders["ddp"] != folders["single"]
    records = {}
    for name, folder in folders.items():
        lines = (folder / "predictions.jsonl").read_text().splitlines()
        records[name] = [json.loads(line) for line in lines]
    assert [r["id"] for r in records["ddp"]] == sorted(stem for stem, _, _ in PAIRS)
    assert records["ddp"] == records["single"]
    single_metrics, ddp_metrics = (
        json.loads((folders[name] / "metrics.json").read_text()) for name in ("single", "ddp")
    )
    assert ddp_metrics == pytest.approx(single_metrics, rel=1e-5)
    assert {"test/psnr", "test/psnr_input", "test/ssim"} <= set(ddp_metrics)
    for stem, _, _ in PAIRS:
        a = np.asarray(Image.open(folders["single"] / f"predictions/{stem}_denoised.png"))
        b = np.asarray(Image.open(folders["ddp"] / f"predictions/{stem}_denoised.png"))
        np.testing.assert_array_equal(a, b)
