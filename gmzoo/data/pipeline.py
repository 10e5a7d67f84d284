"""An infinite, resumable, process-sliced batch iterator over a random-access source.

Epoch e visits the source in the order `np.random.default_rng([seed, e]).permutation(N)`, so the
order depends only on (seed, epoch), never on how many batches were drawn before. Global batch k
of an epoch holds permutation entries [k*B, (k+1)*B) (B = global batch_size); process i of n
reads only rows [i*b, (i+1)*b) of it, b = B // n, so the processes' slices concatenated in order
are exactly the single-process batch. The state is the pair (epoch, index of the next global batch
in it): the same on every process, and enough to restore the exact continuation.

Plain numpy indexing over the source is used rather than grain: the per-epoch order, the slicing
of a global batch and a two-integer state are a few lines each, and every process reads only its
own rows (by random access: `source.get_batch(indices)` if the source has it, else `source[i]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from gmzoo.data.source import Source

Batch = dict[str, np.ndarray]


class BatchIterator(Iterator[Batch]):
    """Yields `{"image": float32 [b, H, W, C] (raw level values), "label": int32 [b]}` forever.

    b = batch_size // process_count. `transform`, if given, maps each such batch to the batch
    yielded (a numpy/jax function of the batch alone). With `drop_remainder=False` the last batch
    of an epoch holds the N mod B leftover examples (single process only).
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        seed: int,
        transform: Callable[[Batch], Any] | None = None,
        drop_remainder: bool = True,
        process_index: int = 0,
        process_count: int = 1,
    ) -> None:
        num_examples = len(source)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size > num_examples:
            raise ValueError(
                f"batch_size {batch_size} is larger than the data set ({num_examples} examples)"
            )
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(
                f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
            )
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} must be a multiple of process_count {process_count}"
            )
        if not drop_remainder and process_count > 1:
            raise ValueError(
                "drop_remainder=False needs process_count=1 (a short last batch cannot be split"
                f" evenly over {process_count} processes)"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.source = source
        self.batch_size = batch_size  # global
        self.local_batch_size = batch_size // process_count
        self.seed = int(seed)
        self.transform = transform
        self.drop_remainder = drop_remainder
        self.process_index = process_index
        self.process_count = process_count
        self.num_examples = num_examples
        if drop_remainder:
            self.batches_per_epoch = num_examples // batch_size
        else:
            self.batches_per_epoch = -(-num_examples // batch_size)
        self._epoch = 0
        self._index = 0
        self._perm = self.permutation(0)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch `epoch`: int64 [N], from `default_rng([seed, epoch])`."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def get_state(self) -> dict[str, int]:
        """JSON-serialisable position: {"epoch": e, "index": next global batch within epoch e}."""
        return {"epoch": self._epoch, "index": self._index}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue exactly after the batch at which `state` was taken with `get_state`."""
        epoch, index = state.get("epoch"), state.get("index")
        if (
            not isinstance(epoch, (int, np.integer))
            or not isinstance(index, (int, np.integer))
            or epoch < 0
            or not 0 <= index <= self.batches_per_epoch
        ):
            raise ValueError(
                f"state must be {{'epoch': int >= 0, 'index': 0..{self.batches_per_epoch}}},"
                f" got {dict(state)}"
            )
        epoch, index = int(epoch), int(index)
        if epoch != self._epoch:
            self._perm = self.permutation(epoch)
        self._epoch, self._index = epoch, index

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._index >= self.batches_per_epoch:
            self._epoch, self._index = self._epoch + 1, 0
            self._perm = self.permutation(self._epoch)
        start = self._index * self.batch_size
        global_rows = self._perm[start : start + self.batch_size]  # [B] (shorter at the end)
        b = self.local_batch_size
        rows = global_rows[self.process_index * b : (self.process_index + 1) * b]  # [b]
        self._index += 1
        batch = read_rows(self.source, rows)
        return self.transform(batch) if self.transform is not None else batch


def read_rows(source: Source, rows: np.ndarray) -> Batch:
    """Items `rows` by random access: image float32 [b, H, W, C], label int32 [b]."""
    get_batch = getattr(source, "get_batch", None)
    if get_batch is not None:
        items = get_batch(rows)
        images, labels = items["image"], items["label"]
    else:
        items = [source[int(i)] for i in rows]
        images = np.stack([item["image"] for item in items])
        labels = np.array([item["label"] for item in items])
    return {"image": images.astype(np.float32), "label": labels.astype(np.int32)}


def ordered_batches(source: Source, batch_size: int, limit: int = 0) -> Iterator[Batch]:
    """The examples of `source` in stored order (evaluation), `limit` of them if > 0."""
    n = len(source) if not limit else min(limit, len(source))
    for start in range(0, n, batch_size):
        yield read_rows(source, np.arange(start, min(start + batch_size, n)))
