"""Input resolution: a file, a folder or a glob → the files of one acquisition."""

from __future__ import annotations

import glob
from pathlib import Path

from .scanimage import SourceError, SourceInfo, inspect_acquisition, natural_key

TIFF_SUFFIXES = (".tif", ".tiff")


def resolve_input(spec: str | Path) -> list[Path]:
    """Files named by the config's ``input``, naturally sorted (``_2`` before ``_10``)."""
    text = str(spec)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in TIFF_SUFFIXES]
        if not files:
            raise SourceError(f"input: the pattern {text!r} matches no .tif/.tiff file")
    elif path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")]
        if not files:
            raise SourceError(f"input: the folder {path} holds no .tif/.tiff file")
    elif path.is_file():
        files = [path]
    else:
        raise SourceError(f"input: {path} does not exist")
    return sorted((p.resolve() for p in files), key=natural_key)


def inspect_input(spec: str | Path) -> SourceInfo:
    return inspect_acquisition(resolve_input(spec))


__all__ = ["SourceError", "SourceInfo", "inspect_input", "resolve_input"]
