"""BatchIterator: determinism, per-epoch permutations, resume, process slicing, errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from gmzoo.data.pipeline import BatchIterator
from gmzoo.data.source import ArraySource

N = 23  # not a multiple of the batch sizes used, so remainders matter


def _source(n: int = N) -> ArraySource:
    images = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 1), np.uint8))
    return ArraySource("ids", images, np.arange(n, dtype=np.int32) % 7, num_levels=256,
                       num_classes=7)


class _ItemOnly:
    """A source with only __len__/__getitem__ (like a TFDS data source)."""

    def __init__(self, source: ArraySource) -> None:
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self._source[i]


def _ids(batch: dict[str, np.ndarray]) -> list[int]:
    return batch["image"][:, 0, 0, 0].astype(int).tolist()


def _take(it: BatchIterator, k: int) -> list[list[int]]:
    return [_ids(b) for b in itertools.islice(it, k)]


def test_batch_format():
    batch = next(BatchIterator(_source(), 4, seed=0))
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (4, 2, 3, 1)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (4,)
    np.testing.assert_array_equal(batch["label"], np.array(_ids(batch)) % 7)  # rows stay paired
    assert batch["image"].max() > 1.0  # raw level values, not scaled


def test_deterministic_from_seed_and_each_epoch_a_permutation():
    a = _take(BatchIterator(_source(), 5, seed=3), 12)
    b = _take(BatchIterator(_source(), 5, seed=3), 12)
    assert a == b
    assert a != _take(BatchIterator(_source(), 5, seed=4), 12)
    epochs = [sum(a[i : i + 4], []) for i in range(0, 12, 4)]  # 4 batches of 5 per epoch
    for e, ids in enumerate(epochs):
        assert len(set(ids)) == 20  # no repeats within an epoch (3 dropped)
        np.testing.assert_array_equal(ids, BatchIterator(_source(), 5, seed=3).permutation(e)[:20])
    assert epochs[0] != epochs[1] != epochs[2]


def test_item_path_equals_get_batch_path():
    fast = _take(BatchIterator(_source(), 4, seed=1), 9)
    slow = _take(BatchIterator(_ItemOnly(_source()), 4, seed=1), 9)
    assert fast == slow


@pytest.mark.parametrize("stop", [0, 3, 4, 5, 11])  # 4 batches per epoch: include boundaries
def test_resume_gives_exact_continuation(stop):
    reference = _take(BatchIterator(_source(), 5, seed=7), stop + 6)
    it = BatchIterator(_source(), 5, seed=7)
    _take(it, stop)
    state = json.loads(json.dumps(it.get_state()))
    resumed = BatchIterator(_source(), 5, seed=7)
    _take(resumed, 2)  # a different position before restoring must not matter
    resumed.set_state(state)
    assert _take(resumed, 6) == reference[stop:]
    assert _take(it, 6) == reference[stop:]


def test_state_accepts_numpy_integers_from_a_checkpoint():
    reference = _take(BatchIterator(_source(), 5, seed=7), 7)
    it = BatchIterator(_source(), 5, seed=7)
    it.set_state({"epoch": np.int64(1), "index": np.int32(1)})
    assert _take(it, 2) == reference[5:]
    assert json.dumps(it.get_state()) == '{"epoch": 1, "index": 3}'


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_global_batch(count):
    single = [next(BatchIterator(_source(), 8, seed=2)) for _ in range(1)]
    glob = BatchIterator(_source(), 8, seed=2)
    procs = [BatchIterator(_source(), 8, seed=2, process_index=i, process_count=count)
             for i in range(count)]
    for _ in range(7):  # crosses two epoch boundaries (2 batches per epoch)
        g = next(glob)
        parts = [next(p) for p in procs]
        assert all(p["image"].shape[0] == 8 // count for p in parts)
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), g[key])
        assert all(p.get_state() == glob.get_state() for p in procs)
    assert single[0]["image"].shape[0] == 8


def test_no_drop_remainder_and_transform():
    it = BatchIterator(_source(), 5, seed=0, drop_remainder=False,
                       transform=lambda b: {"x": b["image"] / 255.0})
    sizes = [len(next(it)["x"]) for _ in range(10)]
    assert sizes == [5, 5, 5, 5, 3] * 2
    it = BatchIterator(_source(), 5, seed=0, drop_remainder=False)
    assert sorted(sum(_take(it, 5), [])) == list(range(N))


def test_errors_are_one_line_and_name_the_numbers():
    with pytest.raises(ValueError, match=r"batch_size 24 is larger than the data set \(23 exa"):
        BatchIterator(_source(), 24, seed=0)
    with pytest.raises(ValueError, match="multiple of process_count 3"):
        BatchIterator(_source(), 8, seed=0, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="process_index"):
        BatchIterator(_source(), 8, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="drop_remainder=False needs process_count=1"):
        BatchIterator(_source(), 8, seed=0, drop_remainder=False, process_count=2)
    with pytest.raises(ValueError, match="state must be"):
        BatchIterator(_source(), 8, seed=0).set_state({"epoch": 0, "index": 9})
