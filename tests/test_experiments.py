"""The experiment scripts end to end with small overrides, --describe, scn-train and resuming."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from scn_tf.data.io import write_landmarks_csv

# Every test here starts a process that imports TensorFlow.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SMALL = ["--iterations", "4", "--filters", "4", "--workers", "1"]


def script(name, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{name}.py"), *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "name,expected", [("skull2d", 6_348_070), ("spine3d", 5_326_196), ("hand2d", 6_926_410), ("hand3d", 5_417_464)]
)
def test_describe_counts_original_weights(name, expected, tmp_path):
    result = script(name, "--describe", "--network", "scn")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)  # JSON only
    assert described["trainable_weights"] == expected
    if name not in ("skull2d", "spine3d"):
        return
    path = tmp_path / "config.json"
    path.write_text(result.stdout)  # fed back as it is: --config ignores trainable_weights
    again = subprocess.run(
        [sys.executable, "-m", "scn_tf.cli.train", "--config", str(path), "--describe"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == described


def test_spine_unet_is_the_released_one_with_zero_padding():
    result = script("spine3d", "--describe", "--network", "unet")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["network"]["padding"] == "same" and described["network"]["unet_variant"] == "released"
    assert described["trainable_weights"] == 2_702_234


def write_volumes(root: Path, ids, num_landmarks: int, csv_name: str, size=(24, 24, 90), spacing=(4.0, 4.0, 5.0)):
    """NIfTI volumes (anisotropic spacing, non-zero origin, longer than the network window) with a blob at each
    landmark, and a CSV in the zero-origin frame of the 3D presets with NaN for landmarks outside the scan."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for image_id in ids:
        origin = np.array([-40.0, 12.0, 300.0])
        chain = np.linspace(0.1, 0.9, num_landmarks)
        points = origin + np.stack([np.full(num_landmarks, 0.5), np.full(num_landmarks, 0.5), chain], 1) * (
            np.array(size) * np.array(spacing)
        )
        points[:, :2] += rng.normal(0, 3, (num_landmarks, 2))
        axes = zip(size[::-1], spacing[::-1], origin[::-1], strict=True)
        z, y, x = np.meshgrid(*[np.arange(n) * s + o for n, s, o in axes], indexing="ij", sparse=True)
        volume = np.full(size[::-1], -1000.0, np.float32)
        for px, py, pz in points:
            volume += 1500 * np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / 50.0)
        image = sitk.GetImageFromArray(volume)
        image.SetSpacing(spacing)
        image.SetOrigin(origin.tolist())
        sitk.WriteImage(image, str(root / "images" / f"{image_id}.nii.gz"))
        points[: num_landmarks // 4] = np.nan  # not in this scan
        rows.append(",".join([image_id] + ["NaN" if np.isnan(v) else f"{v:.3f}" for v in (points - origin).ravel()]))
    (root / csv_name).write_text("\n".join(rows) + "\n")


def check_run(run: Path, data_dir: Path, image: Path):
    for name in (
        "config.json",
        "metrics.json",
        "predictions.csv",
        "last.weights.h5",
        "sigmas.json",
        "summary.txt",
        "cumulative_ipe.png",
        "per_landmark.csv",
        "confidence.json",
    ):
        assert (run / name).exists(), name
    assert list((run / "logs").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["pe_mean"])
    out = run / "scn_predict.csv"
    result = subprocess.run(
        [sys.executable, "-m", "scn_tf.cli.predict", "--model_dir", str(run), "--output", str(out), str(image)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith(image.name.split(".")[0] + ",")
    reference = json.loads((run / "confidence.json").read_text())
    assert len(reference["peaks"][0]) == json.loads((run / "config.json").read_text())["data"]["num_landmarks"]
    details = json.loads(out.with_suffix(".json").read_text())
    assert "training images" in details["confidence_meaning"]
    assert any(v is not None for v in next(iter(details["images"].values()))["confidence_fraction"])


@pytest.mark.parametrize(
    "name,num_landmarks,csv,size",
    [("spine3d", 26, "points_world_coordinates.csv", "32,32,64"), ("hand3d", 28, "landmarks.csv", "32,32,16")],
)
def test_3d_experiments_on_generated_volumes(name, num_landmarks, csv, size, tmp_path):
    data = tmp_path / "data"
    write_volumes(data, ["v1", "v2", "v3"], num_landmarks, csv)
    (tmp_path / "train.txt").write_text("v1\nv2\n")
    (tmp_path / "test.txt").write_text("v3\n")
    run = tmp_path / "run"
    result = script(
        name,
        "--data_dir",
        data,
        "--train_ids",
        tmp_path / "train.txt",
        "--test_ids",
        tmp_path / "test.txt",
        "--output_dir",
        run,
        "--image_size",
        size,
        *SMALL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_run(run, data, data / "images" / "v3.nii.gz")


@pytest.mark.skipif(not (SHARED / "isbi2015_ceph").exists(), reason="../shared/data/isbi2015_ceph is absent")
def test_skull2d_on_real_cephalograms_and_resume(tmp_path):
    (tmp_path / "train.txt").write_text("001\n002\n")
    (tmp_path / "test.txt").write_text("151\n")
    run = tmp_path / "run"
    common = [
        "--data_dir",
        SHARED / "isbi2015_ceph",
        "--train_ids",
        tmp_path / "train.txt",
        "--test_ids",
        tmp_path / "test.txt",
        "--output_dir",
        run,
        "--image_size",
        "64,64",
        "--filters",
        "4",
        "--workers",
        "1",
    ]
    result = script("skull2d", *common, "--iterations", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    check_run(run, SHARED / "isbi2015_ceph", SHARED / "isbi2015_ceph" / "images" / "152.jpg")
    again = script("skull2d", *common, "--iterations", "6")
    assert again.returncode != 0 and "--resume" in again.stderr
    resumed = script("skull2d", *common, "--iterations", "6", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(step 3)" in resumed.stderr
    assert json.loads((run / "sigmas.json").read_text())["step"] == 6
    drift = script(
        "skull2d_drift",
        "--run_dir",
        run,
        "--data_dir",
        SHARED / "isbi2015_ceph",
        "--train_ids",
        tmp_path / "train.txt",
        "--test_ids",
        tmp_path / "test.txt",
    )
    assert drift.returncode == 0, drift.stderr[-3000:]
    as_run = next(line for line in drift.stdout.splitlines() if line.startswith("as run: MRE"))
    mre = json.loads((run / "metrics.json").read_text())["pe_mean"]
    assert float(as_run.split("MRE ")[1].split(" mm")[0]) == pytest.approx(mre, abs=2e-3)
    components = script(
        "skull2d_components",
        "--run_dir",
        run,
        "--data_dir",
        SHARED / "isbi2015_ceph",
        "--test_ids",
        tmp_path / "test.txt",
        "--output_dir",
        tmp_path / "fig9",
        "--workers",
        "1",
    )
    assert components.returncode == 0, components.stderr[-3000:]
    table = json.loads((tmp_path / "fig9" / "components.json").read_text())
    assert table["SCN"]["pe_mean"] == pytest.approx(mre, abs=2e-3)
    assert set(table) == {"SCN", "SCN local appearance", "SCN spatial configuration", "SCN local appearance around GT"}
    assert table["SCN local appearance around GT"]["pe_median"] < 10.0 + 4.0  # the radius + a 64x64 pixel's diagonal
    for name in ("components.md", "components_ipe.png", "heatmap_components.png"):
        assert (tmp_path / "fig9" / name).stat().st_size > 0


@pytest.mark.skipif(not (SHARED / "hand_xray").exists(), reason="../shared/data/hand_xray is absent")
def test_hand2d_on_real_radiographs(tmp_path):
    run = tmp_path / "run"
    result = script(
        "hand2d",
        "--data_dir",
        SHARED / "hand_xray",
        "--split",
        "cv_reduced",
        "--fold",
        "0",
        "--output_dir",
        run,
        "--image_size",
        "64,64",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["normalization"] == {"first": 1, "second": 5, "distance": 50.0}
    check_run(run, SHARED / "hand_xray", SHARED / "hand_xray" / "images" / "3147.mha")


def test_annotation_drift_script(tmp_path):
    """Reference labels moved by (+2, -1) mm on landmark 10 of the training ids only: the drift is found, and a
    network that learned the moved convention has that offset, which removing the drift takes back."""
    rng = np.random.default_rng(0)
    train, test = [f"{i:03d}" for i in range(1, 9)], [f"{i:03d}" for i in range(151, 157)]
    other = {i: rng.uniform(10, 180, (19, 2)) for i in train + test}
    reference = {i: other[i] + rng.normal(0, 0.3, (19, 2)) for i in train + test}
    for i in train:
        reference[i][9] += [2.0, -1.0]
    predictions = {i: reference[i] + [2.0, -1.0] * (np.arange(19) == 9)[:, None] for i in test}
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for name, values in [("senior", reference), ("junior", other)]:
        write_landmarks_csv(annotations / f"{name}_mm.csv", values)
    write_landmarks_csv(tmp_path / "predictions.csv", predictions)
    (tmp_path / "train.txt").write_text("\n".join(train))
    (tmp_path / "test.txt").write_text("\n".join(test))
    result = script(
        "skull2d_drift",
        "--run_dir",
        tmp_path,
        "--data_dir",
        tmp_path,
        "--train_ids",
        tmp_path / "train.txt",
        "--test_ids",
        tmp_path / "test.txt",
    )
    assert result.returncode == 0, result.stderr
    gonion = next(line for line in result.stdout.splitlines() if line.startswith("| 10 | gonion |"))
    offset, drift = (cell.strip() for cell in gonion.split("|")[3:5])
    assert offset == "(+2.00, -1.00) = 2.24"
    drift_xy = [float(v) for v in drift.split("=")[0].strip(" ()").split(",")]
    np.testing.assert_allclose(drift_xy, [2.0, -1.0], atol=0.35)
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("as run: MRE") and "SDR 4 mm 100.00%" in lines[-2]
    assert lines[-1].startswith("drift of landmarks 10 removed: MRE")
    as_run, removed = (float(line.split("MRE ")[1].split(" mm")[0]) for line in lines[-2:])
    assert removed < as_run


def test_skull2d_refuses_test2_without_the_challenge_ground_truth(tmp_path):
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    rows = {f"{i:03d}": np.full((19, 2), float(i)) for i in range(1, 401)}
    write_landmarks_csv(annotations / "senior_mm.csv", rows)
    write_landmarks_csv(annotations / "challenge_mm.csv", {i: v for i, v in rows.items() if int(i) <= 300})
    for fold in ("test2", "test"):
        result = script("skull2d", "--data_dir", tmp_path, "--fold", fold, "--output_dir", tmp_path / "run")
        assert result.returncode != 0
        assert "no challenge ground truth for 100 test id(s) (301, 302" in result.stderr
        assert "--challenge_csv" in result.stderr and "--annotations senior" in result.stderr
    write_landmarks_csv(annotations / "challenge_mm.csv", rows)  # an older scn-convert's copy of senior
    result = script("skull2d", "--data_dir", tmp_path, "--fold", "test2", "--output_dir", tmp_path / "run")
    assert result.returncode != 0 and "landmark 16 equals senior_mm.csv" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not (SHARED / "isbi2015_ceph").exists(), reason="../shared/data/isbi2015_ceph is absent")
def test_reduced_training_table_over_draws(tmp_path):
    (tmp_path / "test.txt").write_text("151\n152\n")
    common = [
        "--data_dir",
        SHARED / "isbi2015_ceph",
        "--iterations",
        "2",
        "--output_dir",
        tmp_path / "runs",
        "--draws",
        "1,2",
        "--networks",
        "scn",
        "--",
        "--test_ids",
        tmp_path / "test.txt",
        "--image_size",
        "64,64",
        "--filters",
        "4",
        "--workers",
        "1",
    ]
    result = script("reduced_training", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "runs" / "10"
    for draw in ("1", "2"):
        run = root / "scn" / f"draw_{draw}"
        record = json.loads((run / "run.json").read_text())
        assert record["command"][record["command"].index("--subset_draw") + 1] == draw
        assert record["wall_seconds"] > 0
    per_draw = json.loads((root / "metrics.json").read_text())["SCN"]
    assert len(per_draw) == 2
    table = (root / "table.md").read_text()
    mean = np.mean([m["pe_mean"] for m in per_draw])
    assert "| SCN | 2 | " in table and f"{mean:.2f} +- " in table and "#O >= 10 mm" in table
    again = script("reduced_training", *common)
    assert again.returncode == 0 and again.stderr.count("finished before, skipped") == 2
