"""Shared test helpers: quiet TensorFlow, deterministic seeds, tiny generated landmark images."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def blob_sample(rng: np.random.Generator, size: int = 32, num_landmarks: int = 2, ndim: int = 2,
                blob_sigma: float = 1.5):
    """One image (1, *spatial, 1) with a distinct Gaussian blob per landmark, coords (1, N, d), valid (1, N).

    Landmark 0 is a bright blob and landmark 1 a dark one, so both local appearance and arrangement
    identify them.
    """
    coords = rng.uniform(6, size - 7, size=(num_landmarks, ndim)).astype(np.float32)
    grids = np.meshgrid(*[np.arange(size)] * ndim, indexing="ij")  # array order (z,) y, x
    image = np.zeros((size,) * ndim, np.float32)
    for index, point in enumerate(coords):
        squared = sum((grids[axis] - point[ndim - 1 - axis]) ** 2 for axis in range(ndim))
        image += (1.0 if index % 2 == 0 else -1.0) * np.exp(-squared / (2 * blob_sigma**2))
    return image[None, ..., None], coords[None], np.ones((1, num_landmarks), bool)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
