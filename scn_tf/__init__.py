"""scn_tf: SpatialConfiguration-Net for anatomical landmark localization in TensorFlow 2 / Keras 3."""

import os

# TensorFlow uses oneDNN's CPU kernels by default on Intel CPUs only. On this project's AMD EPYC machines
# (AVX2, no AVX-512) they make the ISBI CPU step 1.4x and the 3D convolution gradients 2 to 5x faster than
# TensorFlow's own, but 2D convolutions with 128 channels (the paper-size cephalogram network) several times
# slower (README, "Speed"). Read when TensorFlow is first imported, so this must come first; export
# TF_ENABLE_ONEDNN_OPTS=0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
