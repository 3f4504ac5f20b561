"""scn-predict and scn-evaluate end to end, including their errors on bad input."""

import json
import shutil
import subprocess
import sys

import pytest
import SimpleITK as sitk

from conftest import write_untrained_model
from scn_tf.files import write_json_atomic

# Every test here starts a process that imports TensorFlow.
pytestmark = pytest.mark.slow


def command(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"scn_tf.cli.{module}", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    write_untrained_model(root)
    return root


def test_predict_then_evaluate(model_dir):
    images = model_dir / "data" / "images"
    out = model_dir / "pred"
    result = command(
        "predict",
        "--model_dir",
        model_dir / "run",
        "--output",
        out / "predictions.csv",
        "--overlay_dir",
        out / "overlays",
        images / "a.mha",
        images / "b.mha",
    )
    assert result.returncode == 0, result.stderr
    rows = (out / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["a", "b"] and all(len(r.split(",")) == 7 for r in rows)
    details = json.loads((out / "predictions.json").read_text())
    assert len(details["images"]["a"]["confidence"]) == 3 and details["ndim"] == 2
    assert details["images"]["a"]["sigma_mm"][1] == pytest.approx(2.5 * 60 * 0.8 / 32)  # mm data: kept
    assert details["images"]["a"]["sigma"] == details["images"]["a"]["sigma_mm"] and details["units"] == "mm"
    assert (out / "overlays" / "a.png").stat().st_size > 1000

    ids = model_dir / "ids.txt"
    ids.write_text("a\nb\n")
    report = model_dir / "report"
    result = command(
        "evaluate",
        "--predictions",
        out / "predictions.csv",
        "--ground_truth",
        model_dir / "data" / "landmarks.csv",
        "--output_dir",
        report,
        "--ids",
        ids,
        "--radii",
        "2,2.5",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    for key in (
        "num_images",
        "num_landmarks",
        "pe_median",
        "pe_mean",
        "pe_std",
        "outliers",
        "id_rate",
        "ipe",
        "per_landmark",
    ):
        assert key in metrics
    assert set(metrics["outliers"]) == {"2", "2.5"} and metrics["num_images"] == 2
    assert metrics["num_annotated"] == 5  # b's second landmark is missing
    for name in ("per_landmark.csv", "summary.txt", "cumulative_ipe.png"):
        assert (report / name).exists()

    # ids differ without --ids: clear error, non-zero exit, nothing written
    bad = model_dir / "report_bad"
    result = command(
        "evaluate",
        "--predictions",
        out / "predictions.csv",
        "--ground_truth",
        model_dir / "data" / "landmarks.csv",
        "--output_dir",
        bad,
    )
    assert result.returncode != 0 and "only in" in result.stderr and "landmarks.csv: c (pass --ids" in result.stderr
    assert not bad.exists()


def test_bad_inputs(model_dir, tmp_path):
    images = model_dir / "data" / "images"
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((model_dir / "run" / "config.json").read_text())
    result = command("predict", "--model_dir", empty, "--output", tmp_path / "p.csv", images / "a.mha")
    assert result.returncode != 0 and "no last.weights.h5" in result.stderr
    assert not (tmp_path / "p.csv").exists()
    result = command(
        "predict", "--model_dir", model_dir / "run", "--output", tmp_path / "p.csv", images / "missing.mha"
    )
    assert result.returncode != 0 and "missing.mha" in result.stderr
    truth = tmp_path / "truth.csv"
    truth.write_text("a,1,2,3,4,5,6\nb,1,2,3\n")
    predictions = tmp_path / "pred.csv"
    predictions.write_text("a,1,2,3,4,5,6\nb,1,2,3,4,5,6\n")
    result = command(
        "evaluate", "--predictions", predictions, "--ground_truth", truth, "--output_dir", tmp_path / "r", "--ndim", "2"
    )
    assert result.returncode != 0 and "row 2" in result.stderr and "4 columns, expected 7" in result.stderr
    assert not (tmp_path / "r").exists()


def test_predict_confidence_scale_mirror_and_heatmaps(model_dir, tmp_path):
    """Without confidence.json the scale is stated as unavailable; with one whose training peaks are far above
    this untrained model's, every image is flagged; --mirror auto reports its choice; --save_heatmaps writes
    one multi-component image per input on the input's grid."""
    image = model_dir / "data" / "images" / "a.mha"
    result = command("predict", "--model_dir", model_dir / "run", "--output", tmp_path / "plain.csv", image)
    assert result.returncode == 0, result.stderr
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert "unavailable" in plain["confidence_meaning"] and plain["images"]["a"]["confidence_fraction"] is None

    run = tmp_path / "run"
    shutil.copytree(model_dir / "run", run)
    write_json_atomic(
        run / "confidence.json",
        {"checkpoint": "last", "image_ids": ["t1", "t2"], "peaks": [[1e3, 1e3, None], [2e3, 2e3, None]]},
    )
    out = tmp_path / "out" / "p.csv"
    result = command(
        "predict",
        "--model_dir",
        run,
        "--output",
        out,
        "--mirror",
        "auto",
        "--save_heatmaps",
        tmp_path / "heatmaps",
        image,
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads(out.with_suffix(".json").read_text())["images"]["a"]
    assert entry["confidence_fraction"][:2] == [0.0, 0.0] and entry["confidence_fraction"][2] is None
    assert entry["low_confidence"] is True and "a: confidence far below" in result.stderr
    assert set(entry["mirror_scores"]) == {"original", "mirrored"} and isinstance(entry["mirrored"], bool)
    assert "a: kept the" in result.stderr
    heatmaps = sitk.ReadImage(str(tmp_path / "heatmaps" / "a.mha"))
    source = sitk.ReadImage(str(image))
    assert heatmaps.GetSize() == source.GetSize() and heatmaps.GetNumberOfComponentsPerPixel() == 3
    assert heatmaps.GetSpacing() == pytest.approx(source.GetSpacing())
