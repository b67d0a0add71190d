"""scikit-learn's handwritten digits (1,797 real 8x8 scans) in the CIFAR-10 schema, offline."""

from __future__ import annotations

from typing import Any

import numpy as np


def load_digits(test_fraction: float, seed: int) -> Any:
    """A DatasetDict with `train`/`test` splits of `img` (PIL, 8x8 grey) and `label` (ClassLabel)."""
    import datasets
    from PIL import Image
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels = (bunch.images * (255 / 16)).round().astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(pixels))
    n_test = round(test_fraction * len(pixels))
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )

    def split(indices: np.ndarray) -> datasets.Dataset:
        rows = {
            "img": [Image.fromarray(pixels[i], mode="L") for i in indices],
            "label": [int(bunch.target[i]) for i in indices],
        }
        return datasets.Dataset.from_dict(rows, features=features)

    return datasets.DatasetDict({"train": split(order[n_test:]), "test": split(order[:n_test])})
