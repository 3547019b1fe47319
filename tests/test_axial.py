"""Plane-to-plane registration of synthetic LBM volumes, and the numpy/cupy backend choice."""

import sys

import numpy as np
import pytest

from imexport.axial import (
    apply_shifts_padded,
    canvas_padding,
    mean_frame_indices,
    plane_shifts,
    subset_shifts,
)
from imexport.backend import array_module, to_numpy


def smooth_image(shape, sigma=2.0, seed=0):
    """Periodic Gaussian-filtered noise in [0, 1000]."""
    noise = np.random.default_rng(seed).standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * sigma**2 * (ky**2 + kx**2))
    image = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=shape)
    return 1000 * (image - image.min()) / (image.max() - image.min())


def translated_crops(scene, displacements, size=96, origin=60):
    """Planes cut from one scene, plane z's content displaced by ``displacements[z]``.

    Cropping (rather than rolling) brings new content in at the edges, as a real lateral
    offset between beams does.
    """
    return np.stack([scene[origin - dy : origin - dy + size, origin - dx : origin - dx + size] for dy, dx in displacements])


def test_rolled_planes_give_cumulative_shifts_with_documented_sign():
    base = smooth_image((96, 96))
    n_planes = 6
    # plane z shows plane z-1's content moved by (+2, -1)
    volume = np.stack([np.roll(base, (2 * z, -z), axis=(0, 1)) for z in range(n_planes)])
    result = plane_shifts(volume, max_reg_xy=10)
    expected = np.array([(-2 * z, z) for z in range(n_planes)])
    np.testing.assert_array_equal(result.shifts, expected)
    np.testing.assert_array_equal(result.steps[1:], np.tile([-2, 1], (n_planes - 1, 1)))
    np.testing.assert_array_equal(result.steps[0], [0, 0])
    assert result.shifts.dtype.kind == "i"
    assert result.at_search_limit == []
    assert result.backend == "numpy"
    assert result.params == {"max_reg_xy": 10, "sigma": 1.45, "smooth_sigma": 1.15}


def test_cropped_planes_are_registered_to_plane_zero():
    scene = smooth_image((220, 220), seed=1)
    displacements = np.cumsum([(0, 0), (3, -2), (1, 4), (-5, 0)], axis=0)
    result = plane_shifts(translated_crops(scene, displacements), max_reg_xy=10)
    np.testing.assert_array_equal(result.shifts, -displacements)


def test_shifted_planes_line_up_with_plane_zero():
    scene = smooth_image((220, 220), seed=2)
    displacements = [(0, 0), (4, -3), (-2, 5)]
    volume = translated_crops(scene, displacements)
    shifts = plane_shifts(volume, max_reg_xy=10).shifts
    for plane, (dy, dx) in zip(volume, shifts):
        aligned = np.roll(plane, (dy, dx), axis=(0, 1))
        np.testing.assert_allclose(aligned[8:-8, 8:-8], volume[0][8:-8, 8:-8])


def test_step_just_beyond_the_search_radius_is_flagged():
    scene = smooth_image((220, 220), seed=3)
    volume = translated_crops(scene, [(0, 0), (1, 1), (7, 0)])  # second step is (6, -1)
    result = plane_shifts(volume, max_reg_xy=5)
    assert result.at_search_limit == [2]
    np.testing.assert_array_equal(result.steps[1], [-1, -1])


def test_search_radius_is_clipped_to_small_images():
    plane = smooth_image((12, 16), sigma=1.0)
    volume = np.stack([plane, np.roll(plane, 1, axis=1)])
    result = plane_shifts(volume, max_reg_xy=30)
    np.testing.assert_array_equal(result.steps[1], [0, -1])


def test_single_plane_volume_has_no_steps():
    result = plane_shifts(smooth_image((32, 32))[None])
    np.testing.assert_array_equal(result.shifts, [[0, 0]])
    assert result.at_search_limit == []


def test_frame_indices_use_every_frame_of_a_short_recording():
    assert mean_frame_indices(1000, 7).tolist() == [0, 166, 333, 499, 666, 832, 999]
    assert mean_frame_indices(5, 200).tolist() == [0, 1, 2, 3, 4]
    assert mean_frame_indices(1, 200).tolist() == [0]


@pytest.mark.parametrize("method", ["mean", "frame"])
def test_corrected_plane_mean_is_the_mean_of_the_corrected_frames(tmp_path, make_acquisition, method):
    # The mean is taken from the raw frames and shifted once (the shift is linear); the
    # expectation shifts every frame (rounded to int16, as a written frame is) before
    # averaging, from pages picked by the acquisition's own order: volume t, plane z is
    # page t * n_planes + z, each ROI a band of rows below the previous ROI's fly-to lines.
    import tifffile

    from imexport.corrections import corrected_plane_mean, estimate_scan_phase
    from imexport.phase import apply_offset
    from imexport.sources.scanimage import build_page_index, inspect_acquisition

    heights, fly_to, n_planes, n_frames = [30, 22], 5, 3, 16
    _, files = make_acquisition(
        tmp_path, width=64, roi_heights=heights, fly_to_lines=fly_to, n_planes=n_planes, n_frames=n_frames,
        frames_per_file=n_frames, noise=30.0, n_cells=30, phase_offset=0.6,
    )  # fmt: skip
    info = inspect_acquisition(files)
    offsets = build_page_index(info)
    with tifffile.TiffFile(files[0]) as tif:
        pages = np.stack([page.asarray() for page in tif.pages])
    assert len(files) == 1 and len(pages) == n_frames * n_planes
    indices = np.array([0, 3, 5, 8, 10, 15])
    options = {"phasecorr_method": method, "use_fft": True, "border": 3, "max_offset": 4, "window_frames": 8}
    for plane in range(n_planes):
        record = estimate_scan_phase(
            info, offsets, plane=plane, roi=None, color=0, frames_runs=[[0, n_frames, 1]], options=options
        )
        applied = record["applied"] if method == "mean" else np.asarray(record["applied"])[indices]
        mean = corrected_plane_mean(info, offsets, plane, None, 0, record, indices, chunk=4)

        frames = []
        for i, t in enumerate(indices):
            page = pages[t * n_planes + plane]
            offset = applied if method == "mean" else applied[i]
            strips, y0 = [], 0
            for height in heights:
                strip = apply_offset(page[y0 : y0 + height], offset, first_row=y0)
                strips.append(strip[: min(heights)])
                y0 += height + fly_to
            frames.append(np.hstack(strips))
        expected = np.mean(frames, axis=0)
        assert mean.shape == (min(heights), 64 * len(heights))
        assert abs(offset) > 0.3  # the correction is sub-pixel: every odd row is resampled
        if method == "frame":  # frames with their own offsets are shifted one by one
            np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-9)
        else:  # the rounding of each frame to integers is all that differs
            assert np.abs(mean - expected).max() <= 0.5
            assert np.abs(mean - expected).mean() < 0.1


def test_subset_shifts_are_re_referenced_to_the_first_listed_plane():
    shifts = np.array([[0, 0], [1, 2], [3, -1], [5, 5]])
    assert subset_shifts(shifts, [2, 0, 3]) == [[0, 0], [-3, 1], [2, 6]]
    assert subset_shifts(shifts, []) == []


def test_apply_shifts_padded_places_planes_on_a_zero_canvas():
    frames = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5) + 1
    shifts = np.array([[0, 0], [-1, 2], [2, -3]])
    assert canvas_padding(shifts) == (1, 2, 3, 2)
    canvas = apply_shifts_padded(frames, shifts)
    assert canvas.shape == (2, 3, 4 + 1 + 2, 5 + 3 + 2) and canvas.dtype == frames.dtype
    for z, (top, left) in enumerate([(1, 3), (0, 5), (3, 0)]):
        placed = canvas[:, z, top : top + 4, left : left + 5]
        np.testing.assert_array_equal(placed, frames[:, z])
        assert canvas[:, z].sum() == placed.sum()  # everything outside the plane is zero


def test_array_module_false_is_numpy():
    assert array_module(False) == (np, "numpy")
    assert array_module("false") == (np, "numpy")


def test_array_module_auto_falls_back_to_numpy_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    assert array_module("auto") == (np, "numpy")


def test_imexport_gpu_0_keeps_auto_on_the_cpu(monkeypatch):
    monkeypatch.setenv("IMEXPORT_GPU", "0")
    assert array_module("auto") == (np, "numpy")


def test_array_module_true_without_cupy_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match="gpu: true") as excinfo:
        array_module("true")
    assert "cupy" in str(excinfo.value) and "imexport[gpu]" in str(excinfo.value)


def test_array_module_rejects_other_values():
    with pytest.raises(ValueError):
        array_module("sometimes")


def test_to_numpy_passes_numpy_through():
    a = np.arange(3)
    assert to_numpy(a) is a


def test_numpy_and_cupy_agree(cupy):
    scene = smooth_image((220, 220), seed=4)
    volume = translated_crops(scene, np.cumsum([(0, 0), (3, -2), (1, 4), (-5, 0)], axis=0))
    on_cpu = plane_shifts(volume, max_reg_xy=10, xp=np)
    on_gpu = plane_shifts(volume, max_reg_xy=10, xp=cupy)
    assert on_gpu.backend == "cupy"
    np.testing.assert_array_equal(on_gpu.shifts, on_cpu.shifts)
    assert on_gpu.at_search_limit == on_cpu.at_search_limit
