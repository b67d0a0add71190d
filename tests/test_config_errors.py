"""Bad configs fail before any model loads, every problem listed, one line each, naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hotcv_train.errors import UserError
from hotcv_train.run import run
from tests.conftest import train_py
from tests.tiny.classification import classification_overrides
from tests.tiny.depth import depth_overrides


def problems_of(cfg) -> list[str]:
    with pytest.raises(UserError) as caught:
        run(cfg)
    return caught.value.problems


def test_every_static_problem_is_listed_at_once(make_config, tiny_dir: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "+module.dropuot=0.1",  # unknown key (Hydra's `+` bypasses its own struct check)
        "trainer.max_epochs=abc",  # wrong type
        "dataset.path=/no/such/data",  # missing local path
        "+trainer.max_epoch=3",  # unknown Trainer argument, with a suggestion
        "module.model.name_or_path=./no/such/model",
        "stage=train",
    )
    problems = problems_of(cfg)
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert "module.dropuot: unknown key for ClassificationModule" in text
    assert "trainer.max_epochs: expected int or null, got 'abc'" in text
    assert "dataset.path: no such file or folder: /no/such/data" in text
    assert "trainer.max_epoch: unknown key for Trainer (did you mean 'max_epochs'?)" in text
    assert "module.model.name_or_path: no such file or folder: ./no/such/model" in text
    assert "stage: must be one of fit, test, predict, got 'train'" in text


def test_missing_checkpoint_and_mandatory_value(make_config, tiny_dir: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "ckpt_path=/no/last.ckpt",
        "dataset.path=???",
    )
    problems = problems_of(cfg)
    assert "ckpt_path: no such checkpoint file: /no/last.ckpt" in problems
    assert any(p.startswith("dataset.path: missing value") for p in problems)


def test_data_problems_come_before_the_model_loads(make_config, tiny_dir: Path) -> None:
    overrides = [
        *classification_overrides(tiny_dir),
        "module.model.name_or_path=org/not-downloaded",
    ]
    # The model id is unreachable offline: if the data were not checked first, that error
    # (not the data's) would surface.
    cfg = make_config("task=vit_cifar10", *overrides, "dataset.label_column=lbl")
    assert problems_of(cfg) == [
        f"dataset.label_column: no column 'lbl' in {tiny_dir / 'cifar'} (columns: img, label)"
    ]
    cfg = make_config("task=vit_cifar10", *overrides, "dataset.num_labels=10")
    assert problems_of(cfg) == [
        f"dataset.num_labels: is 10 but column 'label' of {tiny_dir / 'cifar'} has 4 classes; "
        "set dataset.num_labels=4 or null (from the data)"
    ]
    cfg = make_config("task=vit_cifar10", *overrides, "dataset.test_split=validation")
    assert problems_of(cfg) == [
        f"dataset.test_split: no split 'validation' in {tiny_dir / 'cifar'} (it has: train, "
        "test); set dataset.test_split to one of them, or null to carve dataset.test_fraction "
        "of train"
    ]


def test_unreachable_hub_ids_name_the_key_and_the_offline_fix(make_config, tiny_dir: Path) -> None:
    cfg = make_config("task=vit_cifar10", *classification_overrides(tiny_dir))
    cfg.module.model.name_or_path = "org/not-downloaded"
    (problem,) = problems_of(cfg)
    assert problem.startswith("module.model.name_or_path: cannot load model 'org/not-downloaded'")
    assert "hf download org/not-downloaded --local-dir DIR" in problem
    assert problem.endswith("set module.model.name_or_path=DIR")

    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), "dataset.path=org/data"
    )
    (problem,) = problems_of(cfg)
    assert problem.startswith(
        "dataset.path: cannot load dataset 'org/data' from the Hugging Face Hub"
    )
    assert "--repo-type dataset --local-dir DIR" in problem


def test_scratch_models_need_explicit_preprocessing(make_config, tiny_dir: Path) -> None:
    cfg = make_config(
        "experiment=quickstart", "module.model.model_type=vit", "dataset.image_mean=null"
    )
    (problem,) = problems_of(cfg)
    assert problem.startswith("dataset.image_mean: needed when the model is built from scratch")


def test_cli_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    result = train_py(
        "experiment=quickstart",
        "+module.foo=1",
        "dataset.batch_size=many",
        f"paths.log_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: dataset.batch_size: expected int, got 'many'",
        "error: module.foo: unknown key for ClassificationModule; known keys: auto_class, "
        "channels_last, compile, label_names, label_smoothing, model, num_labels, num_sample_images, optimizer, "
        "scheduler",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "guess", "offered"),
    [
        ("task=vit_cifar1O", "task=vit_cifar10", "glpn_nyu"),
        ("dataset=cifar100", "dataset=cifar10", "license_plates"),
        ("trainer=gpus", "trainer=gpu", "ddp_cpu"),
    ],
)
def test_an_unknown_config_option_names_the_closest_and_lists_the_choices(
    override: str, guess: str, offered: str, tmp_path: Path
) -> None:
    result = train_py(override, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()  # Hydra's search-path dump is replaced by one line
    assert line.startswith(f"error: {override}: no such option; did you mean {guess}? (options: ")
    assert offered in line.split("(options: ")[1]


@pytest.mark.parametrize(
    ("override", "guess"),
    [
        ("dataset.batchsize=4", "dataset.batch_size"),  # a typo in a group's key
        ("datset.batch_size=4", "dataset.batch_size"),  # in the group's name
        ("trainer.maxepochs=3", "trainer.max_epochs"),
        ("module.optimizer.lrr=1e-3", "module.optimizer.lr"),
    ],
)
def test_a_mistyped_key_names_the_closest_one_not_hydras_append_advice(
    override: str, guess: str, tmp_path: Path
) -> None:
    """Hydra rejects a key the config lacks before any code of ours runs, advising `+key=...`
    (which would add the typo); the user gets the key they meant, exit code 2."""
    result = train_py("experiment=quickstart", override, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    key = override.split("=")[0]
    assert result.stderr.splitlines() == [
        f"error: {key}: no such key; did you mean {guess}? (a new key needs a +: +{override}; "
        "python train.py ... --cfg job lists every key)"
    ]
    assert not (tmp_path / "outputs").exists()  # nothing ran


@pytest.mark.parametrize(
    ("override", "guess"),
    [
        ("dataset.batchsize=4,8", "dataset.batch_size"),
        ("module.optimizer.lrr=1e-3,3e-4", "module.optimizer.lr"),
    ],
)
def test_a_mistyped_swept_key_stops_the_sweep_before_its_first_job(
    override: str, guess: str, tmp_path: Path
) -> None:
    """Hydra composes a sweep's values per job, once the sweep has started: the typo is caught
    as the sweep starts, with the same line as a single run's."""
    result = train_py(
        "-m", "experiment=quickstart", "trainer.max_epochs=1,2", override, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    key = override.split("=")[0]
    assert result.stderr.splitlines() == [
        f"error: {key}: no such key; did you mean {guess}? (a new key needs a +: +{override}; "
        "python train.py ... --cfg job lists every key)"
    ]
    assert not list(tmp_path.glob("outputs/*/multirun/*/*"))  # no job ran


def test_a_bad_value_in_any_job_of_a_grid_sweep_stops_it_before_the_first_job(
    tmp_path: Path,
) -> None:
    """Every job's config is checked as the sweep starts, not when its turn comes."""
    result = train_py(
        "-m", "experiment=quickstart", "dataset.batch_size=16,0", "seed=1,2", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: dataset.batch_size: must be >= 1, got 0 (in 2 of 4 jobs: dataset.batch_size=0 "
        "seed=1 and 1 more)"
    ]
    assert not list(tmp_path.glob("outputs/*/multirun/*/*"))  # no job ran


def test_predict_stage_on_a_module_without_one(make_config, tiny_dir: Path) -> None:
    cfg = make_config("task=glpn_nyu", *depth_overrides(tiny_dir), "stage=predict")
    assert problems_of(cfg) == [
        "stage: DepthEstimationModule has no predict stage; use stage=test to evaluate "
        "(it writes metrics.json and plots)"
    ]


def test_fit_stage_on_an_eval_only_job(make_config, tmp_path: Path) -> None:
    cfg = make_config("task=clipseg_zeroshot", f"dataset.path={tmp_path}", "stage=fit")
    assert problems_of(cfg) == [
        "stage: ZeroShotSegmentationModule is eval-only (nothing to train); use stage=test "
        "(scores with dataset.references) or stage=predict (outputs only)"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_lightning_rejecting_a_setting_is_one_line_naming_the_group(
    make_config, tiny_dir: Path
) -> None:
    cfg = make_config(
        "task=vit_cifar10", *classification_overrides(tiny_dir), "trainer.accelerator=gpu"
    )
    assert problems_of(cfg) == ["trainer: No supported gpu backend found!"]


def test_turning_the_progress_bar_off_drops_the_progress_bar_callback(
    make_config, tiny_dir: Path
) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "callbacks.progress_bar={_target_: lightning.pytorch.callbacks.RichProgressBar}",
        "trainer.enable_progress_bar=false",
        "debug=fast_dev_run",
    )
    assert run(cfg)["test/samples"] > 0


def test_debug_presets_win_over_experiments() -> None:
    """`experiment=quickstart debug=limit` is a 2-epoch loop, not the experiment's 30 epochs."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=quickstart", "debug=limit"])
    assert cfg.trainer.max_epochs == 2 and cfg.trainer.limit_train_batches == 5


def test_out_of_range_values_are_listed_before_anything_loads(make_config, tiny_dir: Path) -> None:
    cfg = make_config(
        "task=vit_cifar10",
        *classification_overrides(tiny_dir),
        "dataset.batch_size=0",
        "dataset.num_workers=-1",
        "dataset.val_fraction=1.5",
        "dataset.hflip=2",
        "module.label_smoothing=-0.1",
    )
    # eval_batch_size copies batch_size: reported once, at batch_size.
    assert sorted(problems_of(cfg)) == [
        "dataset.batch_size: must be >= 1, got 0",
        "dataset.hflip: must be in [0, 1], got 2",
        "dataset.num_workers: must be in [0, 128], got -1",
        "dataset.val_fraction: must be in (0, 1), got 1.5",
        "module.label_smoothing: must be in [0, 1], got -0.1",
    ]


def test_library_errors_at_the_boundaries_are_one_line(
    make_config, tiny_dir: Path, tmp_path: Path
) -> None:
    args = classification_overrides(tiny_dir)
    (problem,) = problems_of(make_config("task=vit_cifar10", *args, "module.optimizer.lr=-1"))
    assert problem == "module.optimizer: Invalid learning rate: -1"

    empty = tmp_path / "empty"
    empty.mkdir()
    (problem,) = problems_of(make_config("task=vit_cifar10", *args, f"dataset.path={empty}"))
    assert problem.startswith(f"dataset.path: no data that datasets can read in {empty}")

    no_config = tmp_path / "model"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    cfg = make_config("task=vit_cifar10", *args, f"module.model.name_or_path={no_config}")
    (problem,) = problems_of(cfg)
    assert problem.startswith(f"module.model.name_or_path: cannot load {no_config}")
    assert problem.endswith("point it at a save_pretrained folder")


def test_wandb_without_a_key_or_offline_mode_is_one_line_before_anything_runs(
    make_config, tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a key W&B stops mid-run with a traceback (or waits on the network): say so first."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # nor `wandb offline`
    cfg = make_config("experiment=quickstart", "logger=wandb")
    assert problems_of(cfg) == [
        "logger.wandb: no W&B API key (WANDB_API_KEY or `wandb login`); log offline with "
        "WANDB_MODE=offline (`wandb sync` uploads later) or use logger=csv"
    ]
    from hotcv_train.checks import check_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    check_config(cfg)  # no problem
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    check_config(cfg)  # `wandb login` was run
    (tmp_path / ".netrc").unlink()
    (tmp_path / "wandb-config").mkdir()
    (tmp_path / "wandb-config" / "settings").write_text("[default]\nmode = offline\n")
    check_config(cfg)  # `wandb offline` was run


def test_a_learning_rate_that_is_not_a_number_is_a_config_error(make_config) -> None:
    """torch types it `float | Tensor`; a command-line value can only be the float."""
    cfg = make_config("experiment=quickstart", "module.optimizer.lr=abc")
    assert problems_of(cfg) == ["module.optimizer.lr: expected float or Tensor, got 'abc'"]


def test_a_run_folder_as_ckpt_path_names_a_checkpoint_in_it(make_config, tmp_path: Path) -> None:
    run_dir = tmp_path / "outputs" / "quickstart" / "2026-01-01_00-00-00"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    cfg = make_config("experiment=quickstart", f"ckpt_path={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert problems_of(cfg) == [
        f"ckpt_path: {run_dir} is a folder; give one checkpoint file in it (e.g. ckpt_path={last})"
    ]


def test_endless_training_with_a_scheduler_is_a_config_error(make_config) -> None:
    """max_epochs=-1 (Lightning's "no end") gives the cosine schedule infinitely many steps:
    an OverflowError as training started. With max_steps, or no scheduler, it runs."""
    from hotcv_train.checks import check_config

    cfg = make_config("experiment=quickstart", "trainer.max_epochs=-1")
    assert problems_of(cfg) == [
        "trainer.max_epochs: -1 (no end) leaves module.scheduler no number of steps to "
        "schedule; set trainer.max_epochs=N or trainer.max_steps=N, or module.scheduler=null "
        "(a constant learning rate)"
    ]
    check_config(
        make_config("experiment=quickstart", "trainer.max_epochs=-1", "trainer.max_steps=3")
    )
    check_config(
        make_config("experiment=quickstart", "trainer.max_epochs=-1", "module.scheduler=null")
    )


def test_a_scheduler_without_a_finite_step_count_is_one_line_at_runtime() -> None:
    """What the config cannot tell: a loader without a length, with max_epochs=-1."""
    from functools import partial
    from types import SimpleNamespace

    from hotcv_train.modules.base import TaskModule, cosine_with_warmup

    module = TaskModule(
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=partial(cosine_with_warmup, warmup_ratio=0.1),
        compile=False,
        channels_last=False,
    )
    module.weight = torch.nn.Parameter(torch.zeros(1))
    module._trainer = SimpleNamespace(estimated_stepping_batches=float("inf"))
    with pytest.raises(UserError, match=r"^module.scheduler: needs a finite number of training"):
        module.configure_optimizers()


def test_trainer_counts_lightning_divides_by_are_checked(make_config) -> None:
    """Lightning takes these unchecked and fails with a ZeroDivisionError once training starts."""
    cfg = make_config(
        "experiment=quickstart",
        "trainer.accumulate_grad_batches=0",
        "trainer.check_val_every_n_epoch=0",
        "trainer.val_check_interval=0",
        "trainer.log_every_n_steps=-1",
        "trainer.num_sanity_val_steps=-2",
    )
    assert sorted(problems_of(cfg)) == [
        "trainer.accumulate_grad_batches: must be >= 1, got 0",
        "trainer.check_val_every_n_epoch: must be >= 1, got 0",
        "trainer.log_every_n_steps: must be >= 0, got -1",
        "trainer.num_sanity_val_steps: must be >= -1, got -2",
        "trainer.val_check_interval: must be > 0, got 0",
    ]


def test_a_vit_trains_at_another_image_size_than_its_config(make_config) -> None:
    """ViT-like models resize their position embeddings (interpolate_pos_encoding): training at
    a higher resolution than pretraining works instead of failing at the first batch."""
    cfg = make_config("experiment=quickstart", "dataset.image_size=48", "debug=fast_dev_run")
    assert run(cfg)["test/samples"] > 0


def test_a_model_of_fixed_input_size_names_dataset_image_size() -> None:
    """Models that cannot resize their position embeddings (VideoMAE) fail in one line; those
    without any (ConvNeXt, ResNet) take any size as they are."""
    from hotcv_train.models import ModelSpec
    from hotcv_train.modules.classification import ClassificationModule

    def module(model_type: str, auto_class: str, **config) -> ClassificationModule:
        spec = ModelSpec(model_type=model_type, config=config)
        return ClassificationModule(
            spec,
            auto_class,
            3,
            None,
            0.0,
            0,
            optimizer=None,
            scheduler=None,
            compile=False,
            channels_last=False,
        )

    video = module(
        "videomae",
        "AutoModelForVideoClassification",
        image_size=32,
        patch_size=8,
        num_frames=2,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    assert video(torch.randn(1, 2, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(UserError) as caught:
        video(torch.randn(1, 2, 3, 64, 64))
    assert caught.value.problems == [
        "dataset.image_size: the inputs are 64x64 but the model (videomae) takes 32x32 and "
        "cannot resize its position embeddings; set dataset.image_size=32"
    ]
    convnext = module(
        "convnext",
        "AutoModelForImageClassification",
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_stages=2,
    )
    assert convnext.model_kwargs == {}  # no interpolate_pos_encoding to pass
    assert convnext(torch.randn(1, 3, 48, 48)).shape == (1, 3)


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_evaluating_random_weights_without_a_checkpoint_is_a_config_error(
    stage: str, make_config, tmp_path: Path
) -> None:
    """A from-scratch model tested without ckpt_path scored random weights (test/acc 0.09)."""
    from hotcv_train.checks import check_config

    cfg = make_config("experiment=quickstart", f"stage={stage}")
    on_purpose = " (to score the untrained model: stage=fit trainer.max_epochs=0)"
    assert problems_of(cfg) == [
        f"ckpt_path: stage={stage} would run a model with random weights "
        "(module.model.name_or_path=null builds it from scratch); pass "
        f"ckpt_path=<run>/checkpoints/best-<epoch>.ckpt{on_purpose if stage == 'test' else ''}"
    ]
    cfg = make_config(
        "task=vit_cifar10", "module.model.pretrained=false", f"stage={stage}", "dataset.path=org/x"
    )
    with pytest.raises(UserError) as caught:
        check_config(cfg)  # the checks alone: the hub id is not reached
    assert "(module.model.pretrained=false)" in caught.value.problems[0]
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"")
    check_config(make_config("experiment=quickstart", f"stage={stage}", f"ckpt_path={ckpt}"))
    check_config(make_config("experiment=quickstart", "trainer.max_epochs=0"))  # on purpose
