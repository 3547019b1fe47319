"""A progress bar for in-process exports (``imwrite(..., show_progress=True)``), on stderr.

On a terminal: one line redrawn in place as plane jobs finish. Elsewhere (a log file, a
notebook's captured stderr, a pipe): one line per finished plane job, since a redrawn
line would pile up there as one long line of carriage returns.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30  # characters of the bar itself


class ProgressBar:
    """``bar(fraction, plane)`` after each plane job (``run_plan``'s progress callback):
    ``fraction`` of the ``total`` plane jobs done, the last one's 1-based ``plane``."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.redraw = self.stream.isatty()
        self.line_open = False  # a redrawn line without its newline yet

    def __call__(self, fraction: float, plane: int) -> None:
        done = round(fraction * self.total)
        if self.redraw:
            filled = round(WIDTH * fraction)
            self.stream.write(f"\rimexport: [{'#' * filled}{'-' * (WIDTH - filled)}] {done}/{self.total} plane jobs")
            self.line_open = True
            if done == self.total:
                self.end()
        else:
            self.stream.write(f"imexport: {done}/{self.total} plane jobs done (plane {plane})\n")
        self.stream.flush()

    def end(self) -> None:
        """End the redrawn line (an export that stops early: its error starts on a line of its own)."""
        if self.line_open:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False
