from setuptools import find_packages, setup

setup(
    name="scn_tf",
    version="0.1.0",
    description="SpatialConfiguration-Net for anatomical landmark localization (TensorFlow 2 / Keras 3)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["scn_tf", "scn_tf.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tensorboard",
        "numpy",
        "SimpleITK",
        "h5py",
        "absl-py",
        "matplotlib",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": [
        "scn-augment = scn_tf.cli.augment:run",
        "scn-predict = scn_tf.cli.predict:run",
        "scn-evaluate = scn_tf.cli.evaluate:run",
        "scn-train = scn_tf.cli.train:run",
        "scn-convert = scn_tf.cli.convert:run",
    ]},
)
