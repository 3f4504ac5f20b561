"""experiments/demo.py end to end in a tiny setting: table, plots and the component analysis."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_experiment
from scn_tf.models import receptive_fields
from scn_tf.synthetic import synthetic_config

ROOT = Path(__file__).resolve().parents[1]


def test_2d_demo_is_in_the_papers_regime():
    """Every network sees the share of the input width it sees at the paper's 512x512 (local appearance
    102 px, 20%; U-Net 232 px, 45%): the local appearance one blob and not its neighbours, the U-Net less
    than half the image, the spatial configuration all of it; the input is as wide as the synthetic image."""
    demo, synthetic = load_experiment("demo"), synthetic_config(2)
    paper_local, paper_unet = receptive_fields.local_appearance(4) / 512, receptive_fields.unet(5) / 512
    assert (round(100 * paper_local), round(100 * paper_unet)) == (20, 45)
    scn = demo.demo_config(2, "scn", 10, 0)
    width = scn.data.image_size[0]
    assert width == synthetic.size[0] and synthetic.spacing[0] == 1.0
    local = receptive_fields.local_appearance(scn.network.levels)
    assert 2 * synthetic.blob_radius < local < 2 * synthetic.gap * 0.8 and 0.1 <= local / width <= 0.3
    la = demo.demo_config(2, "la", 10, 0).network
    assert 0.1 <= receptive_fields.local_appearance(la.levels) / width <= 0.3
    spatial = receptive_fields.spatial_configuration(
        scn.network.levels, scn.network.spatial_kernel_size, scn.network.spatial_downsampling
    )
    chain = synthetic.gap * 1.25 * 1.1 * (synthetic.num_landmarks - 1)
    assert spatial >= 0.9 * width and width > chain
    unet = receptive_fields.unet(demo.demo_config(2, "unet", 10, 0).network.levels)
    assert 0.35 <= unet / width <= 0.55
    line = demo.geometry_line(2, ["scn", "unet", "la"])
    assert line.startswith("input 128x128 px") and f"SCN local appearance {local} px (19%)" in line
    assert f"U-Net {unet} px ({round(100 * unet / width)}%)" in line and f"LA-Net local appearance {local} px" in line


@pytest.mark.slow
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
        env={k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # redirected output: the project's own lines only, no TensorFlow C++ lines, no terminal control codes
    for word in ("oneDNN", "cuInit", "Sharding callback", ".cc:", "InitializeLog", "To enable the following"):
        assert word not in result.stderr, result.stderr
    assert "\x1b[" not in result.stdout + result.stderr and "\r" not in result.stdout + result.stderr
    assert "CPU kernels: TF_ENABLE_ONEDNN_OPTS=" in result.stderr and "4/4 steps, " in result.stdout
    assert not list((tmp_path / "out").rglob(".lock"))  # the run folders' locks end with the runs
    out = tmp_path / "out"
    table = (out / "table.md").read_text()
    for row in ("| SCN |", "| LA-Net |", "| SCN local appearance only |", "| SCN spatial configuration only |"):
        assert row in table
    assert "ID rate" in table and "#O >= 10 mm" in table and "receptive fields" in table
    assert "receptive fields" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"SCN", "LA-Net", "SCN local appearance only", "SCN spatial configuration only"}
    for name in ("cumulative_ipe.png", "heatmap_components.png"):
        assert (out / name).stat().st_size > 5000
    assert len(list((out / "data2d_seed0" / "images").glob("*.mha"))) == 6
