"""Random-access image sources: the item format every gmzoo data set shares.

An item is `{"image": uint8 [H, W, C], "label": int32 scalar}`; images are NHWC with C=1 for
the digit sets. `BatchIterator` (pipeline.py) reads any `Source`; a source may also offer
`get_batch(indices)` to read many items at once (ArraySource does, with numpy indexing).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """What a random-access data source offers (ArraySource, TfdsSource)."""

    name: str
    num_levels: int  # pixel values are the integers 0 .. num_levels - 1
    num_classes: int  # labels are the integers 0 .. num_classes - 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        ...

    def __len__(self) -> int:
        ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        ...


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """An in-memory data set: `images` uint8 [N, H, W, C] and `labels` int32 [N]."""

    name: str
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]
    num_levels: int
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                    f"{self.name}: images must be uint8 [N, H, W, C], got {self.images.dtype}"
                    f" {self.images.shape}"
            )
        if self.labels.shape != self.images.shape[:1] or self.labels.dtype != np.int32:
            raise ValueError(
                    f"{self.name}: labels must be int32 [{len(self.images)}], got"
                    f" {self.labels.dtype} {self.labels.shape}"
            )
        if not 2 <= self.num_levels <= 256:
            raise ValueError(f"{self.name}: num_levels must be in [2, 256], got {self.num_levels}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        h, w, c = self.images.shape[1:]
        return (h, w, c)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """One item `{"image": uint8 [H, W, C], "label": int32 []}`."""
        return {"image": self.images[index], "label": self.labels[index]}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Items `indices` stacked: `{"image": uint8 [b, H, W, C], "label": int32 [b]}`."""
        return {"image": self.images[indices], "label": self.labels[indices]}
