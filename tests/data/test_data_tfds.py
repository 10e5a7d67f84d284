"""TFDS path offline: mocked mnist/cifar10, a real tiny array_record set, the unavailable error."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gmzoo.data import registry
from gmzoo.data.pipeline import BatchIterator
from gmzoo.data.tfds_source import DatasetUnavailableError, TfdsSource, load_tfds


class GmzooTinyImages(tfds.core.GeneratorBasedBuilder):
    """A 12 + 5 example image set written as real array_record files (Tensor feature: no TF)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=3),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(5)}

    def _generate_examples(self, n: int):
        for i in range(n):
            yield i, {"image": np.full((4, 4, 1), 10 * i, np.uint8), "label": i % 3}


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt to download or prepare during a test is recorded, refused and fails it."""
    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(self.name)
        raise AssertionError("gmzoo tried to download_and_prepare")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)
    yield
    assert attempts == [], f"download_and_prepare was called for {attempts}"


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_mocked_tfds_through_load_and_iterator(name, shape, tmp_path):
    with tfds.testing.mock_data(num_examples=20):
        source = load_tfds(name, "train", data_dir=str(tmp_path))
        assert isinstance(source, TfdsSource) and len(source) == 20
        assert source.image_shape == shape and source.num_levels == 256
        assert source.num_classes == 10
        item = source[3]
        assert item["image"].dtype == np.uint8 and item["image"].shape == shape
        assert item["label"].dtype == np.int32 and 0 <= item["label"] < 10

        it = BatchIterator(source, 8, seed=0)
        batches = [next(it) for _ in range(3)]  # 2 per epoch: crosses an epoch boundary
        b = batches[0]
        assert b["image"].dtype == np.float32 and b["image"].shape == (8, *shape)
        assert b["label"].dtype == np.int32 and b["label"].shape == (8,)
        assert 0 <= b["image"].min() and b["image"].max() <= 255 and b["image"].max() > 1
        rows = BatchIterator(source, 8, seed=0).permutation(0)[:8]
        np.testing.assert_array_equal(b["image"], np.stack([source[i]["image"] for i in rows]))

        again = BatchIterator(source, 8, seed=0)
        again.set_state(json.loads(json.dumps({"epoch": 0, "index": 1})))
        np.testing.assert_array_equal(next(again)["image"], batches[1]["image"])
        halves = [next(BatchIterator(source, 8, seed=0, process_index=i, process_count=2))
                  for i in range(2)]
        np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), b["image"])

        via_registry = registry.load(f"tfds:{name}", "test", data_dir=str(tmp_path))
        assert via_registry.image_shape == shape


def test_real_array_record_set_is_read_by_random_access(tmp_path, monkeypatch):
    monkeypatch.undo()  # the test itself prepares its tiny set locally (no network involved)
    GmzooTinyImages(data_dir=str(tmp_path)).download_and_prepare(file_format="array_record")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", None)  # reading only
    source = registry.load("tfds:gmzoo_tiny_images", "train", data_dir=str(tmp_path))
    assert len(source) == 12 and source.image_shape == (4, 4, 1) and source.num_classes == 3
    it = BatchIterator(source, 12, seed=5)
    first, second = next(it), next(it)
    ids = first["image"][:, 0, 0, 0].astype(int) // 10
    assert sorted(ids.tolist()) == list(range(12))  # one epoch: every example exactly once
    np.testing.assert_array_equal(first["label"], ids % 3)  # image and label stay paired
    assert not np.array_equal(first["image"], second["image"])  # a new order in epoch 1


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_unprepared_set_raises_clear_error_fast(name, tmp_path):
    empty = tmp_path / "empty_data_dir"
    empty.mkdir()
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as err:
        registry.load(name, "train", data_dir=str(empty))
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert "\n" not in message
    assert f"'{name}'" in message and str(empty) in message
    assert "download_and_prepare" in message and "array_record" in message
    assert isinstance(err.value, ValueError)
    assert registry.DatasetUnavailableError is DatasetUnavailableError  # what the CLI catches
    assert list(empty.iterdir()) == []  # nothing was written (no download started)


def test_unknown_tfds_name():
    with pytest.raises(ValueError, match="unknown TFDS data set 'no_such_set_xyz'"):
        load_tfds("no_such_set_xyz", "train", data_dir="/nonexistent")
