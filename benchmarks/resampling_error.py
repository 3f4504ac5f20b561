"""How far the fast resampler's source positions are from the exact transform's, in mm, over a preset's
random augmentation: the coarse grid interpolated to every network pixel, refined where a cell fails its
check, against the transform evaluated at every network pixel (data.resampling "field" against "exact"),
and the share of pixels refined.

  python benchmarks/resampling_error.py [--datasets skull2d,spine3d] [--samples 20] [--steps 2,4,8]
      [--tolerance 0.005]  (output spacings; inf: the coarse grid alone)

The source geometries are the benchmark's (benchmarks/pipeline.py): a 1935x2400 cephalogram at 0.1 mm
and a 512x512x160 CT at 0.34x0.34x2.06 mm.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from absl import app, flags

from scn_tf.configs import preset
from scn_tf.data.augmentation import make_transform
from scn_tf.data.resampling import FIELD_STEP, FIELD_TOLERANCE, SourceField, transformed_points

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["skull2d", "spine3d"], "Presets whose augmentation is measured.")
flags.DEFINE_integer("samples", 20, "Random transforms per preset.")
flags.DEFINE_list("steps", ["2", str(FIELD_STEP), "8"], "Coarse grid steps (output pixels).")
flags.DEFINE_float("tolerance", FIELD_TOLERANCE, "What a cell's centre may miss by (output spacings; inf: never "
                   "refine).")

SOURCES = {"skull2d": ([1935, 2400], [0.1, 0.1]), "spine3d": ([512, 512, 160], [0.34, 0.34, 2.06])}


def position_errors(transform: sitk.Transform, size, spacing, steps: list[int]) -> dict[int, tuple[np.ndarray, float]]:
    """Per coarse grid step: per network pixel the distance (mm) between the field's and the exact source
    position, and the share of pixels refined."""
    ndim = len(size)
    exact = transformed_points(transform, size, spacing, [0.0] * ndim)
    identity = sitk.Image([2] * ndim, sitk.sitkUInt8)  # origin 0, spacing 1: its continuous indices are mm
    result = {}
    for step in steps:
        field = SourceField(identity, transform, size, spacing, step, FLAGS.tolerance)
        indices = np.concatenate(list(field.slabs(int(size[-1]))), axis=1)
        result[step] = np.linalg.norm(indices - exact, axis=0), float(field.mask.mean())
    return result


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
        worst, means, refined = {s: 0.0 for s in steps}, {s: [] for s in steps}, {s: [] for s in steps}
        for seed in range(FLAGS.samples):
            spatial = make_transform(source, config.data, config.augmentation, np.random.default_rng(seed))
            errors = position_errors(spatial.transform, spatial.geometry.size, spatial.geometry.spacing, steps)
            for step, (error, share) in errors.items():
                worst[step] = max(worst[step], float(error.max()))
                means[step].append(float(error.mean()))
                refined[step].append(share)
        pixel = float(np.min(config.data.spacing))
        for step in steps:
            print(f"{name}: step {step} px ({step * pixel:g} mm): position error max {worst[step]:.4f} mm, "
                  f"mean {np.mean(means[step]):.5f} mm over {FLAGS.samples} random transforms "
                  f"({worst[step] / pixel:.4f} output px); pixels refined: mean {np.mean(refined[step]):.1%}, "
                  f"max {np.max(refined[step]):.1%} (tolerance {FLAGS.tolerance:g} output spacings)")


if __name__ == "__main__":
    app.run(main)
