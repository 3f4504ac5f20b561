"""Landmark overlays: points numbered from 0 as in the CSVs and flags, a key of names, 3D projections."""

import numpy as np

from scn_tf.visualization import save_overlay


def point_labels(axis) -> list[str]:
    return [text.get_text() for text in axis.texts]


def test_overlay_numbers_landmarks_from_0_with_a_key_of_names(tmp_path):
    image = np.zeros((40, 50), np.float32)
    truth = np.array([[10.0, 12.0], [30.0, 20.0], [np.nan, np.nan]])
    figure = save_overlay(
        tmp_path / "o.png",
        image,
        (1.0, 1.0),
        landmarks=truth,
        predicted=truth + 1,
        names=["sella", "nasion", "orbitale"],
        title="a: annotation (o) and prediction (x)",
    )
    picture, key = figure.axes
    assert point_labels(picture) == ["0", "1"]  # the missing landmark 2 is not drawn
    assert point_labels(key) == ["landmarks\n 0  sella\n 1  nasion\n 2  orbitale"]
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_without_names_has_no_key_and_3d_numbers_every_projection(tmp_path):
    figure = save_overlay(tmp_path / "p.png", np.zeros((30, 40), np.float32), (1.0, 1.0), predicted=np.ones((2, 2)))
    assert len(figure.axes) == 1 and point_labels(figure.axes[0]) == ["0", "1"]
    volume = np.zeros((8, 10, 12), np.float32)
    figure = save_overlay(tmp_path / "v.png", volume, (1.0, 1.0, 2.0), landmarks=np.array([[2.0, 3.0, 4.0]]))
    assert [point_labels(axis) for axis in figure.axes] == [["0"]] * 3
