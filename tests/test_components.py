"""Sign-aware decoding of the SCN's factors and the radius restriction around an annotation."""

import numpy as np

from scn_tf.components import orient_components, plot_components, restrict_to_radius


def blob(shape, centre, sigma):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


def peak(heatmap):
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return int(x), int(y)


def test_only_the_landmark_with_both_factors_negative_is_flipped():
    shape = (12, 16)
    local = np.stack([blob(shape, (5, 3), 1.0), -blob(shape, (8, 6), 1.0), -blob(shape, (2, 9), 1.0)], -1)[None]
    spatial = np.stack([blob(shape, (5, 3), 4.0), -blob(shape, (8, 6), 4.0), blob(shape, (2, 9), 4.0)], -1)[None]
    oriented_local, oriented_spatial, flipped = orient_components(local, spatial)
    assert flipped.tolist() == [[False, True, False]]
    np.testing.assert_array_equal(oriented_local * oriented_spatial, local * spatial)
    assert peak(local[0, ..., 1]) != (8, 6)
    assert peak(oriented_local[0, ..., 1]) == (8, 6) and peak(oriented_spatial[0, ..., 1]) == (8, 6)
    np.testing.assert_array_equal(oriented_local[0, ..., 2], local[0, ..., 2])


def test_restriction_keeps_exactly_the_pixels_within_the_radius():
    heatmaps = np.ones((1, 9, 11, 2), dtype=np.float32)
    centres = np.array([[[5.0, 4.0], [np.nan, np.nan]]])
    restricted = restrict_to_radius(heatmaps, centres, radius=2.0)
    y, x = np.mgrid[:9, :11]
    inside = (x - 5.0) ** 2 + (y - 4.0) ** 2 <= 4.0
    np.testing.assert_array_equal(restricted[0, ..., 0] == 1.0, inside)
    assert (restricted[0, ..., 0][~inside] < 1.0).all() and (restricted[0, ..., 1] == 1.0).all()
    assert inside.sum() == 13


def test_anisotropic_radius_is_per_axis():
    heatmaps = np.zeros((1, 9, 11, 1), dtype=np.float32)
    restricted = restrict_to_radius(heatmaps, np.array([[[5.0, 4.0]]]), radius=(3.0, 1.0))
    rows, columns = np.nonzero(restricted[0, ..., 0] == 0.0)
    assert (columns.min(), columns.max(), rows.min(), rows.max()) == (2, 8, 3, 5)


def test_component_plot_explains_flips_circles_and_maxima(tmp_path):
    shape = (12, 16)
    local = np.stack([blob(shape, (5, 3), 1.0), blob(shape, (9, 8), 1.0)], -1)
    figure = plot_components(
        tmp_path / "components.png",
        blob(shape, (5, 3), 3.0),
        local,
        local,
        np.array([[5.0, 3.0], [9.0, 8.0]]),
        flipped=np.array([True, False]),
    )
    assert (tmp_path / "components.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = [axis for axis in figure.axes if axis.get_title()]  # the colour bars have none
    assert [axis.get_title() for axis in panels] == [
        "input image",
        "local appearance\n(max over 2 landmarks, 1 flipped)",
        "spatial configuration\n(max over 2 landmarks, 1 flipped)",
        "SCN = local x spatial\n(max over 2 landmarks)",
    ]
    assert [text.get_text() for text in panels[0].get_legend().get_texts()] == ["annotated landmark"]
    explanation = figure.get_suptitle()
    assert explanation.startswith("flipped: for 1 of 2 landmarks both factors were negative at the product's peak")
    assert "shown negated" in explanation

    unflipped = plot_components(tmp_path / "plain.png", local[..., 0], local, local, np.array([[5.0, 3.0]] * 2))
    assert unflipped.get_suptitle() == ""
    assert "flipped" not in " ".join(axis.get_title() for axis in unflipped.axes)
