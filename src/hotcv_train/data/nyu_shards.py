"""The whole NYU Depth V2 training set, read from the tar shards of .h5 files it is published in.

`sayakpaul/nyu_depth_v2` keeps its 47,584 training and 654 validation frames in
`data/train-NNNNNN.tar` and `data/val-NNNNNN.tar`; each member is an .h5 file holding `rgb`
(3 x H x W, uint8) and `depth` (H x W, float metres). Its loading script, which read them, no
longer runs under datasets 5, and the hub's parquet export holds only the first ~3.1k training
rows. This reads the shards themselves (extra: `nyu`, for h5py) into the same schema as that
export (`image`, `depth_map`; `train` / `validation`). datasets caches the result (about 60 GB
for the full set), so the shards are decoded once.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hotcv_train.checks import looks_local
from hotcv_train.errors import UserError
from hotcv_train.hub import hub_errors

SPLITS = {"train": "train", "validation": "val"}  # split name -> shard file prefix


def find_shards(path: str, revision: str | None) -> dict[str, list[str]]:
    """Local paths of every split's shards: from a folder, or downloaded from a hub repo."""
    if looks_local(path):
        folder = Path(path).expanduser()
        shards = {
            split: sorted(str(p) for p in folder.rglob(f"{prefix}-*.tar"))
            for split, prefix in SPLITS.items()
        }
    else:
        from huggingface_hub import HfApi, hf_hub_download

        with hub_errors(path, "dataset.generator.path", repo_type="dataset"):
            files = HfApi().list_repo_files(path, repo_type="dataset", revision=revision)
            shards = {
                split: [
                    hf_hub_download(path, f, repo_type="dataset", revision=revision)
                    for f in sorted(files)
                    if Path(f).name.startswith(f"{prefix}-") and f.endswith(".tar")
                ]
                for split, prefix in SPLITS.items()
            }
    missing = [f"{prefix}-*.tar" for split, prefix in SPLITS.items() if not shards[split]]
    if missing:
        raise UserError(
            f"dataset.generator.path: no {' or '.join(missing)} shards in {path}; point it at "
            "sayakpaul/nyu_depth_v2 or a folder holding its data/*.tar files"
        )
    return shards


def read_frames(shards: list[str]) -> Iterator[dict[str, Any]]:
    """`{"image", "depth_map"}` rows from every .h5 member of `shards`, in order."""
    import h5py
    import numpy as np

    for shard in shards:
        with tarfile.open(shard) as archive:
            for member in archive:
                if not (member.isfile() and member.name.endswith(".h5")):
                    continue
                data = archive.extractfile(member)
                assert data is not None
                with h5py.File(io.BytesIO(data.read()), "r") as h5:
                    rgb = np.asarray(h5["rgb"])
                    depth = np.asarray(h5["depth"], dtype=np.float32)
                yield {"image": np.ascontiguousarray(rgb.transpose(1, 2, 0)), "depth_map": depth}


def load_nyu_shards(path: str, revision: str | None = None) -> Any:
    """A DatasetDict (`train`, `validation`) of NYU frames read from the repo's tar shards."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise UserError(
            "dataset=nyu_depth_v2_full reads .h5 files: pip install -e '.[nyu]'"
        ) from None
    import datasets

    # Depth as a float ("F" mode) image, the export's type: the depth datamodule reads either.
    features = datasets.Features({"image": datasets.Image(), "depth_map": datasets.Image()})
    shards = find_shards(path, revision)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_generator(
                read_frames, gen_kwargs={"shards": files}, features=features
            )
            for split, files in shards.items()
        }
    )
