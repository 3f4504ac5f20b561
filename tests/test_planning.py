"""scn-plan: its decisions against hand-computed values on small data sets, the data it refuses, and a plan
that scn-train accepts."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_dataset, write_pixel_dataset
from scn_tf import planning
from scn_tf.configs import preset
from scn_tf.data.io import DataError


def test_field_of_view_by_hand():
    offsets = np.array([[[10.0, -4.0], [np.nan, np.nan]], [[-6.0, 8.0], [2.0, 1.0]]])
    fov = planning.field_of_view(offsets, rotation=0.0, scale=0.0, translation=0.0)
    assert fov == pytest.approx([2.2 * 10, 2.2 * 8])
    turned = planning.field_of_view(offsets, rotation=0.1, scale=0.2, translation=3.0)
    reach_x = max(10 + math.sin(0.1) * 4, 6 + math.sin(0.1) * 8, 2 + math.sin(0.1) * 1) * 1.2 + 3
    assert turned[0] == pytest.approx(2.2 * reach_x)


def test_input_sizes_fit_the_network():
    """Every planned input builds: its sides divide by the U-Net's and the spatial configuration's pooling,
    which sees the whole input; no side exceeds its native size where a smaller fitting one exists."""
    from scn_tf.configs import NetworkConfig, check_network_fits
    from scn_tf.models.receptive_fields import spatial_configuration

    data = preset("cpu2d").data
    for fov, native, longest in [
        ((200.0, 160.0), [200, 160], 256),
        ((1400.0, 2130.0), [1400, 2136], 224),
        ((30.0, 400.0), [32, 400], 256),
        ((500.0, 500.0), [504, 504], 2048),
    ]:
        sizes, (downsampling, kernel) = planning.input_size(longest, np.array(fov), native, 4, 8)
        assert spatial_configuration(4, kernel, downsampling) >= max(sizes)
        network = NetworkConfig(network="scn", levels=4, spatial_downsampling=downsampling, spatial_kernel_size=kernel)
        check_network_fits(network, dataclasses.replace(data, image_size=sizes))
        assert all(
            s <= n or s == planning.round_size(downsampling * (kernel // 2 + 1), 8)
            for s, n in zip(sizes, native, strict=True)
        )
    assert planning.input_size(256, np.array([200.0, 160.0]), [200, 160], 4, 8)[0] == [200, 160]


def test_survey_of_pixel_data(tmp_path):
    write_pixel_dataset(tmp_path, ids=("a", "b", "c"), size=(60, 50))
    (tmp_path / "images" / "extra.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    csv = tmp_path / "landmarks.csv"
    csv.write_text("id,tip_x,tip_y,notch_x,notch_y,corner_x,corner_y\n" + csv.read_text())
    found = planning.survey(tmp_path, "landmarks.csv")
    assert found.landmark_names == ["tip", "notch", "corner"]  # from the header row
    assert found.ids == ["a", "b", "c"] and found.skipped == ["extra"]
    assert (found.ndim, found.num_landmarks, found.landmark_units, found.suffix) == (2, 3, "pixel", ".png")
    assert found.median_spacing.tolist() == [1.0, 1.0]
    rows = csv.read_text().splitlines()
    first = np.array([float(v) for v in rows[1].split(",")[1:3]])
    assert found.offsets[0, 0] == pytest.approx(first - np.array([29.5, 24.5]))  # centre of 60x50 pixels


def test_plan_with_a_timer_by_hand(tmp_path):
    """With a step time proportional to the pixels, the plan takes the largest input that leaves the CPU
    preset's iterations in the minutes and fills them."""
    write_dataset(tmp_path, ids=("a", "b", "c"), size=(400, 300), spacing=(0.8, 0.6))
    timer = lambda config: 4e-6 * math.prod(config.data.image_size)  # noqa: E731
    config, decisions = planning.plan(tmp_path, budget="cpu", minutes=3.0, timer=timer)
    sizes = config.data.image_size
    found = planning.survey(tmp_path, "landmarks.csv")
    fov = planning.field_of_view(found.offsets, 0.2, 0.2, 0.05 * float(np.max(found.median_extent)))
    fov = np.minimum(fov, found.median_extent)
    assert config.data.spacing[0] >= 0.6 - 1e-6  # never finer than the images' spacing
    assert config.data.spacing[0] == pytest.approx(float(np.max(fov / np.array(sizes))), rel=1e-3)
    overhead = planning.FIXED_SECONDS + planning.SECONDS_PER_IMAGE * 3

    def steps(candidate):
        return (180 - overhead) / (4e-6 * math.prod(candidate) * planning.STEP_MARGIN) // 100 * 100

    least = preset("cpu2d").training.iterations
    assert config.training.iterations == min(int(steps(sizes)), planning.MAX_ITERATIONS[2]) and steps(sizes) >= least
    larger = [L for L in planning.CPU_SIZES[2] if L > max(sizes)]
    candidate = [min(planning.round_size(larger[0] * f / max(fov), 8), planning.round_size(f / 0.6, 8)) for f in fov]
    assert candidate == sizes or steps(candidate) < least  # the next larger input trains too few iterations
    assert config.data.landmark_units == "mm" and config.data.image_suffix == ".mha"
    assert {d.key for d in decisions} >= {"data.image_size", "training.iterations", "intensity"}


def test_plan_refuses_unplannable_data(tmp_path):
    mixed = tmp_path / "mixed"
    write_dataset(mixed)
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkUInt8), str(mixed / "images" / "v.mha"))
    with pytest.raises(DataError, match=r"mixed dimensionality .* 3D: v\.mha"):
        planning.survey(mixed, "landmarks.csv")
    far = tmp_path / "far"
    write_pixel_dataset(far)
    rows = [row.split(",") for row in (far / "landmarks.csv").read_text().splitlines()]
    (far / "landmarks.csv").write_text(
        "\n".join(",".join([r[0]] + [str(float(v) + 500) if v != "nan" else v for v in r[1:]]) for r in rows) + "\n"
    )
    with pytest.raises(DataError, match="outside their images"):
        planning.survey(far, "landmarks.csv")
    plain = tmp_path / "plain"
    write_pixel_dataset(plain)
    with pytest.raises(DataError, match="give --image_spacing"):
        planning.survey(plain, "landmarks.csv", landmark_units="mm")


@pytest.mark.slow
def test_scn_plan_prints_only_the_plan_and_scn_train_accepts_it(tmp_path):
    import subprocess
    import sys

    write_pixel_dataset(tmp_path / "data", ids=("a", "b", "c", "d"))
    result = subprocess.run(
        [sys.executable, "-m", "scn_tf.cli.plan", "--data_dir", str(tmp_path / "data"), "--minutes", "0.6"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)  # stdout holds the plan and nothing else
    assert "plan: data.image_size" in result.stderr and "plan: training.iterations" in result.stderr
    (tmp_path / "plan.json").write_text(result.stdout)
    (tmp_path / "data" / "train.txt").write_text("a\nb\nc\n")
    from scn_tf.cli import train

    status = train.run(
        [
            "scn-train",
            "--config",
            str(tmp_path / "plan.json"),
            "--data_dir",
            str(tmp_path / "data"),
            "--train_ids",
            "train.txt",
            "--iterations",
            "2",
            "--filters",
            "4",
            "--workers",
            "1",
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    assert status == 0 and plan["data"]["landmark_units"] == "pixel"
    assert (tmp_path / "run" / "last.weights.h5").exists()
