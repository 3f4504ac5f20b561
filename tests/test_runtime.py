"""Process-wide settings of a run are restored after it."""

import random

import keras
import numpy as np

from scn_tf.runtime import dtype_policy, seeded


def test_seeded_draws_repeat_and_the_caller_streams_continue():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    with seeded(0):
        first = (random.random(), np.random.rand())
    with seeded(0):
        assert (random.random(), np.random.rand()) == first
    assert (random.random(), np.random.rand()) == expected


def test_dtype_policy_is_restored_even_after_an_error():
    before = keras.mixed_precision.global_policy().name
    try:
        with dtype_policy("mixed_float16"):
            assert keras.mixed_precision.global_policy().name == "mixed_float16"
            raise RuntimeError
    except RuntimeError:
        pass
    assert keras.mixed_precision.global_policy().name == before
