"""Data sets by name: one explicit table of the embedded sets, and TFDS for the rest.

`load("digits", "train")` and `load("mnist5k", "test")` need nothing but installed packages, as
do the 2-D toy point sets of `gmzoo.data.toys.TOY_SETS` (`load("ring8", "train")`).
Any other name is read from TFDS (prepared offline, see tfds_source.py): a name from
`TFDS_IMAGE_SETS`, or any TFDS image set spelled "tfds:NAME" (e.g. "tfds:cifar10",
"tfds:celeb_a:2.1.0").
"""

from __future__ import annotations

from collections.abc import Callable

from gmzoo.data.embedded import load_digits, load_mnist5k
from gmzoo.data.signals import load_tones
from gmzoo.data.source import ArraySource, Source
from gmzoo.data.tfds_source import DatasetUnavailableError, load_tfds
from gmzoo.data.toys import TOY_SETS, PointSource, load_toy

__all__ = ["DATASETS", "TFDS_IMAGE_SETS", "TOY_SETS", "DatasetUnavailableError", "is_points",
           "list_datasets", "load"]

DATASETS: dict[str, Callable[[str], ArraySource]] = {
    "digits": load_digits,  # 8x8, 17 levels, train 1,437 / test 360
    "mnist5k": load_mnist5k,  # 28x28, 256 levels, train 4,000 / test 1,000
    "tones": load_tones,  # 1-D mu-law tones [256, 1, 1], 256 levels, 4 classes, 4,000 / 1,000
}

# Known TFDS image sets, accepted without the "tfds:" prefix.
TFDS_IMAGE_SETS: tuple[str, ...] = (
    "mnist",
    "fashion_mnist",
    "kmnist",
    "emnist",
    "cifar10",
    "cifar100",
    "svhn_cropped",
    "celeb_a",
)

TFDS_PREFIX = "tfds:"


def list_datasets() -> list[str]:
    """Names `load` accepts: the embedded sets, the toy point sets, then the known TFDS sets
    (plus any "tfds:NAME")."""
    return [*DATASETS, *TOY_SETS, *TFDS_IMAGE_SETS]


def is_points(source: Source) -> bool:
    """Whether `source` is a set of points (a toy set) rather than of images."""
    return isinstance(source, PointSource)


def load(name: str, split: str, data_dir: str | None = None) -> Source:
    """The random-access source of split `split` of data set `name`.

    Embedded sets take split "train" or "test" and ignore `data_dir`; TFDS sets take any TFDS
    split string and are read from `data_dir` (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    """
    if name in DATASETS:
        return DATASETS[name](split)
    if name in TOY_SETS:
        return load_toy(name, split)
    if name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX):
        return load_tfds(name[len(TFDS_PREFIX) :], split, data_dir)
    if name in TFDS_IMAGE_SETS:
        return load_tfds(name, split, data_dir)
    raise ValueError(
        f"unknown data set {name!r}; available: {', '.join(list_datasets())}, or 'tfds:NAME'"
        " for any TFDS image set"
    )
