"""Reading, preprocessing and augmenting landmark data, and the tf.data pipeline that feeds training."""
