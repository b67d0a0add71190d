"""hotcv-train: config-driven finetuning and evaluation of HuggingFace vision models.

Kept import-light on purpose: `python train.py --help` must not pull in torch's heavy friends.
"""

from hotcv_train import resolvers  # noqa: F401  (registers the YAML's resolvers)
from hotcv_train.errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
