"""The PIL charts: what they draw lands where it should, in the right colours."""
from __future__ import annotations

import numpy as np
import pytest

from explain import charts
from explain.render import colorize


def count(picture: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(picture == np.asarray(colour, np.uint8), axis=-1).sum())


def test_wrap_fits_the_width_and_keeps_every_word():
    text = "The detector was trained along real to self-blend to donor blend to deepfake\nnew line"
    lines = charts.wrap(text, 120)
    assert all(charts.font(charts.TEXT_SIZE).getlength(s) <= 120 for s in lines if " " in s)
    assert " ".join(lines).split() == text.split()
    assert lines[-1] == "new line"


def test_map_panel_paints_cells_and_a_colour_bar_from_vmin_to_vmax():
    grid = np.array([[0.0, 1.0], [0.5, 1.0]], np.float32)
    picture = charts.map_panel(grid, "title", "units", vmin=0.0, vmax=1.0, side=100)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    low, high = (tuple(int(v) for v in colorize(np.array([v], np.float32))[0]) for v in (0.0, 1.0))
    # Two cells at vmax, each 50x50 px, plus the bar's top rows; one cell at vmin plus the bar's bottom.
    assert count(picture, high) >= 2 * 50 * 50
    assert count(picture, low) >= 50 * 50
    assert count(picture, high) > count(picture, low)
    # The map lies left of the bar: the top-right cell's colour also appears at the bar's top.
    rows_high = np.where(np.all(picture == high, axis=-1).any(axis=1))[0]
    cols_high = np.where(np.all(picture == high, axis=-1).any(axis=0))[0]
    assert cols_high.max() > 100 + charts.MARGIN  # the colour bar
    assert rows_high.min() < picture.shape[0] / 2


def test_map_panel_outlines_the_marked_cell_and_writes_cell_values():
    grid = np.zeros((4, 4), np.float32)
    plain = charts.map_panel(grid, "", "units", vmin=0, vmax=1, side=80)
    marked = charts.map_panel(grid, "", "units", vmin=0, vmax=1, side=80, marker=(1, 2))
    diff = np.any(plain != marked, axis=-1)
    ys, xs = np.nonzero(diff)
    # The outline sits around cell (1, 2): rows 20..39, columns 40..59 of the map.
    assert 18 <= ys.min() - charts.MARGIN and ys.max() - charts.MARGIN <= 41
    assert 38 <= xs.min() - charts.MARGIN and xs.max() - charts.MARGIN <= 61
    written = charts.map_panel(grid, "", "units", vmin=0, vmax=1, side=80, cell_text="{:.1f}")
    assert np.any(written != plain)


def test_large_maps_are_resized_smoothly_not_cell_by_cell():
    big = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (200, 1))
    picture = charts.map_panel(big, "", "units", side=100)
    row = picture[charts.MARGIN + 50, charts.MARGIN:charts.MARGIN + 100].astype(int)
    assert len({tuple(p) for p in row}) > 50  # a gradient, not a few blocks


def test_hex_shades_are_the_same_colours_as_css_strings():
    for rgb, css in zip(charts.shades((0.0, 0.5, 1.0), "cividis"), charts.hex_shades((0.0, 0.5, 1.0), "cividis")):
        assert css == "#" + bytes(rgb).hex() and len(css) == 7


def test_path_plot_puts_the_star_where_the_point_is():
    anchors = np.array([[0, 0], [1, 0], [2, 0], [3, 0]], np.float64)
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120)]
    pictures = [charts.path_plot(anchors, list("abcd"), ["circle", "square", "diamond", "triangle"], colours,
                                 point, "this", side=200) for point in ((0.0, 0.0), (3.0, 0.0))]
    white = [np.all(p == charts.PAPER, axis=-1) for p in pictures]
    # Inside the plot area (grey background) the only white is the star.
    inside = [w[charts.MARGIN + 1:charts.MARGIN + 199, charts.MARGIN + 1:charts.MARGIN + 199] for w in white]
    left, right = (np.nonzero(m)[1].mean() for m in inside)
    assert left < 100 < right
    for c in colours:
        assert count(pictures[0], c) > 0


def test_unknown_marker_is_an_error():
    with pytest.raises(ValueError, match="unknown marker"):
        charts.marker_polygon("hexagon", (0, 0), 3)


def test_side_by_side_centres_shorter_pictures():
    tall = np.zeros((10, 4, 3), np.uint8)
    short = np.full((4, 3, 3), 7, np.uint8)
    row = charts.side_by_side([tall, short], gap=2)
    assert row.shape == (10, 9, 3)
    assert (row[3:7, 6:9] == 7).all() and (row[:3, 6:9] == 255).all()


def test_side_by_side_can_stack_vertically():
    wide = np.zeros((3, 10, 3), np.uint8)
    narrow = np.full((4, 6, 3), 9, np.uint8)
    column = charts.side_by_side([wide, narrow], gap=1, vertical=True)
    assert column.shape == (8, 10, 3)
    assert (column[4:8, 2:8] == 9).all() and (column[4:8, :2] == 255).all()


def test_outline_mask_marks_the_border_only():
    picture = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1
    out = charts.outline_mask(picture, mask, colour=(255, 255, 255))
    white = np.all(out == 255, axis=-1)
    assert white.any()
    ys, xs = np.nonzero(white)
    assert ys.min() >= 9 and ys.max() <= 31 and xs.min() >= 9 and xs.max() <= 31
    assert not white[15:25, 15:25].any()  # the inside stays as it was
    assert not white[10, 10:30].all()  # dashed, not solid


def test_captioned_row_lays_pictures_side_by_side_with_an_optional_colour_bar():
    red, blue = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    plain = charts.captioned_row([(red, "a"), (blue, "b")], side=50)
    with_bar = charts.captioned_row([(red, "a"), (blue, "b")], side=50, colour_bar="value", footer="note")
    assert with_bar.shape[1] > plain.shape[1] and with_bar.shape[0] > plain.shape[0]
    red_cols = np.nonzero(np.all(plain == (200, 0, 0), axis=-1).any(axis=0))[0]
    blue_cols = np.nonzero(np.all(plain == (0, 0, 200), axis=-1).any(axis=0))[0]
    assert len(red_cols) == len(blue_cols) == 50 and red_cols.max() < blue_cols.min()
    assert count(with_bar, charts.shades([1.0])[0]) > 0  # the bar's top colour


def test_colour_legend_runs_from_low_on_the_left_to_high_on_the_right():
    legend = charts.colour_legend("title", cmap="cividis", width=300)
    low, high = charts.shades([0.0, 1.0], "cividis")
    row = legend[np.nonzero(np.all(legend == low, axis=-1).any(axis=1))[0][0]]
    xs_low = np.nonzero(np.all(row == low, axis=-1))[0]
    xs_high = np.nonzero(np.all(row == high, axis=-1))[0]
    assert xs_low.max() < 150 < xs_high.min()


def test_lab_figure_wraps_after_a_row_of_pictures_and_outlines_the_truth_on_maps():
    from explain.summary import LAB_COLUMNS, lab_figure
    from training.lab import LabMap

    yy, xx = np.mgrid[:64, :64]
    truth = ((yy - 32) ** 2 + (xx - 32) ** 2 < 15 ** 2).astype(np.float32)
    crop = np.zeros((64, 64, 3), np.uint8)
    blank = LabMap("d", "map", np.zeros((64, 64), np.float32), {"pixel_auc": 0.5})
    one_row = lab_figure(crop, truth, [blank] * (LAB_COLUMNS - 2))  # crop, truth and maps: one full row
    two_rows = lab_figure(crop, truth, [blank] * (LAB_COLUMNS - 1))  # one picture more
    assert 1.7 < two_rows.shape[0] / one_row.shape[0] < 2.1
    assert one_row.shape[1] == two_rows.shape[1]
    # The blank map is one flat viridis colour; inside its square only the truth's outline is white.
    flat = np.all(one_row == charts.shades([0.0])[0], axis=-1)
    xs = np.nonzero(flat.sum(axis=0) > 50)[0]  # the map's columns, not the colour bar's last rows
    ys = np.nonzero(flat[:, xs].any(axis=1))[0]
    square = one_row[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert square.shape[0] > 100 and square.shape[1] > 100
    assert 0 < count(square, charts.PAPER) < 0.1 * square.shape[0] * square.shape[1]
