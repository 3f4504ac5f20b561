"""The process-pool feed (scn_tf.data.feed) against the tf.data pipeline: the same samples, array for array."""

import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset
from scn_tf.configs import preset
from scn_tf.data.feed import ProcessFeed, SharedSource, write_shared
from scn_tf.data.pipeline import LandmarkSource, make_dataset, make_sample, sample_order


def test_shared_source_rebuilds_the_images_exactly(tmp_path):
    data = write_dataset(tmp_path / "data")
    source = LandmarkSource(data, tmp_path / "data", ["a", "b", "c"], verbose=False)
    shared = SharedSource(write_shared(source, tmp_path))
    for image_id in source.ids:
        original, rebuilt = source.images[image_id], shared.images[image_id]
        np.testing.assert_array_equal(sitk.GetArrayFromImage(rebuilt), sitk.GetArrayFromImage(original))
        assert rebuilt.GetSpacing() == original.GetSpacing() and rebuilt.GetOrigin() == original.GetOrigin()
        assert rebuilt.GetDirection() == original.GetDirection()
        assert rebuilt.GetPixelID() == original.GetPixelID()
    augmentation = preset("skull2d").augmentation
    _, rng_a = sample_order(3, 5, 7, True)
    _, rng_b = sample_order(3, 5, 7, True)
    a = make_sample(source, "b", augmentation, rng_a, sitk_threads=1)
    b = make_sample(shared, "b", augmentation, rng_b, sitk_threads=1)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.coords, b.coords)


@pytest.mark.slow
def test_process_feed_yields_the_tf_data_batches(tmp_path):
    data = write_dataset(tmp_path)
    source = LandmarkSource(data, tmp_path, ["a", "b", "c"], verbose=False)
    augmentation = preset("skull2d").augmentation
    dataset = make_dataset(source, augmentation, seed=3, batch_size=2, start_step=1, workers=2, sitk_threads=1)
    expected = [tuple(np.asarray(t) for t in batch) for batch in dataset.take(4)]
    with ProcessFeed(source, augmentation, seed=3, batch_size=2, workers=2) as feed:
        stream = feed.batches(start_step=1)
        got = [next(stream) for _ in range(4)]
        resumed = next(feed.batches(start_step=3))
        worker = feed._pool.apply(worker_facts)
    for a, b in zip(expected, got, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.shape == y.shape and x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    for x, y in zip(got[2], resumed, strict=True):
        np.testing.assert_array_equal(x, y)
    assert worker == {"tensorflow": False, "jax": False, "keras": False, "JAX_PLATFORMS": "cpu"}


def worker_facts() -> dict:
    """What a feed worker imported and sees (run inside the worker)."""
    facts = {name: name in sys.modules for name in ("tensorflow", "jax", "keras")}
    return {**facts, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS")}
