"""Every format through the real workflow for int16, uint16 and float32 sources.

A numpy source (`.npy` with `dim_order`) carries the dtype; TIFF, Zarr and HDF5 keep it
bit for bit, the Suite2p binary is int16 by definition: rounded half to even, clipped.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import zarr

T, Z, Y, X = 5, 2, 6, 7
PLANE_NAMES = ["zplane01_tp00001-00005", "zplane02_tp00001-00005"]
VOLUME = "zplane01-02_tp00001-00005"


def movie(dtype) -> np.ndarray:
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        # beyond both int16 limits and exact .5 cases, to pin the binary's conversion
        data = rng.uniform(-40000, 40000, (T, Z, Y, X)).astype(dtype)
        data.flat[:4] = [0.5, 1.5, -2.5, 32767.5]
        return data
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, (T, Z, Y, X), endpoint=True).astype(dtype)


def as_suite2p(data: np.ndarray) -> np.ndarray:
    """Independent statement of the documented conversion."""
    values = np.rint(data.astype(np.float64)) if data.dtype.kind == "f" else data.astype(np.int64)
    return np.clip(values, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32"])
def test_every_format_keeps_the_pixels(tmp_path, run_snakemake, dtype):
    data = movie(dtype)
    (tmp_path / "src").mkdir()
    np.save(tmp_path / "src" / "movie.npy", data)
    out = tmp_path / "out"
    run_snakemake(
        tmp_path,
        {
            "input": str(tmp_path / "src" / "movie.npy"),
            "input_options": {"dim_order": "TZYX"},
            "outdir": str(out),
            "format": ["tiff", "bin", "zarr", "h5"],
            "metadata": {"dz": None},
        },
    )
    for z, name in enumerate(PLANE_NAMES):
        tif = tifffile.imread(out / f"{name}.tif")
        assert tif.dtype == data.dtype
        np.testing.assert_array_equal(tif, data[:, z])
        binary = np.fromfile(out / name / "data_raw.bin", dtype=np.int16).reshape(T, Y, X)
        np.testing.assert_array_equal(binary, as_suite2p(data[:, z]))
    store = zarr.open_group(out / f"{VOLUME}.zarr", mode="r")
    assert store["0"].dtype == data.dtype
    np.testing.assert_array_equal(store["0"][:], data)
    with h5py.File(out / f"{VOLUME}.h5") as f:
        assert f["mov"].dtype == data.dtype
        np.testing.assert_array_equal(f["mov"][:], data)
