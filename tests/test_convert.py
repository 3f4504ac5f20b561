"""scn-convert lays out an ISBI 2015 style download: doctors' pixel annotations become mm CSVs."""

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.data.io import read_landmarks_csv

# Every test here starts a process that imports TensorFlow.
pytestmark = pytest.mark.slow


def test_isbi2015_text_annotations(tmp_path):
    raw = tmp_path / "RawImage" / "TrainingData"
    raw.mkdir(parents=True)
    for image_id in ("001", "002"):
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkUInt8), str(raw / f"{image_id}.bmp"))
    for doctor, offset in (("senior", 0), ("junior", 10)):
        folder = tmp_path / "AnnotationsByMD" / f"400_{doctor}"
        folder.mkdir(parents=True)
        for image_id in ("001", "002"):
            lines = [f"{100 + k + offset},{200 + 2 * k}" for k in range(19)] + ["1", "3"]
            (folder / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scn_tf.cli.convert",
            "--dataset",
            "isbi2015",
            "--images",
            str(tmp_path / "RawImage"),
            "--annotations",
            str(tmp_path / "AnnotationsByMD"),
            "--output_dir",
            str(out),
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr
    senior = read_landmarks_csv(out / "annotations" / "senior_mm.csv", 19, 2)
    np.testing.assert_allclose(senior["001"][3], [10.3, 20.6])
    mean = read_landmarks_csv(out / "annotations" / "mean_mm.csv", 19, 2)
    np.testing.assert_allclose(mean["002"][0], [10.5, 20.0])
    assert (out / "images" / "001.bmp").exists()
    assert '".bmp"' in (out / "data.json").read_text()
    (tmp_path / "AnnotationsByMD" / "400_senior" / "002.txt").write_text("1,2\n")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "scn_tf.cli.convert",
            "--dataset",
            "isbi2015",
            "--images",
            str(tmp_path / "RawImage"),
            "--annotations",
            str(tmp_path / "AnnotationsByMD"),
            "--output_dir",
            str(tmp_path / "data2"),
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert bad.returncode != 0 and "002.txt: 1 lines, expected at least 19" in bad.stderr


def convert_isbi(tmp_path, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scn_tf.cli.convert",
            "--dataset",
            "isbi2015",
            "--images",
            str(tmp_path / "RawImage"),
            "--annotations",
            str(tmp_path / "AnnotationsByMD"),
            "--output_dir",
            str(tmp_path / "data"),
            *extra,
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )


def test_isbi2015_challenge_ground_truth_only_where_it_equals_senior(tmp_path):
    """The challenge ground truth differs from senior at landmark 16 on 301-400: without the original's
    all_challenge.csv no challenge row is written there; with it, the file is copied."""
    (tmp_path / "RawImage").mkdir()
    for image_id in ("300", "301"):
        sitk.WriteImage(sitk.Image([20, 30], sitk.sitkUInt8), str(tmp_path / "RawImage" / f"{image_id}.bmp"))
        for doctor in ("senior", "junior"):
            folder = tmp_path / "AnnotationsByMD" / f"400_{doctor}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{image_id}.txt").write_text("\n".join(f"{k},{k}" for k in range(19)) + "\n")
    result = convert_isbi(tmp_path)
    assert result.returncode == 0, result.stderr
    annotations = tmp_path / "data" / "annotations"
    assert sorted(read_landmarks_csv(annotations / "challenge_mm.csv", 19, 2)) == ["300"]
    assert sorted(read_landmarks_csv(annotations / "senior_mm.csv", 19, 2)) == ["300", "301"]
    challenge = tmp_path / "all_challenge.csv"
    challenge.write_text("".join(f"{i}," + ",".join(["1.5"] * 38) + "\n" for i in ("300", "301")))
    again = convert_isbi(tmp_path, "--challenge_csv", str(challenge))
    assert again.returncode == 1 and "senior_mm.csv: exists; pass --overwrite" in again.stderr
    assert sorted(read_landmarks_csv(annotations / "challenge_mm.csv", 19, 2)) == ["300"]  # nothing replaced
    result = convert_isbi(tmp_path, "--challenge_csv", str(challenge), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (annotations / "challenge_mm.csv").read_text() == challenge.read_text()
    challenge.write_text("301,1,2\n")
    bad = convert_isbi(tmp_path, "--challenge_csv", str(challenge), "--overwrite")
    assert bad.returncode != 0 and "all_challenge.csv, row 1" in bad.stderr
