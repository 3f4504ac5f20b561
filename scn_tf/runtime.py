"""Process-wide settings that a run needs, set for the length of a block and restored after it.

A library call that trains should not leave the caller's Keras dtype policy or random streams changed.
TensorFlow's global seed has no getter, so it stays set; Python's and NumPy's random states and the Keras
dtype policy are restored.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import keras
import numpy as np


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds Python, NumPy, TensorFlow and the Keras backend (keras.utils.set_random_seed) for the block."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """The Keras global dtype policy `name` ("float32", "mixed_float16", ...) for the block."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
