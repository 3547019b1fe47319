"""Physical scales (fs, dx, dy, dz) as the writers put them into file headers."""

from __future__ import annotations

import math
from typing import Any


def known_positive(value: Any) -> float | None:
    """A physical scale (fs, dx, dy, dz) if known: a finite positive number, else None."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None
