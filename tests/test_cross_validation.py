"""The cross-validation runner: two tiny folds on the real hand radiographs, aggregated into one table."""

import subprocess
import sys
from pathlib import Path

import pytest

# Every test here starts a process that imports TensorFlow.
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
