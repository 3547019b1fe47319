"""Zarr v3 / OME-NGFF 0.5 output: one store per export, filled by plane jobs in parallel.

The workflow has three steps:

1. ``create_store`` makes the (temporary) store with an empty array ``"0"``;
2. one ``zarr_plane.ZarrPlaneSink`` per plane, possibly in concurrent processes, writes
   its z-slab;
3. ``finalize_store`` collects the plane metadata, puts the acquisition times the plane
   jobs found into the group attributes (``imexport.timing``; the per-frame lists of a long
   export into ``timing.json`` in the store), optionally adds pyramid levels and renames
   the store into place.

Concurrent plane jobs are safe because a shard holds exactly one (c, z) plane and
``shard_t`` frames: two planes never share a shard file, and a sink only ever writes
whole shards, so no job merges its data into a file another job could be writing.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ShardingCodec, ZstdCodec

from imexport.atomic import commit_path, remove_path, write_json_atomic
from imexport.metadata import split_timing
from imexport.sinks.scales import known_positive
from imexport.sinks.zarr_plane import ARRAY_PATH, PLANES_DIR, plane_marker
from imexport.sinks.zarr_shards import shard_frames

RECIPE_ATTR = "imexport_zarr"
COMPRESSORS = ("none", "gzip", "zstd", "blosc-lz4", "blosc-zstd")
LEVEL_RANGES = {"gzip": (0, 9), "zstd": (1, 22), "blosc-lz4": (0, 9), "blosc-zstd": (0, 9)}
# Each library's documented default: zlib's Z_DEFAULT_COMPRESSION is level 6, libzstd's
# ZSTD_CLEVEL_DEFAULT is 3, and Blosc's (c-blosc, numcodecs, zarr) default clevel is 5.
DEFAULT_LEVELS = {"gzip": 6, "zstd": 3, "blosc-lz4": 5, "blosc-zstd": 5}
PYRAMID_METHODS = ("mean", "nearest")
PYRAMID_MIN_SIZE = 64
# the per-frame times of an export with many frames (see metadata.split_timing), in the store
TIMING_SIDECAR_NAME = "timing.json"


# ---------------------------------------------------------------------------------------
# layout and codecs


def zarr_layout(
    *,
    n_frames: int,
    n_channels: int,
    n_planes: int,
    frame_shape: tuple[int, int],
    dtype: Any,
    target_chunk_mb: float,
    options: dict[str, Any] | None,
) -> dict[str, Any]:
    """Array geometry and resolved compression for one export.

    ``shard_t`` is the T-extent of one shard; unsharded stores keep it as the T-extent
    a plane sink buffers before writing. All sizes are plain Python ints.
    """
    options = options or {}
    n_frames = _positive_int(n_frames, "n_frames")
    n_channels = _positive_int(n_channels, "n_channels")
    n_planes = _positive_int(n_planes, "n_planes")
    y, x = (_positive_int(v, "frame_shape") for v in frame_shape)
    sharded = options.get("sharded", True)
    if not isinstance(sharded, bool):
        raise ValueError(f"zarr.sharded must be true or false, got {sharded!r}")
    compressor, level = resolve_compression(options)
    shard_t = shard_frames(n_frames, y * x * np.dtype(dtype).itemsize, target_chunk_mb)
    lead = (n_frames, n_channels) if n_channels > 1 else (n_frames,)
    names = ["t", "c", "z", "y", "x"] if n_channels > 1 else ["t", "z", "y", "x"]
    between = (1,) * (len(lead) - 1)  # the channel axis, when there is one
    chunks = (1, *between, 1, y, x)
    return {
        "shape": (*lead, n_planes, y, x),
        "chunks": chunks,
        "shards": (shard_t, *between, 1, y, x) if sharded else None,
        "shard_t": shard_t,
        "sharded": sharded,
        "dimension_names": names,
        "compressor": compressor,
        "compression_level": level,
    }


def resolve_compression(options: dict[str, Any]) -> tuple[str, int | None]:
    """The compressor name and the level it will really use (its default when unset)."""
    name = options.get("compressor") or "none"
    level = options.get("compression_level")
    if name not in COMPRESSORS:
        raise ValueError(f"zarr.compressor must be one of {', '.join(COMPRESSORS)}; got {name!r}")
    if name == "none":
        if level is not None:
            raise ValueError(
                "zarr.compression_level needs a compressor, but zarr.compressor is 'none' "
                f"(choose one of {', '.join(COMPRESSORS[1:])})"
            )
        return name, None
    if level is None:
        return name, DEFAULT_LEVELS[name]
    low, high = LEVEL_RANGES[name]
    if not _is_int(level) or not low <= level <= high:
        raise ValueError(f"zarr.compression_level for {name} must be an integer from {low} to {high}; got {level!r}")
    return name, int(level)


def compression_codecs(compressor: str, level: int | None, dtype: Any) -> list[Any]:
    if compressor == "none":
        return []
    if compressor == "gzip":
        return [GzipCodec(level=level)]
    if compressor == "zstd":
        return [ZstdCodec(level=level)]
    itemsize = np.dtype(dtype).itemsize
    # byte shuffle groups the high and low bytes of multi-byte samples; single bytes
    # only gain from bit shuffle (the same choice zarr makes for its own Blosc default)
    shuffle = "bitshuffle" if itemsize == 1 else "shuffle"
    cname = compressor.removeprefix("blosc-")
    return [BloscCodec(cname=cname, clevel=level, shuffle=shuffle, typesize=itemsize)]


def _is_int(value: Any) -> bool:
    # bool is an Integral too, but True as a level or a size is a config mistake
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value: Any, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _create_array(group: zarr.Group, path: str, layout: dict[str, Any], dtype: Any) -> zarr.Array:
    codecs = compression_codecs(layout["compressor"], layout["compression_level"], dtype)
    if layout["sharded"]:
        # built by hand so the index codecs (bytes + crc32c) are fixed here, not by zarr
        serializer = ShardingCodec(
            chunk_shape=layout["chunks"],
            codecs=[BytesCodec(), *codecs],
            index_codecs=[BytesCodec(), Crc32cCodec()],
        )
        grid, compressors = layout["shards"], None
    else:
        serializer, grid, compressors = BytesCodec(), layout["chunks"], codecs or None
    return group.create_array(
        path,
        shape=layout["shape"],
        dtype=dtype,
        chunks=grid,
        serializer=serializer,
        compressors=compressors,
        filters=None,
        fill_value=0,
        dimension_names=layout["dimension_names"],
        overwrite=True,
    )


# ---------------------------------------------------------------------------------------
# prepare


def create_store(
    path: Path,
    *,
    n_frames: int,
    n_channels: int,
    n_planes: int,
    frame_shape: tuple[int, int],
    dtype: Any,
    target_chunk_mb: float,
    options: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    name: str,
) -> dict[str, Any]:
    """Create the store with an empty array "0" and its OME-NGFF 0.5 attributes.

    Returns the layout. A leftover store at ``path`` (an earlier, killed attempt) is
    removed first so no stale shard or plane marker survives.
    """
    metadata = metadata or {}
    layout = zarr_layout(
        n_frames=n_frames,
        n_channels=n_channels,
        n_planes=n_planes,
        frame_shape=frame_shape,
        dtype=dtype,
        target_chunk_mb=target_chunk_mb,
        options=options,
    )
    remove_path(Path(path))
    group = zarr.create_group(str(path), zarr_format=3)
    _create_array(group, ARRAY_PATH, layout, dtype)
    names = layout["dimension_names"]
    scale, unknown = base_scale(metadata, names)
    multiscale = {
        "name": name,
        "axes": [_axis(n, n not in unknown) for n in names],
        "datasets": [_dataset(ARRAY_PATH, scale)],
    }
    group.attrs.update(
        {
            "ome": {"version": "0.5", "multiscales": [multiscale]},
            "imexport": metadata,
            RECIPE_ATTR: {
                "target_chunk_mb": target_chunk_mb,
                "sharded": layout["sharded"],
                "compressor": layout["compressor"],
                "compression_level": layout["compression_level"],
                "unknown_scale_axes": unknown,
            },
        }
    )
    return layout


def base_scale(metadata: dict[str, Any], names: list[str]) -> tuple[list[float], list[str]]:
    """Level-0 scale per axis (seconds, micrometres) and the axes whose scale is unknown.

    An unknown scale is written as 1.0, i.e. one step per index, and its axis gets no unit
    (OME-NGFF 0.5 only recommends units), so no reader takes it for 1 µm or 1 s.
    """
    fs = known_positive(metadata.get("fs"))
    known = {
        "t": 1.0 / fs if fs else None,
        "c": 1.0,
        "z": known_positive(metadata.get("dz")),
        "y": known_positive(metadata.get("dy")),
        "x": known_positive(metadata.get("dx")),
    }
    return [known[n] or 1.0 for n in names], [n for n in names if known[n] is None]


def _axis(name: str, scale_known: bool) -> dict[str, str]:
    if name == "c":
        return {"name": "c", "type": "channel"}
    kind, unit = ("time", "second") if name == "t" else ("space", "micrometer")
    return {"name": name, "type": kind, "unit": unit} if scale_known else {"name": name, "type": kind}


def _dataset(path: str, scale: list[float]) -> dict[str, Any]:
    return {"path": path, "coordinateTransformations": [{"type": "scale", "scale": scale}]}


# ---------------------------------------------------------------------------------------
# finalize


def finalize_store(
    tmp_path: Path,
    final_path: Path,
    *,
    pyramid: bool = False,
    pyramid_max_layers: int = 4,
    pyramid_method: str = "mean",
    extra_attrs: dict[str, Any] | None = None,
) -> None:
    """Collect plane metadata, add pyramid levels, and move the store to ``final_path``.

    ``extra_attrs`` are merged into the group attributes last (top-level keys replace).
    """
    if pyramid_method not in PYRAMID_METHODS:
        raise ValueError(f"pyramid_method must be one of {', '.join(PYRAMID_METHODS)}; got {pyramid_method!r}")
    if not _is_int(pyramid_max_layers) or pyramid_max_layers < 0:
        raise ValueError(f"pyramid_max_layers must be a non-negative integer, got {pyramid_max_layers!r}")
    tmp_path = Path(tmp_path)
    group = zarr.open_group(str(tmp_path), mode="r+")
    planes = collect_planes(tmp_path, group[ARRAY_PATH].shape[-3])
    # every plane job found the same acquisition times: kept once, in the export's metadata
    timing = [plane.pop("timing", None) for plane in planes][0]
    if timing:
        inline, sidecar = split_timing(timing, TIMING_SIDECAR_NAME)
        extra_attrs = {**(extra_attrs or {}), "imexport": {**group.attrs["imexport"], "timing": inline}}
        if sidecar is not None:
            write_json_atomic(tmp_path / TIMING_SIDECAR_NAME, sidecar)
    ome = group.attrs["ome"]
    multiscale = ome["multiscales"][0]
    levels = build_pyramid(group, pyramid_max_layers, pyramid_method) if pyramid else []
    multiscale["datasets"] = multiscale["datasets"][:1] + levels
    if levels:
        multiscale["type"] = pyramid_method
    group.attrs.update({"ome": ome, "imexport_planes": planes, **(extra_attrs or {})})
    remove_path(tmp_path / PLANES_DIR)
    commit_path(tmp_path, Path(final_path))


def collect_planes(store_path: Path, n_planes: int) -> list[Any]:
    markers = {z: plane_marker(store_path, z) for z in range(n_planes)}
    missing = [z for z, marker in markers.items() if not marker.is_file()]
    if missing:
        raise RuntimeError(f"store {store_path} has no committed plane for z_index {missing}")
    return [json.loads(markers[z].read_text()) for z in range(n_planes)]


def build_pyramid(group: zarr.Group, max_layers: int, method: str) -> list[dict[str, Any]]:
    """Add levels "1".."N", each reduced from the one before; returns their dataset entries.

    Y and X halve at every level. Z halves too only when dz is known, the level has more
    than one plane and its Z spacing is no coarser than its finest lateral spacing: the
    lateral axes first catch up with a coarse Z, then all three shrink together, which
    keeps voxels as close to isotropic as factors of 2 allow. T and C never change.
    """
    recipe = group.attrs[RECIPE_ATTR]
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    scale = list(datasets[0]["coordinateTransformations"][0]["scale"])
    z_known = "z" not in recipe["unknown_scale_axes"]
    source = group[ARRAY_PATH]
    entries = []
    for level in range(1, max_layers + 1):
        factors = _level_factors(source.shape, scale, z_known)
        if factors is None:
            break
        target = _create_level(group, str(level), source, factors, recipe)
        _reduce_level(source, target, factors, method)
        scale = [s * f for s, f in zip(scale, factors)]
        entries.append(_dataset(str(level), scale))
        source = target
    return entries


def _level_factors(shape: tuple[int, ...], scale: list[float], z_known: bool) -> list[int] | None:
    """Per-axis factors from ``shape`` to the next level, or None when Y or X gets too small."""
    z, y, x = shape[-3:]
    if -(-y // 2) < PYRAMID_MIN_SIZE or -(-x // 2) < PYRAMID_MIN_SIZE:
        return None
    sz, sy, sx = scale[-3:]
    fz = 2 if z_known and z > 1 and sz <= min(sy, sx) else 1
    return [1] * (len(shape) - 3) + [fz, 2, 2]


def _create_level(group: zarr.Group, path: str, source: zarr.Array, factors: list[int], recipe: dict[str, Any]) -> zarr.Array:
    shape = [-(-n // f) for n, f in zip(source.shape, factors)]
    n_channels = shape[1] if source.ndim == 5 else 1
    layout = zarr_layout(
        n_frames=shape[0],
        n_channels=n_channels,
        n_planes=shape[-3],
        frame_shape=tuple(shape[-2:]),
        dtype=source.dtype,
        target_chunk_mb=recipe["target_chunk_mb"],
        options={
            "sharded": recipe["sharded"],
            "compressor": recipe["compressor"],
            "compression_level": recipe["compression_level"],
        },
    )
    return _create_array(group, path, layout, source.dtype)


def _reduce_level(source: zarr.Array, target: zarr.Array, factors: list[int], method: str) -> None:
    """Fill ``target`` one output shard at a time from source blocks of a shard's T-extent.

    Peak memory: one output shard, one source shard's worth of frames (two planes when
    Z halves) and the reduction's working copy of them; never a whole level.
    """
    out_t = (target.shards or target.chunks)[0]
    in_t = (source.shards or source.chunks)[0]
    for lead, z_sources in _plane_pairs(source.shape, target.shape, factors[-3]):
        for t0 in range(0, target.shape[0], out_t):
            t1 = min(target.shape[0], t0 + out_t)
            out = np.empty((t1 - t0, *target.shape[-2:]), target.dtype)
            for s0 in range(t0, t1, in_t):
                s1 = min(t1, s0 + in_t)
                planes = [source[(slice(s0, s1), *lead, z)] for z in z_sources]
                block = planes[0][:, None] if len(planes) == 1 else np.stack(planes, axis=1)
                out[s0 - t0 : s1 - t0] = reduce_block(block, method)
            target[(slice(t0, t1), *lead, z_sources[0] // factors[-3])] = out


def _plane_pairs(
    source_shape: tuple[int, ...], target_shape: tuple[int, ...], fz: int
) -> Iterator[tuple[tuple[int, ...], list[int]]]:
    """(channel index or nothing, source planes) for every plane of the target level."""
    channels = [(c,) for c in range(source_shape[1])] if len(source_shape) == 5 else [()]
    for lead in channels:
        for z in range(target_shape[-3]):
            yield lead, list(range(z * fz, min(source_shape[-3], (z + 1) * fz)))


def reduce_block(block: np.ndarray, method: str) -> np.ndarray:
    """Reduce ``(n, k, Y, X)`` (k source planes) to ``(n, ceil(Y/2), ceil(X/2))``.

    "nearest" keeps the first plane and every second row and column. "mean" averages
    each k x 2 x 2 block; an odd trailing row or column averages only the pixels that
    exist (edge padding repeats them, which leaves their mean unchanged). Integer
    results are rounded to nearest (half to even) rather than truncated.
    """
    if method == "nearest":
        return block[:, 0, ::2, ::2].copy()
    n, k, y, x = block.shape
    pad = ((0, 0), (0, 0), (0, y % 2), (0, x % 2))
    if y % 2 or x % 2:
        block = np.pad(block, pad, mode="edge")
    blocks = block.reshape(n, k, (y + 1) // 2, 2, (x + 1) // 2, 2)
    mean = blocks.mean(axis=(1, 3, 5), dtype=np.float64)
    if np.issubdtype(block.dtype, np.integer):
        mean = np.rint(mean)
    return mean.astype(block.dtype)
