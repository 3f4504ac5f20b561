"""How far the fast resampler's source positions are from the exact transform's, in mm, over a preset's
random augmentation (data.resampling "field" against "exact"): the coarse grid interpolated to every
network pixel, refined where a cell fails its check, against the transform evaluated at every network
pixel, and the share of pixels refined. A source-space elastic part (spine3d) takes the structured field
(resampling.ElasticInSourceField): no pixel is refined; the pixels it sends outside the source must lie
outside by the exact transform too (counted), and the error is over the others.

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
from scn_tf.data.augmentation import SpatialTransform, make_transform
from scn_tf.data.resampling import FIELD_STEP, FIELD_TOLERANCE, ElasticInSourceField, SourceField, transformed_points

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["skull2d", "spine3d"], "Presets whose augmentation is measured.")
flags.DEFINE_integer("samples", 20, "Random transforms per preset.")
flags.DEFINE_list("steps", ["2", str(FIELD_STEP), "8"], "Coarse grid steps (output pixels).")
flags.DEFINE_float(
    "tolerance", FIELD_TOLERANCE, "What a cell's centre may miss by (output spacings; inf: never refine)."
)

SOURCES = {"skull2d": ([1935, 2400], [0.1, 0.1]), "spine3d": ([512, 512, 160], [0.34, 0.34, 2.06])}


def position_errors(
    source: sitk.Image, spatial: SpatialTransform, steps: list[int]
) -> dict[int, tuple[np.ndarray, float, int]]:
    """Per coarse grid step: per network pixel the distance (mm) between the field's and the exact source
    position (pixels the structured field sends outside left out), the share of pixels refined and the
    number sent outside that the exact transform keeps inside (0 when correct)."""
    size, spacing = spatial.geometry.size, spatial.geometry.spacing
    ndim = len(size)
    exact = transformed_points(spatial.transform, size, spacing, [0.0] * ndim)
    source_spacing = np.reshape(source.GetSpacing(), (ndim,) + (1,) * ndim)  # origin 0, identity direction
    bounds = np.reshape(source.GetSize(), (ndim,) + (1,) * ndim)
    exact_outside = np.any((exact / source_spacing < -0.5) | (exact / source_spacing >= bounds - 0.5), axis=0)
    identity = sitk.Image([2] * ndim, sitk.sitkUInt8)  # origin 0, spacing 1: its continuous indices are mm
    result = {}
    for step in steps:
        if spatial.elastic_in_source:
            field = ElasticInSourceField(source, spatial.affine, spatial.elastic, size, spacing, step)
            positions = np.concatenate(list(field.slabs(int(size[-1]))), axis=1) * source_spacing
            sent_out = field.outside(0, int(size[-1]))
            error = np.linalg.norm(positions - exact, axis=0)[~sent_out]
            result[step] = error, 0.0, int(np.sum(sent_out & ~exact_outside))
        else:
            field = SourceField(identity, spatial.transform, size, spacing, step, FLAGS.tolerance)
            positions = np.concatenate(list(field.slabs(int(size[-1]))), axis=1)
            result[step] = np.linalg.norm(positions - exact, axis=0), float(field.mask.mean()), 0
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
        wrongly_out = {s: 0 for s in steps}
        for seed in range(FLAGS.samples):
            spatial = make_transform(source, config.data, config.augmentation, np.random.default_rng(seed))
            for step, (error, share, wrong) in position_errors(source, spatial, steps).items():
                worst[step] = max(worst[step], float(error.max()))
                means[step].append(float(error.mean()))
                refined[step].append(share)
                wrongly_out[step] += wrong
        pixel = float(np.min(config.data.spacing))
        for step in steps:
            print(
                f"{name}: step {step} px ({step * pixel:g} mm): position error max {worst[step]:.4f} mm, "
                f"mean {np.mean(means[step]):.5f} mm over {FLAGS.samples} random transforms "
                f"({worst[step] / pixel:.4f} output px); pixels refined: mean {np.mean(refined[step]):.1%}, "
                f"max {np.max(refined[step]):.1%} (tolerance {FLAGS.tolerance:g} output spacings); "
                f"sent outside but inside by the exact transform: {wrongly_out[step]} pixels"
            )


if __name__ == "__main__":
    app.run(main)
