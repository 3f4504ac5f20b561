"""The cross-validation runner: two tiny folds on the real hand radiographs, aggregated into one table."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Every test here starts processes that import TensorFlow.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HANDS = ROOT.parent / "shared" / "data" / "hand_xray"


@pytest.mark.skipif(not HANDS.exists(), reason="../shared/data/hand_xray is absent")
def test_two_folds_aggregate(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "experiments" / "cross_validation.py"),
        "--experiment",
        "hand2d",
        "--data_dir",
        str(HANDS),
        "--output_dir",
        str(tmp_path),
        "--folds",
        "0,1",
        "--",
        "--split",
        "cv_reduced",
        "--iterations",
        "2",
        "--image_size",
        "64,64",
        "--filters",
        "4",
        "--workers",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "hand2d"
    for fold in ("0", "1"):
        assert (root / "scn" / f"fold_{fold}" / "metrics.json").exists()
    table = (root / "table.md").read_text()
    assert "| SCN |" in table and "#O >= 10 mm" in table
    rows = (root / "table.csv").read_text().splitlines()
    assert rows[0].startswith("method,pe_median") and rows[1].startswith("SCN,")
    assert "pooled" in table
    assert (root / "cumulative_ipe_scn.png").stat().st_size > 1000
    again = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT)
    assert again.returncode == 0 and again.stderr.count("finished before, skipped") == 2


def test_own_data_folds_from_a_configuration_resume_and_aggregate(tmp_path, monkeypatch, caplog):
    """--config: seeded folds written as id lists, every fold trained by scn-train and pooled into the paper's
    table and plots; a second call reads the same folds and skips the finished ones; another id list, fold
    count or --experiment beside --config is an error."""
    from conftest import load_experiment, write_pixel_dataset
    from scn_tf.configs import preset
    from scn_tf.data.io import DataError

    cross_validation = load_experiment("cross_validation")
    ids = ["a", "b", "c", "d", "e", "f"]
    data = write_pixel_dataset(tmp_path / "data", ids=ids)
    (tmp_path / "data" / "all.txt").write_text("\n".join(ids) + "\n")
    config = preset("cpu2d").updated(
        {
            "data": {
                "num_landmarks": 3,
                "landmark_names": data.landmark_names,
                "landmark_units": "pixel",
                "image_size": [32, 32],
            },
            "network": {"filters": 4, "levels": 2, "spatial_kernel_size": 3, "spatial_downsampling": 4},
            "training": {"iterations": 2, "seed": 3},
        }
    )
    (tmp_path / "plan.json").write_text(config.to_json())
    monkeypatch.chdir(tmp_path)
    command = ["cross_validation", "--config", "plan.json", "--data_dir", "data", "--ids", "all.txt"]
    command += ["--num_folds", "2", "--output_dir", "cv", "--", "--workers", "1"]
    assert cross_validation.run(command) == 0
    root = tmp_path / "cv" / "plan"
    folds = json.loads((root / "folds" / "folds.json").read_text())
    assert folds == {"seed": 3, "num_folds": 2, "ids": ids}
    tests = [(root / "folds" / f"fold_{k}" / "test.txt").read_text().split() for k in (0, 1)]
    assert sorted(tests[0] + tests[1]) == ids and len(tests[0]) == 3
    for fold in ("0", "1"):
        assert (root / "scn" / f"fold_{fold}" / "metrics.json").exists()
    table = (root / "table.md").read_text()
    assert "| SCN |" in table and "pooled (6 test images)" in table and "px" in table
    assert (root / "table.csv").read_text().startswith("method,pe_median")
    assert (root / "cumulative_ipe.png").stat().st_size > 1000
    caplog.clear()
    assert cross_validation.run(command) == 0
    assert caplog.text.count("finished before, skipped") == 2
    assert [(root / "folds" / f"fold_{k}" / "test.txt").read_text().split() for k in (0, 1)] == tests
    (tmp_path / "data" / "five.txt").write_text("\n".join(ids[:5]) + "\n")
    caplog.clear()
    assert cross_validation.run([c if c != "all.txt" else "five.txt" for c in command]) == 1
    assert "another id list (0 id(s) added: -; 1 removed: f)" in caplog.text
    assert cross_validation.run([c if c != "2" else "3" for c in command]) == 1
    assert "--num_folds 2 --seed 3, not 3 and 3" in caplog.text
    assert cross_validation.run(["cross_validation", "--experiment", "hand2d", *command[1:]]) == 1
    (tmp_path / "data" / "stray.txt").write_text("\n".join([*ids, "zz"]) + "\n")
    caplog.clear()
    stray = [c if c != "all.txt" else "stray.txt" for c in command]
    assert cross_validation.run([c if c != "cv" else "cv2" for c in stray]) == 1
    assert "no annotation row for --ids id(s) zz" in caplog.text and not (tmp_path / "cv2").exists()
    partial = tmp_path / "partial.json"  # completed by the preset that scn-train is given
    partial.write_text(json.dumps({"data": {"num_landmarks": 3, "landmark_units": "pixel"}}))
    cross_validation.check_ids(str(partial), "data", ids, ["--workers", "1", "--preset", "cpu2d"])
    (tmp_path / "data" / "images" / "a.png").rename(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"images: no image <id>\.png for --ids id\(s\) a"):
        cross_validation.check_ids(str(partial), "data", ids, ["--preset=cpu2d"])
    (tmp_path / "a.png").rename(tmp_path / "data" / "images" / "a.png")
    shutil.rmtree(root / "scn" / "fold_1")
    caplog.clear()
    assert cross_validation.run([*command, "--iterations", "-1"]) == 1  # fold 1's scn-train fails, fold 0 is done
    assert "scn fold 1 failed" in caplog.text and "1 of 2 runs failed, no table written" in caplog.text
