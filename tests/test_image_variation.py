"""sd_image_variations on a tiny pipeline: outputs, the CLIP score, seeds, safety checker, settings."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from hotcv_train.datamodules.images import to_tensor
from hotcv_train.errors import UserError
from hotcv_train.run import run
from tests.conftest import compose_config
from tests.tiny.inference_sd import OUTPUT_SIZE, sd_overrides, tiny_photos, tiny_sd_pipeline

TASK = "sd_image_variations"


def overrides(tiny_dir: Path, *extra: str) -> list[str]:
    return [f"task={TASK}", *sd_overrides(tiny_dir), "module.dtype=float32", *extra]


def run_task(run_dir: Path, tiny_dir: Path, *extra: str) -> dict[str, float]:
    return run(compose_config(run_dir, *overrides(tiny_dir, *extra)))


def records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def variations(run_dir: Path, record: dict) -> list[np.ndarray]:
    return [pixels(run_dir / v["image"]) for v in record["variations"]]


@pytest.fixture(scope="module")
def module(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The task's module, built from the composed config (not attached to a trainer: CPU)."""
    cfg = compose_config(tmp_path_factory.mktemp("module") / "run", *overrides(tiny_dir))
    return instantiate(cfg.module, _convert_="object")


def test_writes_each_variation_a_grid_and_scores(
    tiny_dir: Path, tmp_path: Path, module, caplog: pytest.LogCaptureFixture
) -> None:
    references = f"dataset.references={tiny_dir / 'sd_photos'}"  # ignored: the input is one
    metrics = run_task(tmp_path / "run", tiny_dir, "module.num_variations=3", references)
    assert (metrics["test/samples"], metrics["test/skipped"]) == (3, 0)
    assert "test/scored" not in metrics
    assert "dataset.references: ignored" in caplog.text

    found = records(tmp_path / "run")
    assert sorted(found) == ["photo0", "photo1", "sub/photo2"]
    all_scores = []
    for sample_id, record in found.items():
        images = variations(tmp_path / "run", record)
        assert len(images) == 3
        assert all(image.shape == (OUTPUT_SIZE, OUTPUT_SIZE, 3) for image in images)
        grid = pixels(tmp_path / "run" / "predictions" / f"{sample_id}_grid.png")
        assert grid.shape == (OUTPUT_SIZE, 4 * OUTPUT_SIZE, 3)  # input | 3 variations
        for k, image in enumerate(images, start=1):
            np.testing.assert_array_equal(grid[:, k * OUTPUT_SIZE : (k + 1) * OUTPUT_SIZE], image)
        assert record["outputs"] == [v["image"] for v in record["variations"]] + [
            f"predictions/{sample_id}_grid.png"
        ]
        scores = [v["clip_similarity"] for v in record["variations"]]
        assert all(-1 <= s <= 1 for s in scores)
        assert not any(v["nsfw"] for v in record["variations"])
        assert record["metrics"]["clip_similarity"] == pytest.approx(np.mean(scores), abs=1e-6)
        all_scores += scores

        # Scored as saved: the PNGs give back the recorded numbers.
        source = tiny_dir / "sd_photos" / f"{sample_id}.png"
        saved = [torch.from_numpy(image.copy()).permute(2, 0, 1) for image in images]
        again = module.similarity(to_tensor(Image.open(source), "RGB"), saved)
        np.testing.assert_allclose(again.numpy(), scores, atol=1e-5)
    assert metrics["test/clip_similarity"] == pytest.approx(np.mean(all_scores), abs=1e-6)
    assert "test/nsfw_fraction" not in metrics  # no safety checker ran


def test_similarity_of_an_image_with_itself_is_one(module) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 40, 24), dtype=torch.uint8, generator=generator)
    other = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=generator)
    flipped = image.flip(-1)
    scores = module.similarity(image, [image, other, flipped])
    assert scores[0].item() == pytest.approx(1.0, abs=1e-5)
    assert all(-1 <= s < 0.9999 for s in scores[1:].tolist())


def test_same_seed_and_id_give_the_same_variations_whatever_the_batching(
    tiny_dir: Path, tmp_path: Path
) -> None:
    run_task(tmp_path / "one", tiny_dir, "dataset.batch_size=1")
    run_task(tmp_path / "three", tiny_dir, "dataset.batch_size=3")
    run_task(tmp_path / "seed7", tiny_dir, "dataset.batch_size=1", "seed=7")

    one, three, seed7 = (records(tmp_path / name) for name in ("one", "three", "seed7"))
    assert one == three
    for sample_id in one:
        for a, b in zip(
            variations(tmp_path / "one", one[sample_id]),
            variations(tmp_path / "three", three[sample_id]),
        ):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(
            variations(tmp_path / "one", one[sample_id]),
            variations(tmp_path / "seed7", seed7[sample_id]),
        ):
            assert not np.array_equal(a, b), "another seed must draw other noise"


def test_different_ids_draw_different_noise(tiny_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "twins"
    photos.mkdir()
    source = next(tiny_photos(tiny_dir / "sd_photos").glob("*.png"))
    for name in ("a", "b"):
        shutil.copy(source, photos / f"{name}.png")
    run_task(tmp_path / "run", tiny_dir, f"dataset.path={photos}")

    found = records(tmp_path / "run")
    a, b = (variations(tmp_path / "run", found[k]) for k in ("a", "b"))
    assert not any(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1]), "variations of one input differ from each other"


def test_safety_checker_on_a_pipeline_without_one_is_a_one_line_error(
    tiny_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError) as error:
        run_task(tmp_path / "run", tiny_dir, "module.safety_checker=true")
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith("module.safety_checker: ")
    assert "module.safety_checker=false" in error.value.problems[0]
    assert not (tmp_path / "run" / "predictions").exists()


def test_flagged_variations_are_black_recorded_and_left_out_of_the_score(
    tiny_dir: Path, tmp_path: Path
) -> None:
    flagging = tiny_sd_pipeline(tiny_dir / "sd_variations_flagging", safety_checker="flag")
    checked = run_task(
        tmp_path / "on",
        tiny_dir,
        f"module.model.name_or_path={flagging}",
        "module.safety_checker=true",
    )
    for record in records(tmp_path / "on").values():
        assert all(v["nsfw"] for v in record["variations"])
        assert all(image.max() == 0 for image in variations(tmp_path / "on", record))
        assert record["metrics"] == {"clip_similarity": None, "nsfw_fraction": 1.0}
    assert checked["test/nsfw_fraction"] == 1.0
    assert math.isnan(checked["test/clip_similarity"])  # nothing left to score

    unchecked = run_task(
        tmp_path / "off",
        tiny_dir,
        f"module.model.name_or_path={flagging}",
        "module.safety_checker=false",
    )
    for record in records(tmp_path / "off").values():
        assert not any(v["nsfw"] for v in record["variations"])
        assert all(image.max() > 0 for image in variations(tmp_path / "off", record))
    assert -1 <= unchecked["test/clip_similarity"] <= 1


def test_scheduler_choice_and_half_precision_fall_back_on_cpu(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config(
        tmp_path / "run",
        *overrides(tiny_dir, "module.scheduler=DPMSolverMultistepScheduler"),
        "module.dtype=bfloat16",
    )
    built = instantiate(cfg.module, _convert_="object")
    assert type(built.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert built.pipe.unet.dtype == torch.bfloat16

    with caplog.at_level(logging.WARNING):
        metrics = run(cfg)
    assert "module.dtype=bfloat16 needs a GPU; running in float32" in caplog.text
    assert -1 <= metrics["test/clip_similarity"] <= 1
    assert len(records(tmp_path / "run")) == 3


def test_bad_settings_are_listed_before_the_pipeline_loads(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        run_task(
            tmp_path / "run",
            tiny_dir,
            "module.scheduler=NoSuchScheduler",
            "module.image_size=20",
        )
    problems = "\n".join(error.value.problems)
    assert len(error.value.problems) == 2
    assert "module.scheduler: 'NoSuchScheduler' is not a diffusers scheduler" in problems
    assert "DPMSolverMultistepScheduler" in problems  # the choices are listed
    assert "module.image_size: must be a positive multiple of 8, got 20" in problems
    # A count out of range is caught by the config checks, before anything is built.
    with pytest.raises(UserError) as error:
        run_task(tmp_path / "run", tiny_dir, "module.num_variations=0")
    assert error.value.problems == ["module.num_variations: must be >= 1, got 0"]


def test_a_folder_that_is_not_a_pipeline_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"module.model.name_or_path: .*\(no model_index.json\)"):
        run_task(tmp_path / "run", tiny_dir, f"module.model.name_or_path={tmp_path}")


def test_an_unreachable_hub_id_names_the_offline_fix(tiny_dir: Path, tmp_path: Path) -> None:
    """The default hub id, offline (conftest sets HF_HUB_OFFLINE): one line, and the fix."""
    with pytest.raises(UserError) as error:
        run_task(
            tmp_path / "run",
            tiny_dir,
            "module.model.name_or_path=lambdalabs/sd-image-variations-diffusers",
        )
    (problem,) = error.value.problems
    assert problem.startswith("module.model.name_or_path: cannot load model")
    assert "hf download lambdalabs/sd-image-variations-diffusers" in problem
