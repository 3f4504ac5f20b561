"""TensorBoard event files written by the tensorboard package's own writer, under every Keras backend.

Under a backend other than TensorFlow the writer's file access goes through TensorBoard's TensorFlow stub
(selected by the marker module `tensorboard.compat.notf`), so that TensorFlow is never imported.
"""

from __future__ import annotations

import os
import sys
import types

import keras


def summary_writer(logdir: str | os.PathLike):
    """A `tensorboard.summary.Writer` writing event files into `logdir`."""
    if keras.backend.backend() != "tensorflow":
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.summary import Writer

    return Writer(str(logdir))
