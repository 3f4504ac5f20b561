"""The image frame: the original loads every image with origin 0 and identity direction, and the spine
landmarks lie in that frame; a wrong frame is reported before training instead of training silently."""

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.configs import preset
from scn_tf.data.augmentation import rotation_matrix
from scn_tf.data.io import DataError, apply_image_frame
from scn_tf.data.pipeline import LandmarkSource
from test_augmentation import local_peak

SIZE, SPACING = (40, 40, 50), (2.5, 2.5, 3.0)
INDICES = np.array([[20.0, 20.0, 18.0], [15.0, 24.0, 25.0], [24.0, 16.0, 32.0], [19.0, 21.0, 40.0]])


def write_ct(root):
    """A CT whose header has a non-zero origin and a rotated direction, with HU blobs at INDICES, and the
    landmark CSV in the zero-origin frame (index * spacing), as the original's spine CSV."""
    (root / "images").mkdir(parents=True)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SIZE[::-1]], indexing="ij", sparse=True)
    volume = np.full(SIZE[::-1], -1000.0, np.float32)
    for px, py, pz in INDICES * np.array(SPACING):
        squared = (x * SPACING[0] - px) ** 2 + (y * SPACING[1] - py) ** 2 + (z * SPACING[2] - pz) ** 2
        volume += 1500 * np.exp(-squared / (2 * 6.0**2))
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(SPACING)
    image.SetOrigin([-40.0, 12.0, 300.0])
    image.SetDirection([float(v) for v in rotation_matrix(np.array([0.3, -0.2, 0.4]), 3).ravel()])
    sitk.WriteImage(image, str(root / "images" / "ct.nii.gz"))
    points = INDICES * np.array(SPACING)
    (root / "landmarks.csv").write_text("ct," + ",".join(f"{v:.3f}" for v in points.ravel()) + "\n")


def spine_config(tmp_path, **data):
    config = preset("spine3d").updated(
        {"data": {"num_landmarks": len(INDICES), "landmarks_csv": "landmarks.csv", "image_size": [32, 32, 48], **data}}
    )
    path = tmp_path / "spine.json"
    path.write_text(config.to_json())
    return config, path


def test_zero_origin_frame_drops_origin_and_direction_only():
    image = sitk.Image([4, 5, 6], sitk.sitkFloat32)
    image.SetSpacing([1.5, 2.0, 3.0])
    image.SetOrigin([7.0, -3.0, 100.0])
    image.SetDirection([float(v) for v in rotation_matrix(np.array([0.1, 0.2, 0.3]), 3).ravel()])
    framed = apply_image_frame(image, "zero_origin")
    assert framed.GetOrigin() == (0.0, 0.0, 0.0) and framed.GetSpacing() == (1.5, 2.0, 3.0)
    np.testing.assert_array_equal(framed.GetDirection(), np.eye(3).ravel())
    assert image.GetOrigin() == (7.0, -3.0, 100.0)  # the argument is left as it is
    assert apply_image_frame(image, "header") is image
    assert preset("spine3d").data.image_frame == preset("hand3d").data.image_frame == "zero_origin"
    assert {preset(name).data.image_frame for name in ("skull2d", "skull2d_cpu", "hand2d")} == {"header"}


@pytest.mark.slow
def test_scn_augment_spine_blobs_sit_on_zero_origin_landmarks(tmp_path):
    write_ct(tmp_path / "data")
    config, path = spine_config(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scn_tf.cli.augment",
            "--config",
            str(path),
            "--data_dir",
            str(tmp_path / "data"),
            "--ids",
            "ct",
            "--samples",
            "4",
            "--seed",
            "1",
            "--output_dir",
            str(out),
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr
    spacing = np.array(config.data.spacing)
    checked = 0
    for k in range(4):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"ct_{k}.nii.gz")))
        row = (out / f"ct_{k}.csv").read_text().strip().split(",")[1:]
        coords = np.array([float(v) for v in row]).reshape(-1, 3) / spacing
        inside = np.all((coords >= 3) & (coords <= np.array(config.data.image_size) - 4), axis=1)
        for landmark in np.flatnonzero(inside):
            peak = local_peak(array, coords[landmark])
            assert np.linalg.norm(peak - coords[landmark]) < 0.5, (k, landmark, peak, coords[landmark])
            checked += 1
        assert array.min() == pytest.approx(-1.0)  # outside the scan: -3024 HU, -1 after x/2048 and the clamp
    assert checked >= 6


def test_wrong_frame_is_an_error_before_training(tmp_path):
    write_ct(tmp_path / "data")
    config, _ = spine_config(tmp_path, image_frame="header")
    with pytest.raises(
        DataError,
        match=r"4 of 4 annotated landmarks \(100.0%\) lie outside their image's "
        r"extent in the 'header' image frame.*ct \(4\).*'zero_origin'",
    ):
        LandmarkSource(config.data, tmp_path / "data", ["ct"], verbose=False)


def test_a_few_landmarks_outside_are_reported_not_refused(tmp_path, caplog):
    write_ct(tmp_path / "data")
    rows = {f"ct{k}": INDICES * np.array(SPACING) for k in range(40)}
    rows["ct0"] = rows["ct0"].copy()
    rows["ct0"][0] = [-50.0, 0.0, 0.0]  # 1 of 160 landmarks outside
    for image_id in rows:
        (tmp_path / "data" / "images" / f"{image_id}.nii.gz").symlink_to(tmp_path / "data" / "images" / "ct.nii.gz")
    (tmp_path / "data" / "landmarks.csv").write_text(
        "".join(f"{i}," + ",".join(str(v) for v in p.ravel()) + "\n" for i, p in rows.items())
    )
    config, _ = spine_config(tmp_path)
    with caplog.at_level("WARNING"):
        LandmarkSource(config.data, tmp_path / "data", list(rows), verbose=False)
    assert "1 of 160 annotated landmarks (0.6%) lie outside" in caplog.text and "ct0 (1)" in caplog.text
