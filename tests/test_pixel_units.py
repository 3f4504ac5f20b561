"""Own data with landmarks in pixels: every report, key and label of a run and of scn-predict says px."""

import json

import numpy as np
import pytest

from conftest import write_pixel_dataset
from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig

pytestmark = pytest.mark.slow  # trains (two steps) and predicts


def test_pixel_unit_run_and_predictions_say_px(tmp_path):
    from scn_tf.cli import evaluate, predict
    from scn_tf.experiment import Experiment

    data = write_pixel_dataset(tmp_path / "data", image_spacing=[0.5, 0.5])  # 0.5 mm pixels: px != mm
    config = ExperimentConfig(
        data,
        AugmentationConfig(),
        NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4),
        TrainingConfig(iterations=2, optimizer="adam", learning_rate=1e-4, checkpoint_every=2),
    )
    run = tmp_path / "run"
    Experiment(config, tmp_path / "data", ["a", "c"], ["a", "b"], run, workers=1).run()

    summary = (run / "summary.txt").read_text()
    assert "mm" not in summary, summary
    assert "| PE median (px) |" in summary and "| #O >= 2 px |" in summary and "| ID rate (<= 20 px) |" in summary
    assert "Learned sigma per landmark:" in summary and "px; Spearman" in summary
    rows = (run / "per_landmark.csv").read_text().splitlines()
    assert rows[0] == "landmark,name,count,mean_px,median_px,std_px,sigma_px"
    assert [row.split(",")[:2] for row in rows[1:]] == [["0", "tip"], ["1", "notch"], ["2", "corner"]]
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["units"], metrics["id_radius"], metrics["id_radius_units"]) == ("px", 20.0, "px")
    assert json.loads((run / "config.json").read_text())["data"]["outlier_radii"] == [2, 4, 10]
    assert (run / "sigmas.png").exists() and (run / "overlays" / "a.png").exists()

    # the network's pixel is 60 x 0.5 / 32 mm, the source's 0.5 mm: the same sigma in px and in mm
    learned = np.asarray(json.loads((run / "sigmas.json").read_text())["sigmas"])
    sigma_px = learned * 60 / 32
    report_sigmas = [float(row.split(",")[-1]) for row in rows[1:]]
    np.testing.assert_allclose(report_sigmas, sigma_px, atol=1e-4)

    output = tmp_path / "pred" / "new.csv"
    image = tmp_path / "data" / "images" / "c.png"
    assert predict.run(["scn-predict", "--model_dir", str(run), "--output", str(output), str(image)]) == 0
    details = json.loads(output.with_suffix(".json").read_text())
    assert (details["units"], details["landmark_units"]) == ("px", "pixel")
    assert "sigma_mm" not in details["images"]["c"]
    np.testing.assert_allclose(details["images"]["c"]["sigma"], sigma_px, rtol=1e-6)

    ids = tmp_path / "ids.txt"
    ids.write_text("c\n")
    arguments = ["--predictions", output, "--ground_truth", tmp_path / "data" / "landmarks.csv", "--ids", ids]
    assert evaluate.run(["scn-evaluate", *map(str, arguments), "--output_dir", str(tmp_path / "report")]) == 0
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert "mm" not in summary and "| PE median (px) |" in summary and "| ID rate (<= 20 px) |" in summary
    normalised = [*map(str, arguments), "--normalization", "w:0,1,50", "--output_dir", str(tmp_path / "normalised")]
    assert evaluate.run(["scn-evaluate", *normalised]) == 0
    summary = (tmp_path / "normalised" / "summary.txt").read_text()
    assert "| PE median (mm) |" in summary and "| ID rate (<= 20 px) |" in summary  # the radius is never scaled
