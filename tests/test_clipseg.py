"""clipseg_zeroshot: outputs for every image x prompt, IoU on cases whose answer is known."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hotcv_train.errors import UserError
from hotcv_train.modules.segmentation import iou_per_prompt, predict_labels, prompt_slug
from hotcv_train.run import run
from tests.conftest import compose_config
from tests.tiny.inference_clipseg import (
    IMAGES,
    PROMPTS,
    PROMPTS_OVERRIDE,
    stripe_masks,
    tiny_clipseg,
    tiny_images,
)

SLUGS = [prompt_slug(p) for p in PROMPTS]


def clipseg_config(run_dir: Path, tiny: Path, *overrides: str):
    return compose_config(
        run_dir,
        "task=clipseg_zeroshot",
        f"module.model.name_or_path={tiny_clipseg(tiny / 'clipseg')}",
        f"dataset.path={tiny_images(tiny / 'clipseg_images')}",
        PROMPTS_OVERRIDE,
        "dataset.batch_size=2",
        "module.overlay=false",  # the slow part; drawn in the predict run only
        *overrides,
    )


def read_records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records), "an input listed twice"
    return by_id


def read_labels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))  # palette indices = labels


@pytest.fixture(scope="module")
def predicted(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A predict run (overlays on) over the tiny images: its run folder."""
    run_dir = tmp_path_factory.mktemp("clipseg_predict") / "run"
    run(clipseg_config(run_dir, tiny_dir, "stage=predict", "module.overlay=true"))
    return run_dir


@pytest.fixture(scope="module")
def own_labels(predicted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The predict run's label maps, laid out as a references folder (same relative stems)."""
    folder = tmp_path_factory.mktemp("own_labels")
    for key in IMAGES:
        target = folder / f"{key}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(predicted / "predictions" / f"{key}.labels.png", target)
    return folder


def test_labels_and_iou_on_hand_built_maps() -> None:
    # 2 prompts over a 2x4 image; thresholds 0.5 and 0.3.
    probs = torch.tensor(
        [
            [[0.9, 0.6, 0.2, 0.1], [0.4, 0.45, 0.0, 0.7]],
            [[0.1, 0.7, 0.35, 0.2], [0.2, 0.4, 0.1, 0.6]],
        ]
    )
    labels = predict_labels(probs, torch.tensor([0.5, 0.3]))
    # (0,1): both claim it, prompt 2 is more probable; (0,2): 0.35 >= 0.3 claims it for prompt 2;
    # (1,0): nobody reaches a threshold; (1,1): prompt 1 is more probable but below its 0.5.
    assert labels.tolist() == [[1, 2, 2, 0], [0, 2, 0, 1]]

    target = torch.tensor([[1, 2, 0, 0], [1, 1, 255, 1]])
    # label 1: pred {(0,0),(1,3)}, target {(0,0),(1,0),(1,1),(1,3)} -> 2 / 4
    # label 2: pred {(0,1),(0,2),(1,1)}, target {(0,1)} -> 1 / 3 (nothing ignored yet)
    assert iou_per_prompt(labels, target, 2, None) == pytest.approx([0.5, 1 / 3])
    assert iou_per_prompt(labels, target, 2, 255) == pytest.approx([0.5, 1 / 3])
    # ignoring (1,1) removes a label-1 target pixel and a label-2 predicted pixel
    target[1, 1] = 255
    assert iou_per_prompt(labels, target, 2, 255) == pytest.approx([2 / 3, 1 / 2])
    # a label in neither map has no IoU (not 0, not 1)
    assert iou_per_prompt(labels, target, 3, 255)[2] is None


def test_masks_for_every_image_and_prompt(predicted: Path) -> None:
    records = read_records(predicted)
    assert sorted(records) == sorted(IMAGES)
    for key, (height, width) in IMAGES.items():
        expected = [f"predictions/{key}.mask_{s}.png" for s in SLUGS]
        expected += [f"predictions/{key}.labels.png", f"predictions/{key}.overlay.png"]
        assert records[key]["outputs"] == expected
        assert records[key]["metrics"] == {}  # predict stage: nothing scored
        for slug in SLUGS:
            mask = Image.open(predicted / "predictions" / f"{key}.mask_{slug}.png")
            assert (mask.mode, mask.size) == ("L", (width, height))
        labels = read_labels(predicted / "predictions" / f"{key}.labels.png")
        assert labels.shape == (height, width) and labels.max() <= len(PROMPTS)
    written = sorted(p.relative_to(predicted).as_posix() for p in predicted.rglob("*.png"))
    assert written == sorted(o for r in records.values() for o in r["outputs"])
    # the tiny model is random, but its prompts must not all collapse to one label
    every_label = np.concatenate(
        [read_labels(predicted / r["outputs"][-2]).ravel() for r in records.values()]
    )
    assert len(np.unique(every_label)) >= 3


def test_miou_is_one_against_own_label_maps(
    own_labels: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, f"dataset.references={own_labels}"))
    assert metrics["test/miou"] == pytest.approx(1.0)
    for slug in SLUGS:
        assert metrics[f"test/iou_{slug}"] == pytest.approx(1.0)
    for record in read_records(tmp_path / "run").values():
        assert record["metrics"]["miou"] == pytest.approx(1.0)


def test_iou_summed_over_images(own_labels: Path, tiny_dir: Path, tmp_path: Path) -> None:
    """Corrupt the masks in known ways; the IoU is intersections over unions summed over images."""
    masks = tmp_path / "masks"
    shutil.copytree(own_labels, masks)
    beach = read_labels(masks / "beach.png").copy()
    beach[beach == 1] = 2  # every prompt-1 pixel of one image called prompt 2
    Image.fromarray(beach).save(masks / "beach.png")
    park = read_labels(masks / "park.png").copy()
    park[: park.shape[0] // 2] = 255  # top half void
    Image.fromarray(park).save(masks / "park.png")

    inter, union = np.zeros(len(PROMPTS)), np.zeros(len(PROMPTS))
    for key in IMAGES:
        pred = read_labels(own_labels / f"{key}.png")
        target = read_labels(masks / f"{key}.png")
        valid = target != 255
        for k in range(1, len(PROMPTS) + 1):
            inter[k - 1] += ((pred == k) & (target == k) & valid).sum()
            union[k - 1] += (((pred == k) | (target == k)) & valid).sum()
    expected = inter / union
    assert expected[0] < 1 and expected[1] < 1  # the corruption changed something

    overrides = [f"dataset.references={masks}", "module.ignore_index=255"]
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, *overrides))
    for slug, value in zip(SLUGS, expected):
        assert metrics[f"test/iou_{slug}"] == pytest.approx(value, abs=1e-6)
    assert metrics["test/miou"] == pytest.approx(expected.mean(), abs=1e-6)
    records = read_records(tmp_path / "run")
    assert records["city"]["metrics"]["miou"] == pytest.approx(1.0)  # untouched
    assert records["beach"]["metrics"]["miou"] < 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0, 255), r"is a binary 0/255 mask, which cannot say which of the 3 prompts it marks; "
         r"score one prompt at a time \('module.prompts=\["),
        ((0, 1, 7), r"holds label\(s\) \[7\] but module.prompts has 3 prompt\(s\); .*"
         r"set module.ignore_index=<value>"),
    ],
    ids=["binary", "beyond_the_prompts"],
)  # fmt: skip
def test_a_mask_that_fits_no_prompt_stops_the_run_before_anything_is_written(
    values: tuple[int, ...], message: str, tiny_dir: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(stripe_masks(tiny_dir / "clipseg_masks"), masks)
    height, width = IMAGES["zoo"]  # the last input: a check at its turn comes after the others
    pixels = np.resize(np.array(values, np.uint8), height * width).reshape(height, width)
    Image.fromarray(pixels).save(masks / "zoo.png")
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=rf"^dataset.references: mask {masks / 'zoo.png'} "
                       rf"\(input zoo\) {message}") as error:  # fmt: skip
        run(clipseg_config(run_dir, tiny_dir, f"dataset.references={masks}"))
    assert len(error.value.problems) == 1
    assert not (run_dir / "predictions").exists() and not (run_dir / "predictions.jsonl").exists()


def test_binary_masks_of_one_prompt_score_as_label_maps(tiny_dir: Path, tmp_path: Path) -> None:
    """With one prompt, a mask's foreground is its nonzero pixels in a 0/1 mask and those over
    127 in an 8-bit one: 0/255 PNGs, 1-bit PNGs and grey-edged (resized, JPEG) masks all score
    as the 0/1 label map does."""
    stripes = stripe_masks(tiny_dir / "clipseg_masks")
    rng = np.random.default_rng(0)
    formats = {
        "label_map": lambda fg: Image.fromarray(fg.astype(np.uint8)),
        "0_255": lambda fg: Image.fromarray(fg.astype(np.uint8) * 255),
        "1_bit": lambda fg: Image.fromarray(fg),  # mode "1"
        "grey": lambda fg: Image.fromarray(
            np.where(fg, rng.integers(128, 256, fg.shape), rng.integers(0, 128, fg.shape))
            .astype(np.uint8)
        ),
    }  # fmt: skip
    results = {}
    for name, to_image in formats.items():
        masks = tmp_path / name
        for key in IMAGES:
            foreground = read_labels(stripes / f"{key}.png") >= 2  # the lower half
            (masks / key).parent.mkdir(parents=True, exist_ok=True)
            to_image(foreground).save(masks / f"{key}.png")
        overrides = [f"dataset.references={masks}", "module.prompts=[sky]", "module.threshold=0.3"]
        metrics = run(clipseg_config(tmp_path / f"run_{name}", tiny_dir, *overrides))
        results[name] = metrics, read_records(tmp_path / f"run_{name}")
    assert Image.open(tmp_path / "1_bit" / "zoo.png").mode == "1"
    metrics, records = results["label_map"]
    assert metrics["test/scored"] == len(IMAGES) and 0 < metrics["test/iou_sky"] < 1
    for name in formats:
        assert results[name][0] == pytest.approx(metrics), name
        assert results[name][1] == records, name


def test_missing_reference_is_an_error_or_unscored(
    own_labels: Path, tiny_dir: Path, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(own_labels, masks)
    (masks / "sub" / "field.png").unlink()
    config = [f"dataset.references={masks}"]
    with pytest.raises(UserError, match=r"sub/field.*dataset\.missing_reference=skip"):
        run(clipseg_config(tmp_path / "error", tiny_dir, *config))

    metrics = run(
        clipseg_config(tmp_path / "run", tiny_dir, *config, "dataset.missing_reference=skip")
    )
    assert metrics["test/miou"] == pytest.approx(1.0)
    records = read_records(tmp_path / "run")
    assert sorted(records) == sorted(IMAGES)  # the unscored input still gets its outputs
    assert records["sub/field"]["metrics"] == {}
    assert len(records["sub/field"]["outputs"]) == len(PROMPTS) + 1
    assert all(records[k]["metrics"] for k in IMAGES if k != "sub/field")


def test_hf_dataset_with_a_mask_column(predicted: Path, tiny_dir: Path, tmp_path: Path) -> None:
    import datasets

    keys = sorted(IMAGES)
    rows = {
        "name": [k.replace("/", "_") for k in keys],
        "image": [Image.open(tiny_dir / "clipseg_images" / f"{k}.png") for k in keys],
        "mask": [Image.open(predicted / "predictions" / f"{k}.labels.png") for k in keys],
    }
    features = datasets.Features(
        {"name": datasets.Value("string"), "image": datasets.Image(), "mask": datasets.Image()}
    )
    folder = tmp_path / "dataset"
    datasets.DatasetDict(
        {"test": datasets.Dataset.from_dict(rows, features=features)}
    ).save_to_disk(folder)

    overrides = [f"dataset.path={folder}", "dataset.id_column=name", "dataset.references=mask"]
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, *overrides))
    assert metrics["test/miou"] == pytest.approx(1.0)  # same pixels in, same label maps out
    records = read_records(tmp_path / "run")
    assert sorted(records) == sorted(rows["name"])
    assert (tmp_path / "run" / "predictions" / "sub_field.mask_sky.png").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("module.threshold=[0.5,0.5]", "module.threshold: 2 values for 3 prompts"),
        ("module.threshold=1.5", r"module.threshold: probabilities must be in \[0, 1\]"),
        ("module.prompts=['a cat','A CAT!']", "'a cat' and 'A CAT!' both name outputs 'a_cat'"),
        ("module.ignore_index=2", "module.ignore_index: must be above the last label"),
    ],
)
def test_bad_module_settings_fail_before_the_model_loads(
    override: str, message: str, tiny_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=message):
        run(clipseg_config(tmp_path / "run", tiny_dir, override))


def test_test_stage_without_references_writes_outputs_only(tiny_dir: Path, tmp_path: Path) -> None:
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, "dataset.max_inputs=2"))
    assert metrics == {"test/samples": 2, "test/skipped": 0}  # no references: no test/scored
    records = read_records(tmp_path / "run")
    assert len(records) == 2 and all(r["metrics"] == {} for r in records.values())


def users_folder(tiny: Path, tmp_path: Path) -> Path:
    """The tiny images as a user's folder has them: with a broken file, a hidden folder and a
    macOS AppleDouble fork beside them."""
    folder = tmp_path / "photos"
    shutil.copytree(tiny_images(tiny / "clipseg_images"), folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "._beach.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".thumbs").mkdir()
    shutil.copy(folder / "city.png", folder / ".thumbs" / "city.png")
    return folder


def test_inputs_processed_skipped_and_scored_are_counted(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photos = users_folder(tiny_dir, tmp_path)
    masks = tmp_path / "masks"
    shutil.copytree(stripe_masks(tiny_dir / "clipseg_masks"), masks)
    (masks / "zoo.png").unlink()
    overrides = [
        f"dataset.path={photos}",
        f"dataset.references={masks}",
        "dataset.missing_reference=skip",
    ]
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, *overrides))
    assert (metrics["test/samples"], metrics["test/skipped"]) == (len(IMAGES), 1)
    assert metrics["test/scored"] == len(IMAGES) - 1  # zoo has no mask
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)
    assert sorted(read_records(tmp_path / "run")) == sorted(IMAGES)  # nothing hidden processed
    assert f"cannot decode {photos / 'broken.png'}" in caplog.text
    assert "2 of 6 input(s) have no reference" in caplog.text  # zoo, broken


def test_hidden_files_and_folders_are_left_out(tmp_path: Path) -> None:
    from hotcv_train.datamodules.images import find_images

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    for hidden in (".cache/b.png", "sub/.c.png", "._a.png", "sub/.git/d.png"):
        (tmp_path / hidden).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / hidden)
    assert find_images(tmp_path) == {"a": tmp_path / "a.png"}


def test_a_run_that_processes_nothing_is_an_error(tiny_dir: Path, tmp_path: Path) -> None:
    photos = users_folder(tiny_dir, tmp_path)
    (photos / "notes.txt").write_text("not an image")
    listed = [f"dataset.files=[{photos / 'broken.png'}]", "dataset.path=null"]
    with pytest.raises(UserError, match=r"no input could be processed: all 1 were skipped"):
        run(clipseg_config(tmp_path / "run", tiny_dir, *listed))
    with pytest.raises(UserError, match=r"no input could be processed"):  # stage=predict too
        run(clipseg_config(tmp_path / "predict", tiny_dir, *listed, "stage=predict"))
    text = [f"dataset.files=[{photos / 'city.png'},{photos / 'notes.txt'}]", "dataset.path=null"]
    with pytest.raises(UserError, match=r"dataset.files: .*notes.txt is not an image file"):
        run(clipseg_config(tmp_path / "text", tiny_dir, *text))  # before the model loads


def test_no_matching_reference_under_skip_is_a_warning(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "elsewhere.png")
    overrides = [f"dataset.references={masks}", "dataset.missing_reference=skip"]
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, *overrides, "dataset.max_inputs=2"))
    assert (metrics["test/samples"], metrics["test/scored"]) == (2, 0)
    assert "test/miou" not in metrics
    assert "none of the 2 input(s) has a reference" in caplog.text


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_a_corrupt_reference_is_named_and_never_drops_its_input_silently(
    policy: str, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(stripe_masks(tiny_dir / "clipseg_masks"), masks)
    (masks / "city.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    overrides = [f"dataset.references={masks}", f"dataset.missing_reference={policy}"]
    metrics = run(clipseg_config(tmp_path / "run", tiny_dir, *overrides))
    records = read_records(tmp_path / "run")
    assert str(masks / "city.png") in caplog.text
    assert f"cannot decode {tiny_dir}" not in caplog.text  # the input itself is fine
    if policy == "skip":  # evaluated, unscored
        assert records["city"]["metrics"] == {} and len(records) == len(IMAGES)
        assert (metrics["test/samples"], metrics["test/scored"]) == (len(IMAGES), len(IMAGES) - 1)
        assert "input city is evaluated unscored" in caplog.text
    else:  # skipped, counted, and the way to keep it named
        assert "city" not in records and metrics["test/skipped"] == 1
        assert "dataset.missing_reference=skip" in caplog.text


def test_an_image_over_the_pixel_limit_is_skipped_and_named(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    # PIL refuses images over twice the limit: beach (40x56) and park (48x30) here.
    with pytest.warns(Image.DecompressionBombWarning):  # the others are over the limit itself
        metrics = run(clipseg_config(tmp_path / "run", tiny_dir, "dataset.max_image_pixels=600"))
    assert (metrics["test/samples"], metrics["test/skipped"]) == (3, 2)
    assert sorted(read_records(tmp_path / "run")) == ["city", "sub/field", "zoo"]
    assert (
        "skipping input beach: " in caplog.text and "raise dataset.max_image_pixels" in caplog.text
    )


def test_listed_files_with_one_name_keep_their_own_outputs(tiny_dir: Path, tmp_path: Path) -> None:
    images = tiny_images(tiny_dir / "clipseg_images")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(
            images / f"{'city' if folder == 'a' else 'zoo'}.png", tmp_path / folder / "x.png"
        )
    listed = f"dataset.files=[{tmp_path / 'a' / 'x.png'},{tmp_path / 'b' / 'x.png'}]"
    run(clipseg_config(tmp_path / "run", tiny_dir, listed, "dataset.path=null", "stage=predict"))
    records = read_records(tmp_path / "run")
    assert sorted(records) == ["a/x", "b/x"]
    assert (tmp_path / "run" / "predictions" / "b" / "x.labels.png").exists()
    twice = f"dataset.files=[{tmp_path / 'a' / 'x.png'},{tmp_path / 'a' / 'x.png'}]"
    with pytest.raises(UserError, match=r"x\.png is listed twice"):
        run(clipseg_config(tmp_path / "twice", tiny_dir, twice, "dataset.path=null"))


def test_listed_files_need_no_path(tiny_dir: Path, tmp_path: Path) -> None:
    """dataset.files alone is enough; neither or both is one line naming the fix."""
    images = tiny_images(tiny_dir / "clipseg_images")
    model = f"module.model.name_or_path={tiny_clipseg(tiny_dir / 'clipseg')}"
    listed = f"dataset.files=[{images / 'city.png'},{images / 'zoo.png'}]"
    task = ["task=clipseg_zeroshot", model, PROMPTS_OVERRIDE, "module.overlay=false"]
    run(compose_config(tmp_path / "run", *task, listed, "stage=predict"))
    assert sorted(read_records(tmp_path / "run")) == ["city", "zoo"]

    with pytest.raises(UserError) as error:
        run(compose_config(tmp_path / "neither", *task))
    assert error.value.problems == [
        "dataset.path: no inputs given; set dataset.path=<image folder | save_to_disk folder | "
        "hub dataset id> or dataset.files=[a.png,b.png]"
    ]
    with pytest.raises(UserError) as error:
        run(compose_config(tmp_path / "both", *task, listed, f"dataset.path={images}"))
    assert error.value.problems == [
        f"dataset.files: given together with dataset.path={images}; give one of them "
        "(dataset.path=null runs on the listed files)"
    ]


@pytest.mark.parametrize("key", ["image_mode", "reference_mode"])
def test_an_unknown_pil_mode_is_a_config_error(key: str, tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"dataset.{key}: expected one of 'RGB', .*got 'XYZ'"):
        run(clipseg_config(tmp_path / "run", tiny_dir, f"dataset.{key}=XYZ"))


def test_predict_ignores_references(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    masks = tmp_path / "masks"  # none of the inputs has one: an error at stage=test
    masks.mkdir()
    overrides = [f"dataset.references={masks}", "stage=predict", "dataset.max_inputs=2"]
    caplog.set_level(logging.INFO, logger="hotcv_train")
    run(clipseg_config(tmp_path / "run", tiny_dir, *overrides))
    assert len(read_records(tmp_path / "run")) == 2
    assert "dataset.references: ignored at stage=predict" in caplog.text


def _inputs(tmp_path: Path, references: Path, *inputs: str):
    from hotcv_train.datamodules.images import ImageInputsDataModule

    for name in inputs:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "in" / name)
    return ImageInputsDataModule(
        path=str(tmp_path / "in"), files=None, split="test", image_column="image",
        id_column=None, references=str(references), missing_reference="error",
        image_mode="RGB", reference_mode="L", max_inputs=None, batch_size=1, num_workers=0,
        max_image_pixels=None,
    )  # fmt: skip


def test_references_that_would_match_one_input_twice_are_an_error(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    (refs / "x").mkdir(parents=True)
    (refs / "y").mkdir()
    for name in ("a.png", "a.bmp", "x/field.png", "y/field.png", "b.png"):
        Image.new("L", (4, 4)).save(refs / name)
    data = _inputs(tmp_path, refs, "a.jpg", "sub/field.png", "b.png")
    with pytest.raises(UserError) as error:
        data.setup("test")
    assert error.value.problems == [
        f"dataset.references: a.bmp and a.png in {refs} share a stem, so both would match "
        "input a; keep one",
        "dataset.references: input sub/field has no reference at sub/field.* and 2 with its file "
        f"name (x/field, y/field); put its reference at sub/field.<suffix> in {refs}",
    ]


def test_a_reference_is_matched_by_file_name_when_only_one_has_it(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    (refs / "sub").mkdir(parents=True)
    for name in ("field.png", "sub/b.png", "b.png", "other/b.png"):
        (refs / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(refs / name)
    data = _inputs(tmp_path, refs, "sub/field.png", "sub/b.png")
    data.setup("test")
    assert {k: r for k, _, r in data.items} == {
        "sub/field": refs / "field.png",  # the only one by that name
        "sub/b": refs / "sub" / "b.png",  # the relative path first; the other b's never asked
    }
