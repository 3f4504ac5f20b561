"""Metrics against hand-computed cases and an independent loop-based computation; the reports and plots."""

import json
import math

import numpy as np
import pytest

from scn_tf.evaluation import (
    Normalization,
    coordinate_units,
    error_units,
    evaluate,
    identification_rate,
    mean_offset,
    point_errors,
    radius_key,
)


def test_hand_computed_case():
    truth = np.array([[[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan]], [[0.0, 0.0], [0.0, 30.0], [30.0, 0.0]]])
    predicted = np.array([[[3.0, 4.0], [10.0, 1.0], [5.0, 5.0]], [[0.0, 2.0], [0.0, 30.0], [30.0, 25.0]]])
    metrics = evaluate(["a", "b"], predicted, truth, radii=["2", "2.5", "10"])
    errors = [5.0, 1.0, 2.0, 0.0, 25.0]
    assert metrics["num_annotated"] == 5
    assert metrics["pe_mean"] == pytest.approx(np.mean(errors))
    assert metrics["pe_median"] == pytest.approx(2.0)
    assert metrics["pe_std"] == pytest.approx(np.std(errors))  # ddof = 0
    assert metrics["outliers"]["2"] == {"count": 3, "percent": pytest.approx(60.0)}  # PE >= r: 2.0 counts
    assert metrics["outliers"]["2.5"]["count"] == 2 and metrics["outliers"]["10"]["count"] == 1
    assert metrics["ipe"] == {"a": pytest.approx(6.0 / 3), "b": pytest.approx(27.0 / 3)}
    assert metrics["per_landmark"][2] == {"landmark": 2, "count": 1, "mean": 25.0, "median": 25.0, "std": 0.0}
    # ID: image a, landmark 0 -> closest annotation is 0 (5 mm): correct; landmark 1 correct.
    # image b: landmark 2 predicted at (30, 25): closest annotation is landmark 1 (0, 30)? no: 30.4 vs 25 -> 2,
    # but 25 mm > 20 mm: wrong. 4 of 5 correct.
    assert metrics["id_rate"] == pytest.approx(80.0)


def test_swapped_landmarks_fail_identification():
    truth = np.array([[[0.0, 0.0, 0.0], [0.0, 0.0, 25.0]]])
    swapped = truth[:, ::-1].copy() + 0.5
    assert np.all(point_errors(swapped, truth) > 20)
    assert identification_rate(swapped, truth) == 0.0  # each is close to *some* annotation, the wrong one
    assert identification_rate(truth + 0.5, truth) == 100.0


def independent(predicted, truth, radii, wrist=None):
    """A plain-loop reimplementation of the definitions, for comparison."""
    pes, ipes, per = [], [], [[] for _ in range(truth.shape[1])]
    correct = annotated_count = 0
    for p_img, t_img in zip(predicted, truth, strict=True):
        scale = 1.0
        if wrist:
            scale = wrist[2] / math.dist(t_img[wrist[0]], t_img[wrist[1]])
        total = 0.0
        for k, (p, t) in enumerate(zip(p_img, t_img, strict=True)):
            if np.any(np.isnan(t)):
                continue
            e = scale * math.dist(p, t)
            pes.append(e)
            per[k].append(e)
            total += e
            distances = {j: math.dist(p, t_img[j]) for j in range(len(t_img)) if not np.any(np.isnan(t_img[j]))}
            best = min(distances, key=distances.get)
            correct += best == k and distances[best] <= 20
            annotated_count += 1
        ipes.append(total / len(t_img))
    pes = np.array(pes)
    return dict(
        pe_mean=pes.mean(),
        pe_median=np.median(pes),
        pe_std=np.sqrt(np.mean((pes - pes.mean()) ** 2)),
        outliers={r: sum(e >= float(r) for e in pes) for r in radii},
        ipe=ipes,
        id_rate=100 * correct / annotated_count,
        per=[(np.mean(v), np.median(v), np.std(v)) for v in per],
    )


@pytest.mark.parametrize("wrist", [None, (1, 5, 50.0)])
def test_agrees_with_independent_computation(wrist):
    rng = np.random.default_rng(7)
    truth = rng.uniform(0, 200, size=(12, 8, 2))
    truth[rng.random((12, 8)) < 0.15] = np.nan
    truth[:, [1, 5]] = rng.uniform(0, 200, size=(12, 2, 2))  # wrist landmarks always annotated
    predicted = truth + rng.normal(0, 6, size=truth.shape)
    predicted[np.isnan(predicted)] = 50.0
    radii = ["2", "4", "10"]
    normalization = Normalization(*wrist) if wrist else None
    metrics = evaluate([str(i) for i in range(12)], predicted, truth, radii, normalization)
    expected = independent(predicted, truth, radii, wrist)
    for key in ("pe_mean", "pe_median", "pe_std", "id_rate"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)
    for r in radii:
        assert metrics["outliers"][r]["count"] == expected["outliers"][r]
    np.testing.assert_allclose(list(metrics["ipe"].values()), expected["ipe"], atol=1e-6)
    for entry, (mean, median, std) in zip(metrics["per_landmark"], expected["per"], strict=True):
        assert (entry["mean"], entry["median"], entry["std"]) == pytest.approx((mean, median, std), abs=1e-6)


def test_wrist_normalisation_is_nan_aware_and_id_rate_unnormalised():
    """Image 1 lacks wrist landmark 5: it drops out of the normalised PE instead of making it NaN. The ID
    rate uses unnormalised distances: 8 mm off with a 10 mm wrist (x5) is 40 'mm' normalised, yet identified."""
    truth = np.zeros((2, 6, 2))
    truth[:, :, 0] = np.arange(6) * 30.0
    truth[:, 5] = truth[:, 1] + [0.0, 10.0]  # wrist width 10 mm: scale 5
    truth[1, 5] = np.nan
    predicted = np.nan_to_num(truth, nan=0.0)
    predicted[:, 0] += [0.0, 8.0]
    metrics = evaluate(["a", "b"], predicted, truth, ["10"], Normalization(1, 5, 50.0))
    assert metrics["num_annotated"] == 11 and metrics["num_measured"] == 6
    assert metrics["pe_mean"] == pytest.approx(40.0 / 6)
    assert metrics["outliers"]["10"]["count"] == 1
    assert metrics["per_landmark"][0]["mean"] == pytest.approx(40.0)
    assert metrics["ipe"]["a"] == pytest.approx(40.0 / 6) and np.isnan(metrics["ipe"]["b"])
    assert metrics["id_rate"] == 100.0


def test_absent_predictions_are_counted():
    """NaN predictions are absences: left out of PE, counted against the annotations, not identified."""
    truth = np.array([[[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]]])
    predicted = np.array([[[3.0, 4.0], [np.nan, np.nan], [1.0, 1.0], [np.nan, np.nan]]])
    metrics = evaluate(["x"], predicted, truth)
    assert metrics["num_measured"] == 1 and metrics["pe_mean"] == pytest.approx(5.0)
    presence = metrics["presence"]
    assert (presence["true_present"], presence["false_absent"], presence["false_present"]) == (1, 1, 1)
    assert presence["true_absent"] == 1
    assert presence["present_precision"] == pytest.approx(0.5) and presence["present_recall"] == pytest.approx(0.5)
    assert presence["absent_precision"] == pytest.approx(0.5) and presence["absent_recall"] == pytest.approx(0.5)
    assert metrics["id_rate"] == pytest.approx(50.0)


def test_normalization_parse():
    assert Normalization.parse("wrist:1,5,50") == Normalization(1, 5, 50.0)
    assert Normalization.parse(None) is None
    with pytest.raises(ValueError, match="wrist:1,5,50"):
        Normalization.parse("wrist:1,5")


def test_reports_with_learned_sigmas(tmp_path):
    from scn_tf.reports import rank_correlation, write_reports

    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, np.nan, 4], [1, 3, 0, 2]) == pytest.approx(0.5)
    truth = np.zeros((2, 3, 2))
    predicted = truth + np.array([1.0, 2.0, 4.0])[None, :, None]
    metrics = evaluate(["a", "b"], predicted, truth, radii=["2"])
    write_reports(tmp_path, metrics, "SCN", ["p", "q", "r"], sigmas=[1.5, 2.5, 3.5])
    rows = (tmp_path / "per_landmark.csv").read_text().splitlines()
    assert rows[0].endswith(",sigma_mm") and rows[3].startswith("2,r,2,5.6569") and rows[3].endswith(",3.5000")
    summary = (tmp_path / "summary.txt").read_text()
    assert (
        "Learned sigma per landmark: 1.50 to 3.50 mm; Spearman rank correlation with the landmark's mean PE: 1.00"
        in (summary)
    )
    assert "| ID rate (<= 20 mm) |" in summary and "at most 20 mm away" in summary
    assert (tmp_path / "sigmas.png").stat().st_size > 1000


def test_reports_of_pixel_data_say_px_everywhere(tmp_path):
    """Landmarks in pixels: errors, sigmas and the ID radius in px; normalised errors in mm, the rest in px."""
    from scn_tf.reports import write_reports

    truth = np.zeros((2, 3, 2))
    truth[:, 1, 0] = 40.0
    predicted = truth + np.array([1.0, 2.0, 4.0])[None, :, None]
    metrics = evaluate(["a", "b"], predicted, truth, radii=[2, 4])
    write_reports(tmp_path, metrics, "SCN", None, [1.5, 2.5, 3.5], error_units("pixel"), coordinate_units("pixel"))
    rows = (tmp_path / "per_landmark.csv").read_text().splitlines()
    assert rows[0] == "landmark,name,count,mean_px,median_px,std_px,sigma_px"
    summary = (tmp_path / "summary.txt").read_text()
    assert "mm" not in summary
    assert "| PE median (px) |" in summary and "| #O >= 4 px |" in summary and "| ID rate (<= 20 px) |" in summary
    assert "Learned sigma per landmark: 1.50 to 3.50 px;" in summary
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert (written["units"], written["id_radius"], written["id_radius_units"]) == ("px", 20.0, "px")

    normalised = tmp_path / "normalised"
    metrics = evaluate(["a", "b"], predicted, truth, [2], Normalization(0, 1, 50.0))
    write_reports(normalised, metrics, "SCN", None, [1.5, 2.5, 3.5], error_units("pixel", "w:0,1,50"), "px")
    summary = (normalised / "summary.txt").read_text()
    assert "| PE median (mm) |" in summary and "| ID rate (<= 20 px) |" in summary and "3.50 px;" in summary
    assert (
        (normalised / "per_landmark.csv")
        .read_text()
        .startswith("landmark,name,count,mean_mm,median_mm,std_mm,sigma_px")
    )


def test_outlier_radii_as_numbers_or_strings_give_the_same_keys():
    truth = np.zeros((1, 2, 2))
    predicted = truth + np.array([[[1.0, 0.0], [3.0, 0.0]]])
    as_strings = evaluate(["a"], predicted, truth, ["2", "2.5", "10.0"])
    as_numbers = evaluate(["a"], predicted, truth, [2, 2.5, 10.0])
    assert list(as_strings["outliers"]) == list(as_numbers["outliers"]) == ["2", "2.5", "10"]
    assert as_strings["outliers"] == as_numbers["outliers"]
    assert as_numbers["outliers"]["2"]["count"] == 1 and as_numbers["outliers"]["10"]["count"] == 0
    assert [radius_key(r) for r in ("4", 4, 4.0, "4.50")] == ["4", "4", "4", "4.5"]


def test_cumulative_ipe_plot_is_titled_with_the_image_count(tmp_path):
    from scn_tf.reports import plot_cumulative_ipe

    figure = plot_cumulative_ipe(tmp_path / "one.png", {"SCN": [1.0, 2.0, float("nan")]}, "px")
    (axis,) = figure.axes
    assert axis.get_title() == "cumulative image point error over 2 images"
    assert axis.get_xlabel() == "image point error, IPE (px)" and axis.get_ylabel().endswith("(%)")
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["SCN"]
    figure = plot_cumulative_ipe(tmp_path / "two.png", {"SCN": [1.0, 2.0, 3.0], "U-Net": [2.0]})
    (axis,) = figure.axes
    assert axis.get_title() == "cumulative image point error over 1 to 3 images"
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["SCN (3 images)", "U-Net (1 image)"]
    assert (tmp_path / "two.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sigma_plot_numbers_landmarks_from_0_with_names_and_units(tmp_path):
    from scn_tf.reports import plot_sigmas

    figure = plot_sigmas(tmp_path / "s.png", [1.0, 2.0, 3.0], [0.5, 1.0, 1.5], ["p", "q", "r"], "px", "px")
    bars, errors = figure.axes
    assert [label.get_text() for label in bars.get_xticklabels()] == ["0 p", "1 q", "2 r"]
    assert bars.get_ylabel() == "learned sigma (px)" and errors.get_ylabel() == "mean point error (px)"
    figure = plot_sigmas(tmp_path / "t.png", [1.0, 2.0], [0.5, 1.0])
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["0", "1"]
    assert figure.axes[0].get_ylabel() == "learned sigma (mm)"


def test_mean_offset_skips_missing_pairs():
    first = np.array([[[1.0, 2.0], [5.0, 5.0]], [[3.0, 0.0], [np.nan, 1.0]], [[2.0, 4.0], [7.0, 9.0]]])
    second = np.array([[[0.0, 0.0], [5.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [3.0, np.nan]]])
    offset = mean_offset(first, second)
    np.testing.assert_allclose(offset[0], [(1 + 3 + 2) / 3, (2 + 0 + 3) / 3])
    np.testing.assert_allclose(offset[1], [0.0, 0.0])
    assert np.all(np.isnan(mean_offset(first[1:2, 1:], second[1:2, 1:])))
