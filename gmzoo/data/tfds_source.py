"""TFDS image sets as random-access sources, read without TensorFlow.

`tfds.data_source` reads a data set prepared in the array_record format by random access; it is
always called with `download=False`, so nothing is ever fetched at run time. Prepare a set once,
on a machine with network:  `tfds build NAME --data_dir DIR --file_format array_record`, or
`tfds.builder(NAME, data_dir=DIR).download_and_prepare(file_format="array_record")`, then pass
`data_dir=DIR` (or set TFDS_DATA_DIR).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np


class DatasetUnavailableError(ValueError):
    """A TFDS data set is not prepared (in array_record format) in the data_dir searched."""


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSource:
    """A TFDS split as items `{"image": uint8 [H, W, C], "label": int32 []}`.

    `label` is the set's "label" feature, or 0 for sets without one (then num_classes = 1).
    """

    name: str
    split: str
    data_source: Sequence[Any]  # the tfds ArrayRecordDataSource, random access
    num_levels: int
    num_classes: int
    image_shape: tuple[int, int, int]
    has_label: bool

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """One item, read by random access from the array_record files."""
        record = self.data_source[int(index)]
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 2:
            image = image[..., None]  # [H, W] -> [H, W, 1]
        label = np.int32(record["label"]) if self.has_label else np.int32(0)
        return {"image": image, "label": label}


def _default_data_dir() -> str:
    """Where TFDS looks when data_dir is None: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _unavailable(name: str, data_dir: str, why: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"TFDS data set {name!r} {why} in data_dir {data_dir!r} (no download is attempted); "
        f"on a machine with network run `tfds build {name} --data_dir {data_dir} --file_format "
        f"array_record` or `tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare("
        f"file_format='array_record')`, then copy that data_dir here and pass it as data_dir"
    )


def load_tfds(name: str, split: str, data_dir: str | None = None) -> TfdsSource:
    """Split `split` of TFDS image set `name` (e.g. "mnist", "cifar10", "celeb_a") from `data_dir`.

    Raises DatasetUnavailableError (one line naming the set, the data_dir and how to prepare it)
    when the set is not prepared there in array_record format.
    """
    import tensorflow_datasets as tfds  # local import: TFDS is slow to import

    searched = str(data_dir) if data_dir is not None else _default_data_dir()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown TFDS data set {name!r}; see tfds.list_builders() for the names"
        ) from None
    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"TFDS data set {name!r} has no 'image' feature: {list(features)}")
    try:
        data_source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises NotImplementedError/ValueError/... when not prepared
        if not builder.is_prepared():
            raise _unavailable(name, searched, "is not prepared") from e
        if builder.info.file_format is None or "array_record" not in str(
            builder.info.file_format
        ):
            raise _unavailable(
                name, searched, f"is prepared as {builder.info.file_format}, not array_record"
            ) from e
        raise
    if len(data_source) == 0:
        raise ValueError(f"TFDS data set {name!r} split {split!r} is empty")
    has_label = "label" in features
    num_classes = int(getattr(features["label"], "num_classes", 0) or 0) if has_label else 1
    if has_label and num_classes < 1:
        raise ValueError(f"TFDS data set {name!r}: 'label' is not a ClassLabel feature")
    first = np.asarray(data_source[0]["image"])
    image_shape = first.shape if first.ndim == 3 else (*first.shape, 1)
    if first.dtype != np.uint8 or len(image_shape) != 3:
        raise ValueError(
            f"TFDS data set {name!r}: images must be uint8 [H, W, C], got {first.dtype}"
            f" {first.shape}"
        )
    return TfdsSource(
        name=name,
        split=split,
        data_source=data_source,
        num_levels=256,
        num_classes=num_classes,
        image_shape=(int(image_shape[0]), int(image_shape[1]), int(image_shape[2])),
        has_label=has_label,
    )
