"""How far the fast resampler's source positions are from the exact transform's, in mm, over a preset's
random augmentation: the coarse grid interpolated to every network pixel against the transform evaluated at
every network pixel (data.resampling "field" against "exact").

  python benchmarks/resampling_error.py [--datasets skull2d,spine3d] [--samples 20] [--steps 2,4,8]

The source geometries are the benchmark's (benchmarks/pipeline.py): a 1935x2400 cephalogram at 0.1 mm
and a 512x512x160 CT at 0.34x0.34x2.06 mm.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from absl import app, flags

from scn_tf.configs import preset
from scn_tf.data.augmentation import make_transform
from scn_tf.data.resampling import FIELD_STEP, source_index_grid, upsample

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["skull2d", "spine3d"], "Presets whose augmentation is measured.")
flags.DEFINE_integer("samples", 20, "Random transforms per preset.")
flags.DEFINE_list("steps", ["2", str(FIELD_STEP), "8"], "Coarse grid steps (output pixels).")

SOURCES = {"skull2d": ([1935, 2400], [0.1, 0.1]), "spine3d": ([512, 512, 160], [0.34, 0.34, 2.06])}


def position_errors(transform: sitk.Transform, size, spacing, steps: list[int]) -> dict[int, np.ndarray]:
    """Per coarse grid step, per network pixel: the distance (mm) between the interpolated and the exact
    source position."""
    ndim = len(size)
    dense = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, [int(n) for n in size],
                                              [0.0] * ndim, [float(s) for s in spacing],
                                              np.eye(ndim).ravel().tolist())
    axes = [np.arange(n) * s for n, s in zip(size[::-1], spacing[::-1])]
    exact = np.stack(np.meshgrid(*axes, indexing="ij")[::-1], axis=0)
    exact += np.moveaxis(sitk.GetArrayFromImage(dense), -1, 0)
    identity = sitk.Image([2] * ndim, sitk.sitkUInt8)  # origin 0, spacing 1: its continuous indices are mm
    return {step: np.linalg.norm(upsample(source_index_grid(identity, transform, size, spacing, step), size) - exact,
                                 axis=0) for step in steps}


def main(argv):
    del argv
    steps = [int(s) for s in FLAGS.steps]
    for name in FLAGS.datasets:
        if name not in SOURCES:
            raise app.UsageError(f"--datasets: no source geometry for {name!r}; choose from {sorted(SOURCES)}")
        config = preset(name)
        size, spacing = SOURCES[name]
        source = sitk.Image(size, sitk.sitkUInt8)
        source.SetSpacing(spacing)
        worst, means = {s: 0.0 for s in steps}, {s: [] for s in steps}
        for seed in range(FLAGS.samples):
            spatial = make_transform(source, config.data, config.augmentation, np.random.default_rng(seed))
            errors = position_errors(spatial.transform, spatial.geometry.size, spatial.geometry.spacing, steps)
            for step, error in errors.items():
                worst[step] = max(worst[step], float(error.max()))
                means[step].append(float(error.mean()))
        pixel = float(np.min(config.data.spacing))
        for step in steps:
            print(f"{name}: step {step} px ({step * pixel:g} mm): position error max {worst[step]:.4f} mm, "
                  f"mean {np.mean(means[step]):.5f} mm over {FLAGS.samples} random transforms "
                  f"({worst[step] / pixel:.4f} output px)")


if __name__ == "__main__":
    app.run(main)
