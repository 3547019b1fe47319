"""1-based user selections (planes, frames, channels, ROIs) → 0-based index arrays.

Accepted forms, everywhere: ``None`` (everything), an int, a list of ints, or a string
``"a:b"`` / ``"a:b:s"`` (1-based, ``b`` inclusive). Anything out of range, repeated or
malformed is an error naming the config key, the value and the valid range: nothing is
ever dropped silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SelectionError(ValueError):
    """A selection that does not fit the data; the message names the config key."""


def _as_int(key: str, item: Any, size: int) -> int:
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise SelectionError(f"{key}: {item!r} is not an integer (valid: 1..{size})")
    return int(item)


def _parse_range(key: str, text: str, size: int) -> list[int]:
    parts = text.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(parts) not in (2, 3) or len(numbers) != len(parts):
        raise SelectionError(f"{key}: {text!r} is not a range like '1:100' or '1:100:2' (1-based, inclusive)")
    start, stop = numbers[0], numbers[1]
    step = numbers[2] if len(numbers) == 3 else 1
    if step <= 0 or stop < start:
        raise SelectionError(f"{key}: {text!r} must count upwards with a positive step")
    return list(range(start, stop + 1, step))


def select(key: str, value: Any, size: int) -> np.ndarray:
    """0-based indices for a 1-based selection of an axis of ``size`` elements."""
    if value is None:
        return np.arange(size, dtype=np.int64)
    if isinstance(value, str):
        items = _parse_range(key, value, size)
    elif isinstance(value, (list, tuple, range, np.ndarray)):
        items = [_as_int(key, v, size) for v in value]
    else:
        items = [_as_int(key, value, size)]
    if not items:
        raise SelectionError(f"{key}: the selection is empty (valid: 1..{size})")
    bad = [i for i in items if not 1 <= i <= size]
    if bad:
        raise SelectionError(f"{key}: {bad[:5]} out of range; this source has {size} (valid: 1..{size})")
    if len(set(items)) != len(items):
        raise SelectionError(f"{key}: {value!r} lists the same index twice")
    return np.asarray(items, dtype=np.int64) - 1


def limit(key: str, indices: np.ndarray, count: int | None) -> np.ndarray:
    """Keep the first ``count`` selected indices (``num_frames``); more than exist is an error."""
    if count is None:
        return indices
    count = _as_int(key, count, len(indices))
    if not 1 <= count <= len(indices):
        raise SelectionError(f"{key}: {count} is more than the {len(indices)} selected (valid: 1..{len(indices)})")
    return indices[:count]


def reorder(key: str, indices: np.ndarray, order: Any) -> np.ndarray:
    """Permute the selected planes; ``order`` is 0-based positions into the selection (as the reference)."""
    if order is None:
        return indices
    positions = [_as_int(key, o, len(indices)) for o in order]
    if sorted(positions) != list(range(len(indices))):
        raise SelectionError(
            f"{key}: {list(order)!r} must be a permutation of 0..{len(indices) - 1} "
            f"(0-based positions into the {len(indices)} selected planes)"
        )
    return indices[positions]


def to_runs(indices: np.ndarray) -> list[list[int]]:
    """Compact form ``[[start, stop, step], ...]`` (0-based, stop exclusive) for metadata."""
    runs: list[list[int]] = []
    idx = [int(i) for i in indices]
    i = 0
    while i < len(idx):
        if i + 1 < len(idx) and idx[i + 1] > idx[i]:
            step = idx[i + 1] - idx[i]
            j = i + 1
            while j + 1 < len(idx) and idx[j + 1] - idx[j] == step:
                j += 1
            runs.append([idx[i], idx[j] + 1, step])
            i = j + 1
        else:
            runs.append([idx[i], idx[i] + 1, 1])
            i += 1
    return runs


def from_runs(runs: list[list[int]]) -> np.ndarray:
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, s, dtype=np.int64) for a, b, s in runs])


def uniform_step(indices: np.ndarray) -> int | None:
    """The constant stride of a selection (1 for a single element), or None."""
    if len(indices) < 2:
        return 1
    steps = np.diff(indices)
    return int(steps[0]) if steps[0] > 0 and np.all(steps == steps[0]) else None
