"""Zarr stores: imexport's own output and OME-Zarr in general (level 0 only).

A group's array is ``input_options.dataset_name`` if given, else the first dataset of
``multiscales[0]`` (under ``ome`` for OME-NGFF 0.5, at the top for 0.4), else ``"0"``,
else the group's only array. Dimension names come from the multiscale ``axes``, else
the array's ``dimension_names``, else the rank; ``input_options.dim_order`` overrides.

Physical scales: the ``imexport`` group attribute (our own metadata), else the level-0
scale transform of axes in seconds (t) or micrometres (x, y, z).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .arrays import array_source, physical, resolve_axes
from .info import SourceError, SourceInfo

_AXIS_LETTERS = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}
_STORE_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def zarr_root(path: Path) -> Path | None:
    """The store ``path`` is, or lies inside (its ``zarr.json``, an array in it), or None."""
    path = Path(path).expanduser()
    for candidate in (path, *path.parents):
        if candidate.suffix.lower() == ".zarr" and candidate.is_dir():
            return candidate.resolve()
    if path.is_dir() and any((path / marker).is_file() for marker in _STORE_MARKERS):
        return path.resolve()
    return None


def _letters(names: list[Any]) -> str | None:
    # a name we do not know becomes "Q" (unnamed), as tifffile does
    return "".join(_AXIS_LETTERS.get(str(n).lower(), "Q") for n in names) if names else None


def _ome_scales(multiscale: dict, dataset: str) -> dict[str, float | None]:
    axes = multiscale.get("axes") or []
    entry = next((d for d in multiscale.get("datasets", []) if d.get("path") == dataset), {})
    scale = next((t.get("scale") for t in entry.get("coordinateTransformations", []) if t.get("type") == "scale"), None)
    if not scale or len(scale) != len(axes):
        return physical({})
    found: dict[str, float] = {}
    for axis, value in zip(axes, scale):
        if not isinstance(axis, dict) or not value:
            continue
        name, unit = str(axis.get("name", "")).lower(), str(axis.get("unit", "")).lower()
        if name == "t" and unit == "second":
            found["fs"] = 1.0 / float(value)
        elif name in ("x", "y", "z") and unit == "micrometer":
            found[f"d{name}"] = float(value)
    return physical(found)


def inspect_zarr(path: Path, *, dataset_name: str | None = None, dim_order: str | None = None) -> SourceInfo:
    # zarr is imported where it is used: every plan calls zarr_root, and importing zarr
    # costs ≈ 0.3 s of Snakemake's start-up on inputs that are not Zarr at all
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds for a store it cannot read
        raise SourceError(f"{path}: not a readable zarr store ({type(exc).__name__}: {exc})") from None
    attrs = dict(node.attrs)
    multiscale: dict = {}
    if isinstance(node, zarr.Group):
        ome = attrs.get("ome", attrs)
        multiscale = (ome.get("multiscales") or [{}])[0] if isinstance(ome, dict) else {}
        arrays = sorted(name for name, _ in node.arrays())
        if dataset_name:
            dataset = dataset_name
        elif multiscale.get("datasets"):
            dataset = multiscale["datasets"][0]["path"]
        elif "0" in arrays or len(arrays) == 1:
            dataset = "0" if "0" in arrays else arrays[0]
        else:
            raise SourceError(f"{path}: a zarr group with arrays {arrays}: set input_options.dataset_name")
        try:
            array = node[dataset]
        except KeyError:
            raise SourceError(f"input_options.dataset_name: {path} has no array {dataset!r} (arrays: {arrays})") from None
        if not isinstance(array, zarr.Array):
            raise SourceError(f"input_options.dataset_name: {path}/{dataset} is a group, not an array")
    else:
        array, dataset = node, ""
    names = [a["name"] if isinstance(a, dict) else a for a in multiscale.get("axes", [])]
    if not names or len(names) != array.ndim:
        names = list(getattr(array.metadata, "dimension_names", None) or [])
    native = _letters(names) if names and None not in names else None
    axes = resolve_axes(native, array.shape, dim_order, f"{path}/{dataset}" if dataset else str(path))
    own = attrs.get("imexport")
    scales = physical(own) if isinstance(own, dict) else _ome_scales(multiscale, dataset)
    return array_source("zarr", [str(path)], [axes], [array.shape], array.dtype, scales=scales, options={"dataset": dataset})


def inspect(paths: list[Path], options: dict) -> SourceInfo:
    return inspect_zarr(paths[0], dataset_name=options.get("dataset_name"), dim_order=options.get("dim_order"))


def open_array(info: SourceInfo, i: int):
    import zarr

    return zarr.open_array(info.files[i], path=info.options["dataset"], mode="r"), None
