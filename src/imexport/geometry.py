"""Where each multi-ROI strip sits in a raw ScanImage page, and how strips are joined.

All ROIs of one frame share a page: stacked top to bottom in ROI-list order, each the
full page width, separated by fly-to (dead) lines. Heights come from each ROI's pixel
resolution, scaled to the rows actually available; rounding error goes to the last ROI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RoiStrip:
    index: int  # 0-based position in the ROI list
    y0: int  # first page row
    height: int
    width: int

    @property
    def rows(self) -> slice:
        return slice(self.y0, self.y0 + self.height)


@dataclass(frozen=True)
class PageLayout:
    page_height: int
    page_width: int
    fly_to_lines: int
    strips: tuple[RoiStrip, ...]

    @property
    def stitched_shape(self) -> tuple[int, int]:
        """``concat_y`` canvas: ROIs side by side along X, as tall as the tallest."""
        return max(s.height for s in self.strips), sum(s.width for s in self.strips)

    def output_shape(self, roi: int | None) -> tuple[int, int]:
        if roi is None:
            return self.stitched_shape
        strip = self.strips[roi]
        return strip.height, strip.width

    def to_list(self) -> list[dict]:
        return [asdict(s) for s in self.strips]


def page_layout(page_height: int, page_width: int, roi_heights: list[int], fly_to_lines: int) -> PageLayout:
    """Row ranges of each ROI strip.

    ``roi_heights`` are the heights the ROI metadata asks for; the strips get
    ``round(h_i * available / sum(h))`` rows each, the last ROI the remainder, where
    ``available = page_height - (n - 1) * fly_to_lines``.
    """
    n = len(roi_heights)
    if n == 0:
        raise ValueError("the ROI group has no ROIs")
    available = page_height - (n - 1) * fly_to_lines
    total = sum(roi_heights)
    if available <= 0 or total <= 0:
        raise ValueError(f"page height {page_height} cannot hold {n} ROIs separated by {fly_to_lines} fly-to lines")
    heights = [int(round(h * available / total)) for h in roi_heights[:-1]]
    heights.append(available - sum(heights))
    if min(heights) <= 0:
        raise ValueError(f"ROI heights {roi_heights} do not fit a page of {page_height} rows")
    strips, y = [], 0
    for i, h in enumerate(heights):
        strips.append(RoiStrip(i, y, h, page_width))
        y += h + fly_to_lines
    return PageLayout(page_height, page_width, fly_to_lines, tuple(strips))


def extract(pages: np.ndarray, layout: PageLayout, roi: int | None) -> np.ndarray:
    """Pages ``(..., page_height, page_width)`` → one ROI, or all ROIs side by side.

    The stitched canvas is zero below ROIs shorter than the tallest; fly-to lines
    never reach the output.
    """
    if roi is not None:
        return np.ascontiguousarray(pages[..., layout.strips[roi].rows, :])
    height, width = layout.stitched_shape
    canvas = np.zeros(pages.shape[:-2] + (height, width), dtype=pages.dtype)
    x = 0
    for strip in layout.strips:
        canvas[..., : strip.height, x : x + strip.width] = pages[..., strip.rows, :]
        x += strip.width
    return canvas
