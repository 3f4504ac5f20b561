"""Process-wide settings that a run needs, set for the length of a block and restored after it.

A library call that trains should not leave the caller's Keras dtype policy or random streams changed.
TensorFlow's global seed has no getter, so it stays set; Python's and NumPy's random states and the Keras
dtype policy are restored. Under a backend other than TensorFlow, TensorFlow is neither seeded nor imported.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator

import keras
import numpy as np


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds Python, NumPy, TensorFlow and the Keras backend (keras.utils.set_random_seed) for the block."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with tensorflow_hidden_unless_backend():
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


@contextlib.contextmanager
def tensorflow_hidden_unless_backend() -> Iterator[None]:
    """Makes `import tensorflow` fail for the block where TensorFlow is not Keras' backend and not imported yet.

    Keras seeds TensorFlow whenever it can import it, whatever the backend; under JAX that would import it.
    """
    hide = keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules
    if hide:
        sys.modules["tensorflow"] = None
    try:
        yield
    finally:
        if hide and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
