"""Volumetric ImageJ BigTIFF assembled from per-plane ImageJ TIFFs."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import tifffile

from imexport.sinks.tiff_volume import assemble_volume_tiff

METADATA = {"fs": 8.0, "dx": 0.5, "dy": 0.8, "dz": 12.5, "channels": [1, 2], "note": "µm"}


def write_planes(folder, volume, **imwrite):
    """One ImageJ TIFF per plane of ``volume`` shaped (T, Z, C, Y, X); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    n_channels = volume.shape[2]
    paths = []
    for z in range(volume.shape[1]):
        path = folder / f"plane{z:02d}.tif"
        plane = volume[:, z] if n_channels > 1 else volume[:, z, 0]
        axes = "TCYX" if n_channels > 1 else "TYX"
        tifffile.imwrite(path, plane, imagej=True, metadata={"axes": axes}, **imwrite)
        paths.append(path)
    return paths


def random_volume(shape, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("n_channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
def test_values_and_page_order(tmp_path, n_channels, dtype):
    volume = random_volume((7, 3, n_channels, 20, 24), dtype)
    planes = write_planes(tmp_path / "planes", volume)
    out = tmp_path / "volume.tif"
    # about 2 frames of the whole volume per T-chunk, so chunk edges fall mid-recording
    chunk_mb = 2 * volume[0].nbytes / 2**20
    assert assemble_volume_tiff(out, planes, metadata=METADATA, target_chunk_mb=chunk_mb) == out
    with tifffile.TiffFile(out) as tif:
        assert not tif.is_bigtiff and tif.is_imagej  # tiff.bigtiff: auto, and this file is small
        series = tif.series[0]
        assert series.axes == ("TZCYX" if n_channels > 1 else "TZYX")
        assert series.dtype == dtype
        np.testing.assert_array_equal(series.asarray().reshape(volume.shape), volume)
        n_z, n_c = volume.shape[1:3]
        assert len(tif.pages) == volume.shape[0] * n_z * n_c
        for t, z, c in [(0, 0, 0), (3, 2, n_c - 1), (6, 1, 0), (5, 0, n_c - 1)]:
            page = tif.pages[t * n_z * n_c + z * n_c + c].asarray()
            np.testing.assert_array_equal(page, volume[t, z, c])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planes", "volume.tif"]


def test_imagej_metadata_and_resolution(tmp_path):
    volume = random_volume((4, 2, 2, 8, 10))
    out = tmp_path / "volume.tif"
    assemble_volume_tiff(out, write_planes(tmp_path / "p", volume), metadata=METADATA)
    with tifffile.TiffFile(out) as tif:
        ij = tif.imagej_metadata
        assert (ij["frames"], ij["slices"], ij["channels"]) == (4, 2, 2)
        assert ij["hyperstack"] is True
        assert ij["unit"] == "um"
        assert ij["spacing"] == pytest.approx(12.5)
        assert ij["finterval"] == pytest.approx(1 / 8.0)
        assert json.loads(ij["Info"]) == METADATA
        tags = tif.pages[0].tags
        x_num, x_den = tags["XResolution"].value
        y_num, y_den = tags["YResolution"].value
        assert x_num / x_den == pytest.approx(1 / 0.5)
        assert y_num / y_den == pytest.approx(1 / 0.8)


def test_unknown_scales_are_left_out(tmp_path):
    volume = random_volume((3, 2, 1, 8, 8))
    out = tmp_path / "volume.tif"
    metadata = {"fs": None, "dx": None, "dy": None, "dz": None}
    assemble_volume_tiff(out, write_planes(tmp_path / "p", volume), metadata=metadata)
    with tifffile.TiffFile(out) as tif:
        ij = tif.imagej_metadata
        assert "spacing" not in ij and "finterval" not in ij
        assert "channels" not in ij  # one channel: the C axis is dropped
        assert (ij["frames"], ij["slices"]) == (3, 2)
        assert json.loads(ij["Info"]) == metadata
        x_num, x_den = tif.pages[0].tags["XResolution"].value
        assert x_num / x_den == 1  # tifffile's neutral default


def test_compressed_planes_fall_back_to_page_reads(tmp_path):
    volume = random_volume((5, 3, 2, 12, 12), np.uint8)
    planes = write_planes(tmp_path / "p", volume, compression="zlib")
    with pytest.raises(ValueError):
        tifffile.memmap(planes[0])  # proves the fallback path is the one exercised
    out = tmp_path / "volume.tif"
    assemble_volume_tiff(out, planes, metadata=METADATA, target_chunk_mb=1e-3)
    np.testing.assert_array_equal(tifffile.imread(out), volume)


def test_single_frame_planes(tmp_path):
    volume = random_volume((1, 3, 2, 8, 8))
    out = tmp_path / "volume.tif"
    assemble_volume_tiff(out, write_planes(tmp_path / "p", volume), metadata=METADATA)
    with tifffile.TiffFile(out) as tif:
        assert tif.imagej_metadata.get("frames", 1) == 1  # tifffile omits frames=1
        assert tif.imagej_metadata["slices"] == 3
        np.testing.assert_array_equal(tif.asarray().reshape(volume.shape), volume)


def test_replaces_existing_output(tmp_path):
    out = tmp_path / "volume.tif"
    out.write_bytes(b"old export")
    volume = random_volume((2, 2, 1, 8, 8))
    assemble_volume_tiff(out, write_planes(tmp_path / "p", volume), metadata=METADATA)
    np.testing.assert_array_equal(tifffile.imread(out), volume[:, :, 0])


@pytest.mark.parametrize(
    "odd_one",
    [
        np.zeros((4, 8, 9), np.uint16),  # frame shape
        np.zeros((5, 8, 8), np.uint16),  # frame count
        np.zeros((4, 8, 8), np.float32),  # dtype
    ],
)
def test_mismatched_planes_raise(tmp_path, odd_one):
    volume = random_volume((4, 2, 1, 8, 8))
    planes = write_planes(tmp_path / "p", volume)
    odd = tmp_path / "p" / "odd.tif"
    tifffile.imwrite(odd, odd_one, imagej=True, metadata={"axes": "TYX"})
    out = tmp_path / "volume.tif"
    with pytest.raises(ValueError, match="odd.tif"):
        assemble_volume_tiff(out, [*planes, odd], metadata=METADATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_rejects_non_hyperstack_axes(tmp_path):
    path = tmp_path / "zstack.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ValueError, match="zstack.tif.*TYX or TCYX"):
        assemble_volume_tiff(tmp_path / "v.tif", [path], metadata={})
    with pytest.raises(ValueError, match="at least one"):
        assemble_volume_tiff(tmp_path / "v.tif", [], metadata={})


def test_memory_stays_near_one_t_chunk(tmp_path):
    volume = random_volume((64, 4, 1, 256, 256))  # 32 MiB in all
    planes = write_planes(tmp_path / "p", volume)
    del volume
    tracemalloc.start()
    try:
        assemble_volume_tiff(tmp_path / "v.tif", planes, metadata=METADATA, target_chunk_mb=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # one 1 MiB T-chunk plus tifffile's page buffers
