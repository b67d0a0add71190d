"""Where a model comes from: a hub id, a local `save_pretrained` folder, or scratch from a config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotcv_train.checks import HubOrPath, looks_local
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors

KEY = "module.model.name_or_path"


@dataclass(frozen=True)
class ModelSpec:
    """Plain values naming a model; modules build the `nn.Module` from it.

    Args:
        name_or_path: Hub id or local folder. `None` builds from `model_type` + `config` alone.
        revision: Hub branch, tag or commit to load (ignored for local folders).
        model_type: A transformers model type (`vit`, `glpn`, ...) for scratch builds.
        pretrained: `False` keeps the architecture of `name_or_path` but starts from random weights.
        config: Overrides of the model config (e.g. `hidden_size`, `num_hidden_layers`).
    """

    name_or_path: HubOrPath | None = None
    revision: str | None = None
    model_type: str | None = None
    pretrained: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def hub_options(self) -> dict[str, str]:
        """`from_pretrained` keyword arguments that only a hub id takes."""
        local = self.name_or_path is None or looks_local(self.name_or_path)
        return {} if local or self.revision is None else {"revision": self.revision}

    def __post_init__(self) -> None:
        if self.name_or_path is None and self.model_type is None:
            raise UserError(
                f"{KEY}: null needs module.model.model_type (e.g. vit) to build from scratch"
            )


def _allow_in_checkpoints() -> None:
    """Let `torch.load(weights_only=True)` read a ModelSpec stored in a checkpoint's hparams."""
    import torch

    torch.serialization.add_safe_globals([ModelSpec])


_allow_in_checkpoints()


def build_model(spec: ModelSpec, auto_class: Any, **config: Any) -> Any:
    """Instantiate `auto_class` (e.g. `AutoModelForImageClassification`) from `spec`.

    `config` holds task-given settings (such as `num_labels`) applied on top of `spec.config`.
    """
    from transformers import AutoConfig

    settings = {**spec.config, **config}
    if spec.name_or_path is None:
        model = auto_class.from_config(AutoConfig.for_model(spec.model_type, **settings))
    else:
        with hub_errors(spec.name_or_path, KEY):
            if spec.pretrained:
                # A new head (another num_labels) replaces the checkpoint's instead of failing.
                model = auto_class.from_pretrained(
                    spec.name_or_path, ignore_mismatched_sizes=True, **spec.hub_options, **settings
                )
            else:
                config = AutoConfig.from_pretrained(
                    spec.name_or_path, **spec.hub_options, **settings
                )
                model = auto_class.from_config(config)
    return model.train()  # from_pretrained returns eval mode; Lightning switches per stage


def load_image_processor(name_or_path: str) -> Any:
    """The checkpoint's image processor: the source of mean, std and input size."""
    from transformers import AutoImageProcessor

    with hub_errors(name_or_path, KEY):
        return AutoImageProcessor.from_pretrained(name_or_path)
