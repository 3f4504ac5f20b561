"""scn_tf: SpatialConfiguration-Net for anatomical landmark localization in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
