"""ViT classification through the real loading paths: local model folder, save_to_disk, image folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from hotcv_train.run import run
from tests.conftest import train_py
from tests.tiny.classification import (
    NUM_LABELS,
    classification_overrides,
    colour_images,
    tiny_cifar,
    tiny_vit,
)


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_fit_then_test_writes_the_run_folder(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), "trainer.max_epochs=2"
    )
    metrics = run(cfg)

    run_dir = tmp_path / "run"
    assert read_metrics(run_dir) == pytest.approx(metrics)
    for key in ("test/acc", f"test/acc_top{NUM_LABELS}", "test/loss", "val/loss", "val/acc"):
        assert key in metrics, key
    assert metrics["test/samples"] == 17  # every test image, once
    ckpts = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    for plot in ("training_curves.png", "confusion_matrix.png", "test_samples.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 1000, plot
    # Epoch metrics are logged once per epoch (TaskModule.log_epoch): each epoch has its own,
    # computed over that epoch only (val/samples counts the val split once, not cumulatively).
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    for epoch in ("0", "1"):
        logged = {k for r in rows if r["epoch"] == epoch for k, v in r.items() if v}
        assert {"train/loss_epoch", "train/acc", "val/acc", "val/samples"} <= logged, epoch
    val_samples = [float(r["val/samples"]) for r in rows if r.get("val/samples")]
    assert len(val_samples) == 2 and val_samples[0] == val_samples[1] > 0
    # The classifier head was resized from the checkpoint's to the data's label count.
    import hotcv_train.models  # noqa: F401  (allows its ModelSpec in weights-only loads)

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["model.classifier.weight"].shape[0] == NUM_LABELS


class StepLossRecorder(L.Callback):
    """Writes, after every training step, the step's loss and the `train/loss` callbacks see."""

    def __init__(self, path: str):
        self.path, self.steps = Path(path), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seen = trainer.callback_metrics.get("train/loss")
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "last_batch": trainer.is_last_batch,
                "loss": float(pl_module.last_loss),
                "seen": None if seen is None else float(seen),
            }
        )

    def on_train_end(self, trainer, pl_module) -> None:
        self.path.write_text(json.dumps(self.steps))


def test_the_step_loss_reaches_loggers_and_callbacks_as_if_logged_every_step(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    """`train/loss` is `self.log`ged only when something reads it (`_logs_step_loss`): the CSV
    logger still gets every `log_every_n_steps`-th step's loss, and callbacks find one from the
    first step on and the last step's at each epoch's end."""
    record = tmp_path / "steps.json"
    cfg_overrides = [
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=4",
        "test_after_fit=false",
        f"+callbacks.recorder={{_target_: {__name__}.StepLossRecorder, path: '{record}'}}",
    ]
    run(make_config(*cfg_overrides))
    steps = json.loads(record.read_text())
    assert len(steps) >= 12 and sum(s["last_batch"] for s in steps) == 3
    assert all(s["seen"] is not None for s in steps)  # from the first step on
    for i, s in enumerate(steps):
        if (i + 1) % 4 == 0 or s["last_batch"]:
            assert s["seen"] == pytest.approx(s["loss"]), i
    rows = csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open())
    logged = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    expected = [s["loss"] for i, s in enumerate(steps) if (i + 1) % 4 == 0]
    assert logged == pytest.approx(expected)
    # the others are not read back on each step: a later step's value shows somewhere
    assert any(s["seen"] != pytest.approx(s["loss"]) for s in steps)

    # A run stopped mid-epoch by max_steps reports its last step's loss.
    metrics = run(make_config(*cfg_overrides, "trainer.max_steps=3"))
    steps = json.loads(record.read_text())
    assert len(steps) == 3 and not steps[-1]["last_batch"]
    assert metrics["train/loss"] == pytest.approx(steps[-1]["loss"])


def test_resume_and_evaluate_a_checkpoint(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    base = ["task=vit_cifar10", *classification_overrides(tiny_dir)]
    run(make_config(*base, "trainer.max_epochs=1", "test_after_fit=false"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    resumed = tmp_path / "resumed"
    from tests.conftest import compose_config

    cfg = compose_config(resumed, *base, "trainer.max_epochs=2", f"ckpt_path={last}")
    run(cfg)
    state = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1  # continued from epoch 0 instead of starting over
    assert state["global_step"] == 2 * torch.load(last, weights_only=True)["global_step"]

    evaluated = compose_config(tmp_path / "eval", *base, "stage=test", f"ckpt_path={last}")
    metrics = run(evaluated)
    assert set(metrics) >= {"test/acc", "test/loss"} and not any(
        k.startswith("train/") for k in metrics
    )


@pytest.mark.parametrize("device_transforms", [False, True])
def test_tiny_vit_learns_well_above_chance(
    make_config, tiny_dir: Path, tmp_path: Path, device_transforms: bool
) -> None:
    data = tiny_cifar(tmp_path / "learnable", n_train=160, n_test=40)
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        f"dataset.path={data}",
        f"dataset.device_transforms={device_transforms}",
        "trainer.max_epochs=6",
        "module.optimizer.lr=3e-3",
        "module.scheduler.warmup_ratio=0.05",
    )
    metrics = run(cfg)
    chance = 1 / NUM_LABELS
    assert metrics["test/acc"] >= chance + 0.45, metrics  # >= 0.70 where chance is 0.25
    history = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    header = history[0].split(",")
    col = header.index("train/loss_epoch")
    losses = [float(r.split(",")[col]) for r in history[1:] if r.split(",")[col]]
    assert losses[-1] < 0.6 * losses[0], losses


def test_image_folder_source_is_renamed_to_the_configured_columns(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    names = ["red", "green", "blue", "grey"]
    for split, n, seed in (("train", 24, 0), ("test", 8, 1)):
        images, labels = colour_images(n, seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            path = folder / split / names[label] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), f"dataset.path={folder}"
    )
    metrics = run(cfg)
    assert metrics["test/samples"] == 8


def test_validation_is_carved_from_train_with_a_fixed_seed(make_config, tiny_dir: Path) -> None:
    from hydra.utils import instantiate

    cfg = make_config("task=vit_cifar10", *classification_overrides(tiny_dir))
    carve = []
    for _ in range(2):
        dm = instantiate(cfg.dataset, _convert_="object")
        dm.setup("fit")
        carve.append([*sorted(dm.splits["val"]["label"]), len(dm.splits["train"])])
    assert carve[0] == carve[1]
    assert carve[0][-1] == 48 - 5  # 10% of the 48 training rows held out


def test_fast_dev_run_touches_every_stage_once(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    metrics = run(
        make_config("task=vit_cifar10", *classification_overrides(tiny_dir), "debug=fast_dev_run")
    )
    assert metrics["test/samples"] == 8  # one batch
    assert {"train/loss", "val/loss", "test/loss"} <= set(metrics)


@pytest.mark.parametrize("pretrained", [True, False])
def test_model_sources_local_folder_and_random_init(tiny_dir: Path, pretrained: bool) -> None:
    from transformers import AutoModelForImageClassification, ViTForImageClassification

    from hotcv_train.models import ModelSpec, build_model

    folder = tiny_dir / "vit"
    saved = ViTForImageClassification.from_pretrained(folder)
    spec = ModelSpec(
        name_or_path=str(folder), pretrained=pretrained, config={"hidden_dropout_prob": 0.2}
    )
    model = build_model(spec, AutoModelForImageClassification, num_labels=NUM_LABELS)
    same = torch.equal(
        model.vit.embeddings.patch_embeddings.projection.weight,
        saved.vit.embeddings.patch_embeddings.projection.weight,
    )
    assert same is pretrained  # the architecture always, the weights only when pretrained
    assert model.config.hidden_dropout_prob == 0.2 and model.config.hidden_size == 32
    assert model.training


def test_a_folder_of_class_folders_runs_with_no_extra_keys(tiny_dir: Path, tmp_path: Path) -> None:
    """What users own: one folder, a subfolder per class (2 here, not CIFAR's 10), no splits."""
    folder = tmp_path / "my photos"
    images, labels = colour_images(40, seed=3)
    for i, (image, label) in enumerate(zip(images, labels)):
        if label < 2:
            path = folder / ["cats", "dogs"][label] / f"img {i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    result = train_py(
        "task=vit_cifar10",
        f"dataset.path={folder}",
        f"module.model.name_or_path={tiny_vit(tiny_dir / 'vit')}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 16, val 2 (carved from train), test 2 (carved from train)" in result.stdout
    (run_dir,) = (tmp_path / "outputs" / "vit_cifar10").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/samples"] == 2
    # Classes and their names come from the folders, into the checkpoint's model config.
    import hotcv_train.models  # noqa: F401  (allows its ModelSpec in weights-only loads)

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["label_names"] == ["cats", "dogs"]


def test_device_transforms_match_the_per_image_ones() -> None:
    """Batched on the device: the eval resize equals torchvision's per-image one (each image of
    a mixed-size batch resized from its own pixels only), and training crops follow
    RandomResizedCrop's distribution."""
    from PIL import Image
    from torchvision.transforms import v2

    from hotcv_train.datamodules.classification import collate_padded, image_tensor
    from hotcv_train.datamodules.preprocessing import (
        Preprocessing,
        crop_boxes,
        draw_boxes,
        transform_batch,
    )

    p = Preprocessing(size=(24, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    g = torch.Generator().manual_seed(0)
    pixels = [
        torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).numpy()
        for h, w in [(8, 8), (6, 11), (12, 5)]
    ]
    images = [Image.fromarray(x) for x in pixels]
    batch = collate_padded(
        [{"pixel_values": image_tensor(i), "labels": torch.tensor(0)} for i in images]
    )
    assert batch["image_sizes"].tolist() == [[8, 8], [6, 11], [12, 5]]
    same = collate_padded([{"pixel_values": image_tensor(images[1])} for _ in range(2)])
    assert torch.equal(same["pixel_values"], image_tensor(images[1]).expand(2, -1, -1, -1))
    boxes, flip = draw_boxes(batch["image_sizes"])  # eval: whole images, no flips
    assert flip is None
    out = transform_batch(batch["pixel_values"], boxes, flip, p)
    per_image = v2.Compose(  # the DataLoader path's eval transforms (all upscales here)
        [
            v2.ToImage(),
            v2.Resize(p.size, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(p.mean, p.std),
        ]
    )
    for got, image in zip(out, images):
        want = per_image(image)
        # v2 resizes uint8 in uint8 (fixed-point): within 1/255 before normalising.
        torch.testing.assert_close(got, want, atol=1 / 255 / min(p.std), rtol=0)

    torch.manual_seed(0)
    sizes = torch.tensor([[32, 32]] * 4000 + [[20, 60]] * 4000)
    boxes = crop_boxes(sizes, (0.08, 1.0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= sizes[:, 1]).all()
    assert (boxes[:, 3] <= sizes[:, 0]).all() and (w > 0).all() and (h > 0).all()
    area = (w * h / (sizes[:, 0] * sizes[:, 1]))[:4000]
    params = [
        v2.RandomResizedCrop.get_params(torch.zeros(1, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3])
        for _ in range(4000)
    ]
    reference = torch.tensor([crop_h * crop_w / 1024 for _, _, crop_h, crop_w in params])
    assert abs(area.mean() - reference.mean()) < 0.02, (area.mean(), reference.mean())
    assert abs(area.std() - reference.std()) < 0.02


def test_the_progress_bar_shows_each_loops_last_batch_and_at_most_every_every_s(
    make_config, tiny_dir: Path
) -> None:
    """Lightning's bar recomputes every logged metric after each batch; ours only when due."""
    from hotcv_train.callbacks import ProgressBar

    bar = ProgressBar(every_s=3600)
    assert [bar._due(i, 5) for i in range(5)] == [True, False, False, False, True]
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=true",
        "callbacks.progress_bar={_target_: hotcv_train.callbacks.ProgressBar, every_s: 3600}",
    )
    assert run(cfg)["test/samples"] == 17


def test_predict_classifies_a_users_folder_of_unlabelled_images(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """`stage=predict` on what a user has: loose images in nested folders, no labels, a broken
    file and a stray one; the class names come from the checkpoint, not the hub model's config."""
    from tests.conftest import compose_config

    base = ["task=vit_cifar10", *classification_overrides(tiny_dir)]
    data = tiny_cifar(tmp_path / "learnable", n_train=160, n_test=40)
    fit = compose_config(
        tmp_path / "fit",
        *base,
        f"dataset.path={data}",
        "trainer.max_epochs=6",
        "module.optimizer.lr=3e-3",
        "module.scheduler.warmup_ratio=0.05",
        "test_after_fit=false",
    )
    run(fit)
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"

    names = ["red", "green", "blue", "grey"]  # tiny_cifar's; the model's config says LABEL_0...
    folder = tmp_path / "my photos"
    truth = {}
    for i, (image, label) in enumerate(zip(*colour_images(12, seed=7))):
        key = f"{'holiday/' if i % 3 == 0 else ''}IMG {i:02d}"
        path = folder / f"{key}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        truth[key] = names[label]
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    predict = compose_config(
        tmp_path / "predict",
        *base,
        "stage=predict",
        f"dataset.path={folder}",
        f"ckpt_path={ckpt}",
        "dataset.num_workers=auto",  # the default: worker processes, as users run it
    )
    metrics = run(predict)
    lines = (tmp_path / "predict" / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == sorted(truth)  # each image once; broken, stray: not
    assert metrics == {"predict/samples": len(truth)}  # the final metrics say how many
    assert all(len(r["labels"]) == len(r["scores"]) == NUM_LABELS for r in records)
    correct = sum(r["labels"][0] == truth[r["id"]] for r in records)
    assert correct >= 9, records  # 0.75 of 12 where chance is 0.25

    # A saved dataset is predicted on its test split, rows named by their numbers.
    run(compose_config(tmp_path / "split", *base, "stage=predict", f"ckpt_path={ckpt}"))
    lines = (tmp_path / "split" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(17))


def test_one_data_file_is_a_source_and_other_files_are_named(tmp_path: Path) -> None:
    """`dataset.path=<file>.parquet` (one file of a hub export, say) is a dataset with a train
    split; a file datasets cannot read is one line naming it."""
    import datasets

    from hotcv_train.datamodules.base import load_source
    from hotcv_train.errors import UserError

    rows = datasets.load_from_disk(str(tiny_cifar(tmp_path / "cifar")))["test"]
    rows.to_parquet(tmp_path / "test-00000.parquet")
    data = load_source(str(tmp_path / "test-00000.parquet"), None, None)
    assert list(data) == ["train"] and len(data["train"]) == len(rows)
    assert data["train"][0]["img"].size == (32, 32)  # images come back as images
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"notes.txt is a file datasets cannot read as data"):
        load_source(str(tmp_path / "notes.txt"), None, None)


def test_a_users_image_folder_classes_splits_and_mistakes(
    make_config, tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Class folders with subfolders of their own are one class each (not one per subfolder);
    a val/ folder is the validation split (not carved); a class only test/ has is named; loose
    images with no class folders are one line saying so."""
    from hydra.utils import instantiate

    from hotcv_train.errors import UserError

    names = ["red", "green", "blue", "grey"]
    folder = tmp_path / "photos"
    counts = {"train": 24, "val": 8, "test": 8}
    for split, n in counts.items():
        images, labels = colour_images(n, seed=len(split))
        for i, (image, label) in enumerate(zip(images, labels)):
            name = "purple" if split == "test" and label == 2 else names[label]  # a typo in test/
            path = folder / split / name / ["indoor", "outdoor"][i % 2] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), f"dataset.path={folder}"
    )
    dm = instantiate(cfg.dataset, _convert_="object")
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert dm.label_names == ["blue", "green", "grey", "purple", "red"]
    assert {k: len(v) for k, v in dm.splits.items()} == counts  # val/ used as it is
    rows = dm.splits["train"]
    red = rows.filter(lambda r: r == dm.label_names.index("red"), input_columns="label")
    assert len(red) == 6 and all(np.asarray(i).mean(axis=(0, 1)).argmax() == 0 for i in red["img"])
    assert any(
        "['purple']" in r.getMessage() and "no training images" in r.getMessage()
        for r in caplog.records
    )

    flat = tmp_path / "flat"
    flat.mkdir()
    for i, image in enumerate(colour_images(4, seed=0)[0]):
        image.save(flat / f"{i}.png")
    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), f"dataset.path={flat}"
    )
    with pytest.raises(
        UserError, match=r"dataset.path: the images in .*flat are not in class folders"
    ):
        instantiate(cfg.dataset, _convert_="object").setup("fit")


def test_checkpoints_of_other_classes_or_with_nothing_left_to_train_are_named(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Resuming a run that has trained all its epochs says so; testing a checkpoint on data with
    the same number of classes under other names warns; a checkpoint with another number of
    classes is one error, with no interrupted.ckpt written for a run that never trained."""
    import datasets

    from hotcv_train.errors import UserError
    from tests.conftest import compose_config

    base = ["task=vit_cifar10", *classification_overrides(tiny_dir)]
    run(compose_config(tmp_path / "fit", *base, "test_after_fit=false"))
    last = tmp_path / "fit" / "checkpoints" / "last.ckpt"

    with caplog.at_level("WARNING"):
        run(compose_config(tmp_path / "again", *base, f"ckpt_path={last}", "test_after_fit=false"))
    assert any("nothing is left to train" in r.getMessage() for r in caplog.records)

    data = datasets.load_from_disk(str(tiny_dir / "cifar"))
    renamed = data.cast_column("label", datasets.ClassLabel(names=["cat", "dog", "fox", "owl"]))
    renamed.save_to_disk(str(tmp_path / "renamed"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        run(
            compose_config(
                tmp_path / "test",
                *base,
                "stage=test",
                f"ckpt_path={last}",
                f"dataset.path={tmp_path / 'renamed'}",
            )
        )
    assert any(
        "classes ['red', 'green', 'blue', 'grey'] are not the data's ['cat', 'dog', 'fox', 'owl']"
        in r.getMessage()
        for r in caplog.records
    )

    two = data.filter(lambda label: label < 2, input_columns="label")
    two.cast_column("label", datasets.ClassLabel(names=["a", "b"])).save_to_disk(
        str(tmp_path / "two")
    )
    other = tmp_path / "other"
    with pytest.raises(UserError, match=r"holds weights of another model"):
        run(
            compose_config(
                other,
                *base,
                f"ckpt_path={last}",
                f"dataset.path={tmp_path / 'two'}",
                "trainer.max_epochs=2",
            )
        )
    assert not (other / "checkpoints" / "interrupted.ckpt").exists()


def test_a_csv_list_of_image_files_and_class_names(make_config, tiny_dir: Path, tmp_path: Path):
    """`path,label` rows as a user writes them: paths relative to the list, class names as
    text, numbered alike in every split; a listed file that is missing is one line."""
    from hydra.utils import instantiate

    from hotcv_train.errors import UserError

    names = ["red", "green", "blue", "grey"]
    folder = tmp_path / "shots"
    (folder / "pics").mkdir(parents=True)
    lines = ["file,kind"]
    for i, (image, label) in enumerate(zip(*colour_images(20, seed=4))):
        image.save(folder / "pics" / f"{i}.png")
        lines.append(f"pics/{i}.png,{names[label]}")
    (folder / "list.csv").write_text("\n".join(lines) + "\n")
    overrides = [
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        f"dataset.path={folder / 'list.csv'}",
        "dataset.image_column=file",
        "dataset.label_column=kind",
    ]
    dm = instantiate(make_config(*overrides).dataset, _convert_="object")
    dm.setup("fit")
    assert dm.label_names == sorted(names)
    rows = dm.splits["train"]
    for image, label in zip(rows["file"], rows["kind"]):  # each image under its own class
        name, means = dm.label_names[label], np.asarray(image).mean(axis=(0, 1))
        if name == "grey":
            assert means.max() - means.min() < 30, means
        else:
            assert means.argmax() == names.index(name), (name, means)

    (folder / "list.csv").write_text("\n".join([*lines, "pics/gone.png,red"]) + "\n")
    dm = instantiate(make_config(*overrides).dataset, _convert_="object")
    with pytest.raises(
        UserError, match=r"1 file\(s\) listed in .*list.csv do not exist \(first: .*gone.png\)"
    ):
        dm.setup("fit")


def test_empty_labels_are_named_before_training_and_need_not_be_filled_to_predict(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    """A list with empty label cells fails once, naming the file's lines (with their images),
    before any model loads; `stage=predict` runs on it, its rows labelled or not. A saved
    dataset's split without labels (ClassLabel -1) is one line too."""
    import datasets
    from hydra.utils import instantiate

    from hotcv_train.errors import UserError
    from tests.conftest import compose_config

    folder = tmp_path / "shots"
    (folder / "pics").mkdir(parents=True)
    names = ["red", "green", "blue", "grey"]
    lines = ["file,kind"]
    for i, (image, label) in enumerate(zip(*colour_images(20, seed=4))):
        image.save(folder / "pics" / f"{i}.png")
        lines.append(f"pics/{i}.png,{'' if i % 2 else names[label]}")
    lines[5] = "pics/4.png,  "  # blank text is no label either
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    base = [
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        f"dataset.path={folder / 'labels.csv'}",
        "dataset.image_column=file",
        "dataset.label_column=kind",
    ]
    dm = instantiate(make_config(*base).dataset, _convert_="object")
    with pytest.raises(UserError) as error:
        dm.setup("fit")
    assert error.value.problems == [
        "dataset.label_column: labels.csv line 3 (pics/1.png), line 5 (pics/3.png), line 6 "
        "(pics/4.png) and 8 more: empty label; fill them in or drop them (stage=predict needs "
        "no labels)"
    ]
    (folder / "ids.csv").write_text("file,kind\npics/0.png,0\npics/1.png,\npics/2.png,2\n")
    dm = instantiate(
        make_config(*base, f"dataset.path={folder / 'ids.csv'}").dataset, _convert_="object"
    )
    with pytest.raises(UserError, match=r"^dataset.label_column: ids.csv line 3 \(pics/1.png\): "):
        dm.setup("fit")  # not "holds 0.0": pandas reads ids with a gap as floats
    (folder / "paths.csv").write_text("file,kind\npics/0.png,0\n,1\n")
    dm = instantiate(
        make_config(*base, f"dataset.path={folder / 'paths.csv'}").dataset, _convert_="object"
    )
    with pytest.raises(UserError, match=r"^dataset.image_column: paths.csv line 3: empty image "):
        dm.setup("fit")  # not a TypeError on Path(None)

    predict = compose_config(
        tmp_path / "predict", *base, "stage=predict", "dataset.test_fraction=0.5"
    )
    run(predict)
    records = (tmp_path / "predict" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in records] == list(range(10))

    saved = datasets.load_from_disk(str(tiny_dir / "cifar"))
    saved["test"] = saved["test"].map(lambda r: {"label": -1})  # a hub test split's "no label"
    saved.save_to_disk(str(tmp_path / "unlabelled"))
    dm = instantiate(
        make_config(*base[:2], f"dataset.path={tmp_path / 'unlabelled'}").dataset,
        _convert_="object",
    )
    with pytest.raises(
        UserError, match=r"^dataset.test_split: 17 of 17 rows of test of .* have no label in"
    ):
        dm.setup("fit")
