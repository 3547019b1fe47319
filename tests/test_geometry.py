"""ROI strips in a raw page and the concat_y / single-ROI extraction (geometry.py).

The documented rule (reference §1.7): ``available = page_height - (n-1)*fly_to``; every
ROI but the last gets ``round(h_i * available / sum(h))`` rows, the last the remainder;
``y_{i+1} = y_i + height_i + fly_to``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from imexport.geometry import extract, page_layout
from imexport.synthetic import FLY_TO_VALUE


def rule_heights(page_height, roi_heights, fly):
    """The documented rule, in exact rational arithmetic (ties do not occur in the cases used)."""
    available = page_height - (len(roi_heights) - 1) * fly
    total = sum(roi_heights)
    heights = []
    for h in roi_heights[:-1]:
        exact = Fraction(h * available, total)
        assert exact.denominator != 2, "a tie: pick another case"
        heights.append(int(exact + Fraction(1, 2)))  # nearest integer
    heights.append(available - sum(heights))
    return heights


def test_proportional_heights_worked_example():
    # page 100 rows, 3 ROIs asking 30, 30, 31 rows, 3 fly-to lines between them:
    # available = 100 - 2*3 = 94; 30*94/91 = 30.99 -> 31, 31; last = 94 - 62 = 32
    layout = page_layout(100, 20, [30, 30, 31], 3)
    assert [s.height for s in layout.strips] == [31, 31, 32]
    assert [s.y0 for s in layout.strips] == [0, 34, 68]  # 0, 0+31+3, 34+31+3
    assert [s.index for s in layout.strips] == [0, 1, 2]
    assert all(s.width == 20 for s in layout.strips)
    assert layout.strips[-1].y0 + layout.strips[-1].height == 100
    assert layout.stitched_shape == (32, 60)
    assert layout.output_shape(None) == (32, 60)
    assert layout.output_shape(1) == (31, 20)


def test_metadata_heights_that_match_the_page_are_kept():
    layout = page_layout(40 + 32 + 3, 48, [40, 32], 3)
    assert [(s.y0, s.height) for s in layout.strips] == [(0, 40), (43, 32)]


def test_single_roi_takes_the_whole_page():
    layout = page_layout(57, 16, [50], 7)  # fly-to lines are irrelevant with one ROI
    assert [(s.y0, s.height, s.width) for s in layout.strips] == [(0, 57, 16)]


@pytest.mark.parametrize("seed", range(25))
def test_random_layouts_follow_the_rule(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    asked = [int(h) for h in rng.integers(5, 80, n)]
    fly = int(rng.integers(0, 8))
    # a page close to, but not always equal to, what the metadata asks
    page_height = sum(asked) + (n - 1) * fly + int(rng.integers(-3, 4))
    try:
        expected = rule_heights(page_height, asked, fly)
    except AssertionError:
        pytest.skip("rounding tie in this random case")
    layout = page_layout(page_height, 32, asked, fly)
    heights = [s.height for s in layout.strips]
    assert heights == expected
    y = 0
    for s in layout.strips:
        assert s.y0 == y
        assert s.rows == slice(y, y + s.height)
        y += s.height + fly
    assert sum(heights) + (n - 1) * fly == page_height


@pytest.mark.parametrize(
    "page_height, asked, fly",
    [
        (10, [5, 5, 5], 5),  # fly-to lines alone fill the page
        (4, [3, 3], 4),  # negative room
        (20, [1, 1, 100], 0),  # the first ROIs round to 0 rows
        (30, [], 2),  # no ROI at all
        (30, [0, 0], 2),  # nothing asked
    ],
)
def test_rois_that_cannot_fit_raise(page_height, asked, fly):
    with pytest.raises(ValueError):
        page_layout(page_height, 16, asked, fly)


# --------------------------------------------------------------------------- extract


def make_pages(layout, lead_shape, seed=0):
    """Pages with random ROI content and FLY_TO_VALUE in the fly-to rows; also the ROIs."""
    rng = np.random.default_rng(seed)
    pages = np.full(lead_shape + (layout.page_height, layout.page_width), FLY_TO_VALUE, np.int16)
    rois = []
    for s in layout.strips:
        roi = rng.integers(1, 30000, lead_shape + (s.height, s.width)).astype(np.int16)
        pages[..., s.y0 : s.y0 + s.height, :] = roi
        rois.append(roi)
    return pages, rois


@pytest.mark.parametrize("lead_shape", [(), (5,), (4, 2)])
def test_concat_y_canvas(lead_shape):
    layout = page_layout(9 + 14 + 6 + 2 * 3, 11, [9, 14, 6], 3)
    pages, rois = make_pages(layout, lead_shape)
    out = extract(pages, layout, None)
    assert out.dtype == pages.dtype
    assert out.shape == lead_shape + (14, 3 * 11)  # height = tallest ROI, width = sum of widths
    x = 0
    for roi in rois:  # ROI order = metadata order, left to right
        h = roi.shape[-2]
        np.testing.assert_array_equal(out[..., :h, x : x + 11], roi)
        assert np.all(out[..., h:, x : x + 11] == 0)  # zero padding below shorter ROIs
        x += 11
    assert not np.any(out == FLY_TO_VALUE)  # fly-to rows never reach the output


def test_concat_y_is_not_a_copy_of_the_input():
    layout = page_layout(10, 4, [5, 3], 2)
    pages, _ = make_pages(layout, (2,))
    out = extract(pages, layout, None)
    out[...] = 7
    assert np.all(pages[..., 5:7, :] == FLY_TO_VALUE)


@pytest.mark.parametrize("roi", [0, 1, 2])
def test_single_roi_crop(roi):
    layout = page_layout(9 + 14 + 6 + 2 * 3, 11, [9, 14, 6], 3)
    pages, rois = make_pages(layout, (3, 2), seed=roi)
    out = extract(pages, layout, roi)
    assert out.shape == (3, 2) + layout.output_shape(roi)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, rois[roi])
    assert not np.any(out == FLY_TO_VALUE)


def test_single_roi_page_extracts_unchanged():
    layout = page_layout(12, 5, [12], 0)
    pages = np.arange(2 * 12 * 5, dtype=np.int16).reshape(2, 12, 5)
    np.testing.assert_array_equal(extract(pages, layout, None), pages)
    np.testing.assert_array_equal(extract(pages, layout, 0), pages)


def test_to_list_records_every_strip():
    layout = page_layout(100, 20, [30, 30, 31], 3)
    assert layout.to_list() == [{"index": i, "y0": s.y0, "height": s.height, "width": 20} for i, s in enumerate(layout.strips)]
