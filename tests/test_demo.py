"""experiments/demo.py end to end in a tiny setting: table, plots and the component analysis."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Every test here starts a process that imports TensorFlow.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_table_and_plots(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "demo.py"),
            "--output_dir",
            str(tmp_path / "out"),
            "--iterations",
            "4",
            "--num_train",
            "3",
            "--num_test",
            "3",
            "--networks",
            "scn,la",
            "--workers",
            "1",
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    table = (out / "table.md").read_text()
    for row in ("| SCN |", "| LA-Net |", "| SCN local appearance only |", "| SCN spatial configuration only |"):
        assert row in table
    assert "ID rate" in table and "#O >= 10 mm" in table
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"SCN", "LA-Net", "SCN local appearance only", "SCN spatial configuration only"}
    for name in ("cumulative_ipe.png", "heatmap_components.png"):
        assert (out / name).stat().st_size > 5000
    assert len(list((out / "data2d_seed0" / "images").glob("*.mha"))) == 6
