"""Output names: the reference's tag scheme, made unambiguous, and safe user suffixes.

Tags as in the reference: ``tp`` (5 digits), ``zplane`` / ``ch`` / ``roi`` (2 digits),
1-based. A contiguous selection is ``a-b``, a uniformly strided one ``a-b-s``. Unlike
the reference, a non-uniform selection never looks like a range: up to four elements
are listed with ``+`` (``zplane01+02+07``), longer ones become
``<first>-<last>-n<count>h<hash>`` where the hash fingerprints the exact list (which
is also recorded in the file's metadata).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from .selection import uniform_step

PADDING = {"tp": 5, "zplane": 2, "ch": 2, "roi": 2}
KNOWN_EXTENSIONS = (".tiff", ".tif", ".zarr", ".hdf5", ".h5", ".nwb", ".bin", ".npy")
_ILLEGAL = re.compile(r'[<>:"|?*\s]+')


class UnsafeNameError(ValueError):
    """An unsafe name from the config (``output_suffix``, ``output_name``)."""


def tag(label: str, indices: np.ndarray) -> str:
    """Tag for 0-based ``indices`` written 1-based, e.g. ``tp00001-00300``."""
    pad = PADDING[label]
    numbers = [int(i) + 1 for i in indices]
    fmt = f"{{:0{pad}d}}"
    if len(numbers) == 1:
        return label + fmt.format(numbers[0])
    step = uniform_step(np.asarray(indices))
    first, last = fmt.format(numbers[0]), fmt.format(numbers[-1])
    if step == 1:
        return f"{label}{first}-{last}"
    if step is not None:
        return f"{label}{first}-{last}-{step}"
    if len(numbers) <= 4:
        return label + "+".join(fmt.format(n) for n in numbers)
    digest = hashlib.sha1(",".join(map(str, numbers)).encode()).hexdigest()[:6]
    return f"{label}{first}-{last}-n{len(numbers)}h{digest}"


def roi_folder(roi: int | None) -> str:
    """``roiNN`` folder for one ROI in ``separate`` mode; empty for the stitched view."""
    return "" if roi is None else f"roi{roi + 1:02d}"


def _reject_path_parts(key: str, value: str) -> None:
    if "/" in value or "\\" in value or ".." in value or value.startswith("~"):
        raise UnsafeNameError(f"{key}: {value!r} must be a plain name, without '/', '\\\\', '..' or '~'")


def sanitize_suffix(value: str | None) -> str:
    """``output_suffix`` → ``_word`` form: no path parts, no doubled ``_``, no extension."""
    if not value:
        return ""
    _reject_path_parts("output_suffix", value)
    text = _ILLEGAL.sub("_", value)
    lowered = text.lower()
    for ext in KNOWN_EXTENSIONS:
        if lowered.endswith(ext):
            text = text[: -len(ext)]
            break
    text = re.sub(r"_+", "_", text).strip("_.")
    return f"_{text}" if text else ""


def check_output_name(value: str | None) -> str | None:
    """``output_name`` (the Suite2p binary's file name): a bare name ending in ``.bin``."""
    if value is None:
        return None
    _reject_path_parts("output_name", value)
    if not value.endswith(".bin") or _ILLEGAL.search(value) or value.startswith("."):
        raise UnsafeNameError(f"output_name: {value!r} must be a plain file name ending in '.bin', e.g. 'data_raw.bin'")
    return value


def stem(*, planes: np.ndarray, frames: np.ndarray, channels: np.ndarray | None, suffix: str) -> str:
    """``zplaneNN_tpAAAAA-BBBBB[_chNN][_suffix]``; ``channels`` is None for single-colour sources."""
    parts = [tag("zplane", planes), tag("tp", frames)]
    if channels is not None:
        parts.append(tag("ch", channels))
    return "_".join(parts) + suffix
