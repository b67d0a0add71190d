"""Bad input and interruptions have defined outcomes: a NaN loss, a corrupt image, SIGTERM, Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from hotcv_train.errors import NonFiniteLossError
from hotcv_train.run import run
from tests.conftest import ROOT, TEST_OVERRIDES, compose_config
from tests.tiny.classification import classification_overrides, colour_images


def test_nan_loss_stops_with_a_clear_error(make_config, tiny_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
        "module.optimizer.lr=1e30",
        "module.scheduler=null",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        run(cfg)
    (problem,) = caught.value.problems
    assert problem.startswith("train/loss is nan at epoch 0")
    assert "lower module.optimizer.lr" in problem
    # No "interrupted" checkpoint of diverged weights.
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()


def odd_images(base: Any) -> dict[str, Any]:
    """Valid images users have that a plain `.convert("RGB")` mangles or that trip readers."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(base)
    grey16 = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)  # mode I;16
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    frames = [base, base.rotate(90)]
    return {
        "cmyk [1].jpg": base.convert("CMYK"),
        "grey 16-bit é.png": grey16,
        "palette+transparency.png": palette,
        "grey+alpha.png": base.convert("LA"),
        "tiny 1x1.png": base.resize((1, 1)),
        "animated.gif": frames,
    }


@pytest.mark.parametrize("device_transforms", [False, True])
def test_bad_files_are_skipped_by_name_and_odd_images_just_work(
    make_config,
    tiny_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    device_transforms: bool,
) -> None:
    import numpy as np

    folder = tmp_path / "folder"
    names = ["red", "green", "blue", "grey"]
    for split, n in (("train", 16), ("test", 8)):
        images, labels = colour_images(n, seed=0)
        for i, (image, label) in enumerate(zip(images, labels)):
            (folder / split / names[label]).mkdir(parents=True, exist_ok=True)
            image.save(folder / split / names[label] / f"{i}.png")
    (folder / "test" / "red" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "test" / "red" / "empty.png").write_bytes(b"")
    odd = odd_images(colour_images(1, seed=5)[0][0])
    for name, image in odd.items():
        if isinstance(image, list):
            image[0].save(folder / "test" / "green" / name, save_all=True, append_images=image[1:])
        else:
            image.save(folder / "test" / "green" / name)

    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        f"dataset.path={folder}",
        f"dataset.device_transforms={device_transforms}",  # a batch of mixed sizes
    )
    with caplog.at_level("WARNING"):
        metrics = run(cfg)
    # 8 good + 6 odd test images; the truncated and the empty file are skipped, by name.
    assert metrics["test/samples"] == 8 - 1 + len(odd)
    assert metrics["test/skipped"] == 2
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert any(str(folder / "test" / "red" / "0.png") in w for w in warnings), warnings
    assert any(str(folder / "test" / "red" / "empty.png") in w for w in warnings), warnings

    from hotcv_train.datamodules.preprocessing import to_rgb

    grey = np.asarray(to_rgb(odd["grey 16-bit é.png"]))
    assert grey.dtype == np.uint8 and 0 < grey.mean() < 250  # rescaled, not clipped to white


def first_checkpoint(
    process: subprocess.Popen, cwd: Path, task: str, timeout: float, poll: float
) -> Path:
    """The run folder `process` (train.py started in `cwd`) made, once its last.ckpt exists."""
    deadline = time.time() + timeout
    while not (found := sorted((cwd / "outputs" / task).glob("*/checkpoints/last.ckpt"))):
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(poll)
    return found[0].parents[1]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 1)], ids=["sigterm", "ctrl-c"]
)
def test_interrupted_fit_saves_a_resumable_checkpoint(
    sig: signal.Signals, code: int, tiny_dir: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-X",
        "faulthandler",  # SIGABRT prints every thread's stack, should it ever hang
        str(ROOT / "train.py"),
        *TEST_OVERRIDES,
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=1000",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        run_dir = first_checkpoint(process, tmp_path, "vit_cifar10", timeout=180, poll=0.2)
        process.send_signal(sig)
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            pytest.fail(f"still running 120 s after {sig.name}:\n{process.communicate()[0]}")
    finally:
        process.kill()
    assert process.returncode == code, output[-3000:]
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert interrupted.exists(), output[-3000:]
    assert f"resume with ckpt_path={interrupted}" in output
    assert f"{'SIGTERM' if sig == signal.SIGTERM else 'Ctrl-C'} in epoch " in output
    assert not (run_dir / "metrics.json").exists()  # no results claimed for a cut-short run

    from tests.conftest import compose_config

    cfg = compose_config(
        tmp_path / "resumed",
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=2",
        f"ckpt_path={interrupted}",
    )
    metrics = run(cfg)
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["test/samples"] == 17
    assert "test/acc" in metrics


class CtrlCInDel(L.Callback):
    """Presses Ctrl-C at training step 2 while Python runs a `__del__`, where the
    KeyboardInterrupt is only printed ("Exception ignored in ...") and the run would go on."""

    class Lost:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs here, inside __del__
                pass

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == 2:
            self.Lost()


def test_ctrl_c_stops_the_run_even_when_its_interrupt_is_lost(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=1000",
        f"+callbacks.ctrl_c._target_={__name__}.CtrlCInDel",
    )
    try:
        with pytest.raises(SystemExit) as stopped:  # Lightning's graceful Ctrl-C exit
            run(cfg)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left it ignored
    assert stopped.value.code == 1
    state = torch.load(tmp_path / "run" / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert state["global_step"] == 2  # stopped at that batch's end, not thousands of steps on


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("cat", "cat"),
        ("sub/dir/cat 1", "sub/dir/cat 1"),
        ("./a//b/", "a/b"),
        ("a\\b", "a/b"),
        ("../../x", None),
        ("a/../../x", None),
        ("/abs/x", None),
        ("C:\\x", None),
        ("", None),
        ("./", None),
    ],
)
def test_input_ids_never_name_a_place_outside_the_run_folder(raw: str, safe: str | None) -> None:
    from hotcv_train.datamodules.images import safe_id

    assert safe_id(raw) == safe


@pytest.mark.parametrize("bad", ["../../escaped", "/tmp/escaped"])
def test_a_dataset_id_that_escapes_is_refused_before_anything_is_written(
    bad: str, tmp_path: Path
) -> None:
    import datasets

    from hotcv_train.datamodules.images import ImageInputsDataModule
    from hotcv_train.errors import UserError

    images, _ = colour_images(2, seed=0)
    rows = {"name": ["fine", bad], "image": images}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "d")
    dm = ImageInputsDataModule(
        path=str(tmp_path / "d"), files=None, split="test", image_column="image",
        id_column="name", references=None, missing_reference="error", image_mode="RGB",
        reference_mode="RGB", max_inputs=None, batch_size=1, num_workers=0, max_image_pixels=None,
    )  # fmt: skip
    with pytest.raises(UserError, match=r"dataset.id_column: .* \(row 1\) cannot name output"):
        dm.setup("test")
    assert not list(tmp_path.parent.glob("escaped")) and not Path("/tmp/escaped").exists()


def test_a_phone_photo_is_read_upright_as_datasets_reads_training_images(tmp_path: Path) -> None:
    """An EXIF-rotated JPEG (orientation 6: stored 80 wide, shown 80 tall) reaches eval-only
    models, classification and detection predictions upright, as training images do."""
    import datasets
    from PIL import Image

    from hotcv_train.datamodules.images import ImageInputs

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 40), (200, 30, 30)).save(tmp_path / "phone.jpg", exif=exif)
    inputs = ImageInputs(
        [("phone", tmp_path / "phone.jpg", None)], None, ("image", None), ("RGB", "L")
    )
    assert tuple(inputs[0]["image"].shape) == (3, 80, 40)
    decoded = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "phone.jpg")]},
        features=datasets.Features({"image": datasets.Image()}),
    )[0]["image"]
    assert decoded.size == (40, 80)  # what training sees


def test_a_run_folder_is_never_shared_by_two_runs(tmp_path: Path, monkeypatch) -> None:
    """Two runs in the same second (scripts, job arrays) get two folders, each created once."""
    from hotcv_train import resolvers

    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(resolvers, "_claimed", {})
    stamp = str(tmp_path / "quickstart" / "2026-01-01_00-00-00")
    first = resolvers.fresh_dir(stamp)
    assert first == stamp and Path(first).is_dir()
    assert resolvers.fresh_dir(stamp) == first  # the same run asking again: the same folder
    monkeypatch.setattr(resolvers, "_claimed", {})  # another process
    assert resolvers.fresh_dir(stamp) == stamp + "_1"
    monkeypatch.setattr(resolvers, "_claimed", {})
    assert resolvers.fresh_dir(stamp) == stamp + "_2"
    # Ranks of one torchrun job share the folder named by the job id.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setattr(resolvers, "_claimed", {})
    assert resolvers.fresh_dir(stamp) == stamp


def test_runs_started_together_write_separate_folders(tiny_dir: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, str(ROOT / "train.py"), *TEST_OVERRIDES, "experiment=quickstart",
        "debug=fast_dev_run",
    ]  # fmt: skip
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    runs = sorted((tmp_path / "outputs" / "quickstart").iterdir())
    assert len(runs) == 2 and all((r / "metrics.json").is_file() for r in runs)


def test_damaged_or_foreign_checkpoints_are_one_line_errors(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    from hotcv_train.errors import UserError

    run(make_config("task=vit_cifar10", *classification_overrides(tiny_dir)))
    checkpoints = tmp_path / "run" / "checkpoints"
    last = checkpoints / "last.ckpt"
    damaged = checkpoints / "copied.ckpt"
    damaged.write_bytes(last.read_bytes()[:2000])  # a copy cut short
    later = last.stat().st_mtime + 10
    os.utime(damaged, (later, later))

    def problem(*overrides: str) -> str:
        cfg = compose_config(tmp_path / "again", "task=vit_cifar10", *overrides)
        with pytest.raises(UserError) as caught:
            run(cfg)
        (line,) = caught.value.problems
        return line

    args = classification_overrides(tiny_dir)
    line = problem(*args, "stage=test", f"ckpt_path={damaged}")
    assert line.startswith(f"ckpt_path: {damaged} is damaged or not a checkpoint")
    assert (
        "resume from the newest good one: ckpt_path=" in line
        and "copied" not in line.split("=")[-1]
    )
    # Weights of another shape: the same architecture, twice as wide.
    line = problem(*args, "stage=test", f"ckpt_path={last}", "+module.model.config.hidden_size=64")
    assert line.startswith(f"ckpt_path: {last} holds weights of another model (size mismatch")


# --- resuming: the same samples, augmentations and dropout as a run never stopped --------------


class Preempted(RuntimeError):
    """What `TrainedBatches` raises to stop a fit mid-epoch, as a crash or preemption would."""


class TrainedBatches(L.Callback):
    """Test callback: appends `[epoch, batch_idx, [sample fingerprint, ...]]` to `file` for each
    batch trained (its optimizer step done); raises `Preempted` before batch `crash_at`
    ([epoch, batch_idx]). A fingerprint hashes the augmented pixels the model was given."""

    def __init__(self, file: str, crash_at: list[int] | None = None):
        self.file, self.crash_at = file, crash_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.crash_at == [trainer.current_epoch, batch_idx]:
            raise Preempted(f"stopped before batch {batch_idx} of epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        prints = [hashlib.sha1(x.numpy().tobytes()).hexdigest()[:16] for x in batch["pixel_values"]]
        with open(self.file, "a") as f:
            f.write(json.dumps([trainer.current_epoch, batch_idx, prints]) + "\n")


def trained(file: Path) -> list[list]:
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


@pytest.mark.parametrize(
    "checkpoint",
    ["interrupted", "step0008", "step0012"],
    ids=["crash-mid-epoch", "every-n-steps-mid-epoch", "every-n-steps-last-batch"],
)
def test_a_run_resumed_mid_epoch_trains_each_remaining_sample_once(
    checkpoint: str, tiny_dir: Path, tmp_path: Path
) -> None:
    """43 train samples, batches of 8: 6 steps an epoch. Step 8 is 2 batches into epoch 1; step
    12 is epoch 1's last batch; the crash comes before batch 2 of epoch 1."""
    args = [
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
        "test_after_fit=false",
        "+callbacks.record._target_=tests.test_robustness.TrainedBatches",
    ]
    steps = [
        "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.steps.dirpath={tmp_path / 'steps'}",
        "+callbacks.steps.every_n_train_steps=4",
        "+callbacks.steps.save_top_k=-1",
        "+callbacks.steps.filename='step{step:04d}'",
        "+callbacks.steps.auto_insert_metric_name=false",
    ]
    straight = tmp_path / "straight.jsonl"
    run(compose_config(tmp_path / "straight", *args, *steps, f"+callbacks.record.file={straight}"))
    if checkpoint == "interrupted":
        before = tmp_path / "crashed.jsonl"
        cfg = compose_config(
            tmp_path / "crashed",
            *args,
            f"+callbacks.record.file={before}",
            "+callbacks.record.crash_at=[1,2]",
        )
        with pytest.raises(Preempted):
            run(cfg)
        ckpt = tmp_path / "crashed" / "checkpoints" / "interrupted.ckpt"
        done = trained(before)
        assert done == trained(straight)[: len(done)]  # the same run up to the crash
    else:
        ckpt = tmp_path / "steps" / f"{checkpoint}.ckpt"
        done = trained(straight)[: int(checkpoint.removeprefix("step"))]
    if checkpoint != "step0012":  # mid-epoch: what is done is a count of batches of 8
        from hotcv_train.errors import UserError

        other = compose_config(
            tmp_path / "other",
            *args,
            f"+callbacks.record.file={tmp_path / 'other.jsonl'}",
            f"ckpt_path={ckpt}",
            "dataset.batch_size=16",
        )
        with pytest.raises(
            UserError, match=r"saved mid-epoch \(epoch 2, batch 2\) with batch_size 8, not 16"
        ):
            run(other)
    resumed = tmp_path / "resumed.jsonl"
    cfg = compose_config(
        tmp_path / "resumed",
        *args,
        f"+callbacks.record.file={resumed}",
        f"ckpt_path={ckpt}",
        "dataset.num_workers=2",  # augmentations don't depend on which process makes a sample
    )
    run(cfg)

    assert done + trained(resumed) == trained(straight)
    epoch = trained(resumed)[0][0]
    samples = [x for e, _, prints in done + trained(resumed) if e == epoch for x in prints]
    assert len(samples) == len(set(samples)) == 43  # that epoch: every sample, once


def test_a_run_killed_at_an_epoch_boundary_resumes_to_the_same_weights_and_metrics(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """kill -9 once an epoch's last.ckpt is written, resume from it: the same final weights and
    metrics as the run never stopped (shuffle, augmentations and dropout all repeat)."""
    args = [
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "+module.model.config.hidden_dropout_prob=0.1",
        "callbacks.model_checkpoint.monitor=null",  # "best" is the last epoch: test final weights
    ]
    straight = run(compose_config(tmp_path / "straight", *args))

    command = [sys.executable, str(ROOT / "train.py"), *TEST_OVERRIDES, *args]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:  # an epoch has ended (the file is renamed into place whole): kill -9 at once
        last = first_checkpoint(process, tmp_path, "vit_cifar10", timeout=300, poll=0.02)
        last = last / "checkpoints" / "last.ckpt"
        process.kill()
        process.wait(timeout=60)
    finally:
        process.kill()
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] < 3  # killed with epochs left to train

    resumed = run(compose_config(tmp_path / "resumed", *args, f"ckpt_path={last}"))
    assert resumed.keys() == straight.keys()
    for key, value in straight.items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key
    weights = [
        torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for name in ("straight", "resumed")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# A child process saves a big checkpoint over a small last.ckpt and SIGKILLs itself the instant
# `when` holds: its temporary file is half-written, or last.ckpt changed on disk.
SAVE_AND_DIE = """
import os, signal, sys, threading, torch
from pathlib import Path
from hotcv_train.checkpoints import SafeCheckpointIO

last, when = Path(sys.argv[1]), sys.argv[2]
before = last.stat()

def dying_moment():
    if when == "mid-write":
        return any(p.stat().st_size > 0 for p in last.parent.glob(".*.tmp"))
    now = last.stat()
    return (now.st_ino, now.st_size) != (before.st_ino, before.st_size)

def watch():
    while not dying_moment():
        pass
    os.kill(os.getpid(), signal.SIGKILL)

sys.setswitchinterval(1e-6)
threading.Thread(target=watch, daemon=True).start()
SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.randn(20_000_000)}}, last)
"""


@pytest.mark.parametrize("when", ["mid-write", "on-change"])
def test_a_kill_during_a_checkpoint_save_leaves_a_whole_checkpoint(
    when: str, tmp_path: Path
) -> None:
    """Killed while writing, last.ckpt is the previous checkpoint; killed the instant last.ckpt
    changes, it is the new one, whole. The temporary file's folder is the checkpoint's own: where
    the system temp folder is another filesystem (so here), Lightning's save copies into place
    and a kill leaves last.ckpt cut short."""
    from hotcv_train.checkpoints import SafeCheckpointIO, check_checkpoint

    last = tmp_path / "checkpoints" / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    env = dict(os.environ)
    if Path("/dev/shm").is_dir() and os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev:
        env["TMPDIR"] = "/dev/shm"
    child = subprocess.run(
        [sys.executable, "-c", SAVE_AND_DIE, str(last), when], env=env, timeout=300
    )
    assert child.returncode == -signal.SIGKILL

    check_checkpoint(str(last))  # loads
    size = torch.load(last, weights_only=True)["state_dict"]["w"].numel()
    assert size == (3 if when == "mid-write" else 20_000_000)
    leftovers = list(last.parent.glob(".*.tmp"))
    assert bool(leftovers) == (when == "mid-write")  # half a checkpoint, never named *.ckpt
    SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    left = sorted(p.name for p in last.parent.iterdir())
    assert left == ["last.ckpt"]  # the next save clears what a killed one left


def test_no_secret_reaches_a_file_of_the_run_folder(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub token in the config, W&B and HF keys in the environment: no file of the run folder
    holds one (saved configs, overrides, logs, hparams, W&B's offline run, checkpoints)."""
    from omegaconf import OmegaConf

    from tests.conftest import newest_run, train_py

    token, wandb_key, hf_token = "hf_SECRET123", "wandbSECRET" + "4" * 29, "hf_ENVSECRET789"
    monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    monkeypatch.setenv("HF_TOKEN", hf_token)
    result = train_py(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "logger=[csv,tensorboard,wandb]",
        f"+module.model.config.token={token}",  # from_pretrained's hub token
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = newest_run(tmp_path, "vit_cifar10")

    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # all the run wrote, run folder or not
    assert {".ckpt", ".yaml", ".csv", ".log", ".wandb"} <= {p.suffix for p in files}
    for secret in (token, wandb_key, hf_token):
        leaks = [str(p.relative_to(tmp_path)) for p in files if secret.encode() in p.read_bytes()]
        assert not leaks, f"{secret} in {leaks}"
    for saved in ("config.yaml", "resolved.yaml"):
        config = OmegaConf.load(run_dir / ".hydra" / saved)
        assert config.module.model.config.token == "<redacted>"
    assert (
        "+module.model.config.token=<redacted>"
        in (run_dir / ".hydra" / "overrides.yaml").read_text()
    )


def test_last_ckpt_holds_the_last_epoch_when_it_is_not_the_best(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Lightning 2.6's `save_last` rewrites last.ckpt only when a new best is saved: with no
    improvement after epoch 1, a resume from it would train epochs 2 and 3 again."""
    cfg = compose_config(
        tmp_path / "run",
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "trainer.max_epochs=3",
        "module.optimizer.lr=0",  # the weights, hence val/acc, never change: epoch 1 stays best
        "test_after_fit=false",
    )
    run(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=False, map_location="cpu")
    (best,) = ckpts.glob("best-*.ckpt")
    assert best.name == "best-000.ckpt"
    assert last["epoch"] == 2 and last["global_step"] == 3 * 6  # 43 samples in batches of 8


def test_a_checkpoint_from_another_recipe_is_named_before_the_data_loads(tmp_path: Path) -> None:
    """`stage=test ckpt_path=<a quickstart checkpoint>` without experiment=quickstart would build
    the default task's data (a hub download) and model: the run folder of the checkpoint says so."""
    from hotcv_train.checkpoints import recipe_note

    run_dir = tmp_path / "outputs" / "quickstart" / "2026-01-01_00-00-00"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- experiment=quickstart\n- seed=1\n")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    note = recipe_note(str(ckpt), ["stage=test", f"ckpt_path={ckpt}"])
    assert note is not None and note.startswith(
        "ckpt_path: the checkpoint's run was started with experiment=quickstart ("
    )
    assert recipe_note(str(ckpt), ["experiment=quickstart", "stage=test"]) is None
    assert recipe_note(str(tmp_path / "elsewhere" / "x.ckpt"), []) is None  # no run folder
