"""Bidirectional scan-phase estimation and correction on synthetic images."""

import numpy as np
import pytest

from imexport.phase import apply_offset, estimate_offset, frame_offsets, reduce_window


def smooth_image(shape=(128, 128), sigma_yx=(3.0, 1.0), seed=0, low=100.0, high=3100.0):
    """Periodic Gaussian-filtered noise scaled to [low, high].

    Smooth along Y so that neighbouring rows look alike (the estimator compares each even
    row with the next odd one), with fine detail along X to lock the correlation onto.
    Periodicity makes np.roll and Fourier shifts exact translations of the content.
    """
    noise = np.random.default_rng(seed).standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * (sigma_yx[0] ** 2 * ky**2 + sigma_yx[1] ** 2 * kx**2))
    image = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=shape)
    return low + (high - low) * (image - image.min()) / (image.max() - image.min())


def fourier_shift(rows, shift):
    """Circularly shift rows by a possibly fractional number of columns."""
    k = np.fft.rfftfreq(rows.shape[-1])
    spectrum = np.fft.rfft(rows, axis=-1) * np.exp(-2j * np.pi * k * shift)
    return np.fft.irfft(spectrum, n=rows.shape[-1], axis=-1)


def with_odd_rows_shifted(image, shift, first_row=0):
    """Copy of ``image`` whose page-odd rows are displaced by ``shift`` columns."""
    shifted = image.copy()
    odd = slice(1 - first_row % 2, None, 2)
    if float(shift).is_integer():
        shifted[odd] = np.roll(image[odd], int(shift), axis=-1)
    else:
        shifted[odd] = fourier_shift(image[odd], shift)
    return shifted


@pytest.fixture(scope="module")
def base():
    return smooth_image()


@pytest.mark.parametrize("shift", [3, -2])
def test_integer_shift_recovered_exactly_without_fft(base, shift):
    image = with_odd_rows_shifted(base, shift)
    assert estimate_offset([(image, 0)], use_fft=False) == -shift


@pytest.mark.parametrize("shift", [3, -2])
def test_integer_shift_recovered_with_subpixel_refinement(base, shift):
    image = with_odd_rows_shifted(base, shift)
    assert estimate_offset([(image, 0)], use_fft=True) == pytest.approx(-shift, abs=0.1)


def test_subpixel_shift_recovered(base):
    image = with_odd_rows_shifted(base, 1.4)
    assert estimate_offset([(image, 0)]) == pytest.approx(-1.4, abs=0.1)


def test_subpixel_estimate_stays_near_the_truth_for_other_fractions(base):
    for shift in (0.3, 0.5, 0.7, 2.2, -1.6):
        image = with_odd_rows_shifted(base, shift)
        assert estimate_offset([(image, 0)]) == pytest.approx(-shift, abs=0.1)


def test_integer_correction_realigns_odd_rows_exactly(base):
    reference = np.rint(base).astype(np.uint16)
    image = with_odd_rows_shifted(reference, 3)
    offset = estimate_offset([(image, 0)], use_fft=False)
    corrected = apply_offset(image, offset, use_fft=False)
    # the last 3 columns are edge fill, not content
    diff = corrected[:, :-3].astype(int) - reference[:, :-3]
    assert np.abs(diff).max() <= 1


def test_subpixel_correction_realigns_odd_rows(base):
    reference = np.rint(base).astype(np.uint16)
    image = np.rint(with_odd_rows_shifted(base, 1.4)).astype(np.uint16)
    corrected = apply_offset(image, estimate_offset([(image, 0)]))
    inner = (slice(1, None, 2), slice(8, -8))
    before = np.abs(image[inner].astype(float) - reference[inner])
    after = np.abs(corrected[inner].astype(float) - reference[inner])
    assert after.mean() < 0.05 * before.mean()


def test_zero_offset_is_a_bit_identical_copy(base):
    image = base.astype(np.float32)
    corrected = apply_offset(image, 0.0)
    assert corrected is not image
    assert corrected.dtype == image.dtype
    assert corrected.tobytes() == image.tobytes()


@pytest.mark.parametrize("shift", [2, -2])
def test_integer_shift_fills_with_edge_value_not_wraparound(shift):
    image = np.arange(6 * 10, dtype=np.int16).reshape(6, 10)
    corrected = apply_offset(image, shift)
    odd, even = corrected[1::2], corrected[0::2]
    np.testing.assert_array_equal(even, image[0::2])
    if shift > 0:
        np.testing.assert_array_equal(odd[:, shift:], image[1::2, :-shift])
        np.testing.assert_array_equal(odd[:, :shift], np.repeat(image[1::2, :1], shift, axis=1))
    else:
        np.testing.assert_array_equal(odd[:, :shift], image[1::2, -shift:])
        np.testing.assert_array_equal(odd[:, shift:], np.repeat(image[1::2, -1:], -shift, axis=1))


def test_rounding_without_fft_uses_whole_pixels():
    image = np.arange(4 * 10, dtype=np.uint16).reshape(4, 10)
    np.testing.assert_array_equal(apply_offset(image, 1.6, use_fft=False), apply_offset(image, 2, use_fft=False))


def test_stacks_of_frames_are_corrected_like_single_frames(base):
    frames = np.stack([base, base[::-1]]).astype(np.float32)
    corrected = apply_offset(frames, 1.3, first_row=5)
    assert corrected.shape == frames.shape and corrected.dtype == frames.dtype
    for frame, expected in zip(frames, corrected):
        np.testing.assert_array_equal(apply_offset(frame, 1.3, first_row=5), expected)


def test_parity_follows_the_page_row_not_the_array_row(base):
    page = with_odd_rows_shifted(base, 3)
    strip, first_row = page[37:97], 37  # array row 0 is page row 37, an odd row
    assert estimate_offset([(strip, first_row)], use_fft=False) == -3
    assert estimate_offset([(strip, 0)], use_fft=False) == 3  # wrong parity flips the sign
    corrected = apply_offset(strip, -3, first_row=first_row)
    np.testing.assert_array_equal(corrected[:, :-3], base[37:97, :-3])


def test_several_strips_pool_into_one_estimate(base):
    page = with_odd_rows_shifted(base, -2)
    strips = [(page[0:40], 0), (page[57:100], 57), (page[44:48], 44)]  # last is cropped away
    combined = estimate_offset(strips)
    assert combined == pytest.approx(2, abs=0.1)
    assert estimate_offset(strips[::-1]) == pytest.approx(combined, abs=1e-9)
    assert estimate_offset(strips[:2]) == combined


def test_strips_of_different_width_are_rejected(base):
    with pytest.raises(ValueError, match="same width"):
        estimate_offset([(base[:40], 0), (base[40:80, :100], 40)])


def test_integer_dtypes_are_rounded_not_truncated(base):
    image = np.rint(base).astype(np.uint16)
    corrected = apply_offset(image, 1.4)
    as_float = apply_offset(image.astype(np.float64), 1.4)
    np.testing.assert_array_equal(corrected, np.rint(as_float).astype(np.uint16))
    # truncation would pull the odd rows down by half a gray level on average
    assert abs((corrected[1::2] - as_float[1::2]).mean()) < 0.05


def test_integer_results_are_clipped_to_the_dtype_limits():
    row = np.where(np.arange(32) < 16, -32768, 32767).astype(np.int16)
    image = np.tile(row, (4, 1))
    corrected = apply_offset(image, 0.5)
    as_float = apply_offset(image.astype(np.float64), 0.5)
    assert as_float.max() > 32767 and as_float.min() < -32768  # ringing overshoots
    expected = np.clip(np.rint(as_float), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(corrected, expected)


def test_max_offset_bounds_the_estimate(base):
    image = with_odd_rows_shifted(base, 6)
    for use_fft in (False, True):
        assert abs(estimate_offset([(image, 0)], use_fft=use_fft, max_offset=4)) <= 4


def test_frame_method_gives_one_offset_per_frame(base):
    shifts = [1, -2, 3]
    frames = np.stack([with_odd_rows_shifted(base, s) for s in shifts])
    exact = frame_offsets(frames, strips=[(slice(None), 0)], use_fft=False)
    assert exact.dtype == np.float64
    np.testing.assert_array_equal(exact, [-1, 2, -3])
    np.testing.assert_allclose(frame_offsets(frames, use_fft=True), [-1, 2, -3], atol=0.1)


def test_estimate_does_not_depend_on_how_the_window_was_read(base):
    rng = np.random.default_rng(1)
    noisy = [with_odd_rows_shifted(base, 1.4) + rng.normal(0, 20, base.shape) for _ in range(6)]
    frames = np.stack(noisy)
    at_once = reduce_window(frames, "mean")
    in_chunks = reduce_window(iter([frames[:2], frames[2:5], frames[5:]]), "mean")
    first = estimate_offset([(at_once, 0)])
    assert estimate_offset([(in_chunks, 0)]) == first
    assert estimate_offset([(at_once, 0)]) == first


def test_reduce_window_methods():
    frames = np.array([[[1, 5]], [[3, 1]]], dtype=np.uint16)  # (n=2, Y=1, X=2)
    expected = {
        "mean": [[2, 3]],
        "max": [[3, 5]],
        "std": [[1, 2]],
        "mean-sub": [[-1, 2]],
    }
    for method, values in expected.items():
        reduced = reduce_window(frames, method)
        assert reduced.dtype == np.float64
        np.testing.assert_allclose(reduced, values)


def test_unknown_reduce_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="mean, max, std, mean-sub"):
        reduce_window(np.zeros((2, 4, 4)), "median")


def test_border_larger_than_the_image_is_rejected(base):
    with pytest.raises(ValueError, match="too small"):
        estimate_offset([(base[:10], 0)], border=3)
    with pytest.raises(ValueError, match="too small"):
        estimate_offset([(base, 0)], border=(0, 0, 64, 64))


def test_numpy_and_cupy_agree(base, cupy):
    image = np.rint(with_odd_rows_shifted(base, 1.4)).astype(np.uint16)
    on_cpu = estimate_offset([(image, 3)], xp=np)
    on_gpu = estimate_offset([(image, 3)], xp=cupy)
    assert on_gpu == pytest.approx(on_cpu, abs=1e-3)
    corrected_gpu = cupy.asnumpy(apply_offset(image, on_cpu, first_row=3, xp=cupy))
    np.testing.assert_allclose(corrected_gpu.astype(int), apply_offset(image, on_cpu, first_row=3), atol=1)


def test_fft_length_is_the_next_5_smooth_number():
    from imexport.phase import _smooth_length

    def smooth(n):
        for factor in (2, 3, 5):
            while n % factor == 0:
                n //= factor
        return n == 1

    for n in range(1, 600):
        length = _smooth_length(n)
        assert length >= n and smooth(length)
        assert not any(smooth(m) for m in range(n, length))


@pytest.mark.parametrize("true_offset", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("window_frames", [2, 20])
@pytest.mark.parametrize("width, heights", [(128, [128, 128]), (64, [56, 44])])
def test_every_plane_of_a_noisy_acquisition_is_read_within_a_twentieth_of_a_pixel(
    tmp_path, true_offset, window_frames, width, heights
):
    # sparse cells + noise on every plane of a real-layout acquisition: phase correlation
    # (whitened spectra) misread these by 0.2-0.4 px rms; a full Hann taper without the
    # taper's autocorrelation divided out read 1 px as 0.85 px on the demo's 64 px lines
    from imexport.corrections import estimate_scan_phase
    from imexport.sources.scanimage import build_page_index, inspect_acquisition
    from imexport.synthetic import AcquisitionSpec, write_acquisition

    spec = AcquisitionSpec(
        width=width,
        roi_heights=heights,
        fly_to_lines=8,
        n_planes=4,
        n_frames=20,
        frames_per_file=20,
        noise=20.0,
        n_cells=40,
        phase_offset=true_offset,
    )
    info = inspect_acquisition(write_acquisition(spec, tmp_path))
    offsets = build_page_index(info)
    options = {"phasecorr_method": "mean", "use_fft": True, "border": 3, "max_offset": 4, "window_frames": window_frames}
    for plane in range(info.n_planes):
        record = estimate_scan_phase(info, offsets, plane=plane, roi=None, color=0, frames_runs=[[0, 20, 1]], options=options)
        # the estimate is the shift that undoes the displacement
        assert record["offset"] == pytest.approx(-true_offset, abs=0.05), plane
        if true_offset == 0.0:
            assert record["applied"] == 0.0  # nothing to correct: pixels stay bit-identical


def wave_packets(width, shift, rows=6, seed=2):
    """Rows of Gaussian wave packets on a 1000 DN baseline, displaced by ``shift`` px, exactly.

    Each packet is a cosine below Nyquist (0.05-0.45 cycles/px) under a Gaussian envelope
    (σ 12 px), whose spectrum is zero above Nyquist to far below float precision, so
    ``x(n - shift)`` evaluated analytically *is* the band-limited shift. The packets keep
    20 px from the row ends, where a shift of a finite row has no exact answer.
    """
    rng = np.random.default_rng(seed)
    n = np.arange(width, dtype=np.float64) - shift
    out = np.full((rows, width), 1000.0)
    for row in out:
        for _ in range(max(1, width // 40)):
            centre = rng.uniform(60, width - 60)
            frequency, phase, amplitude = rng.uniform(0.05, 0.45), rng.uniform(0, 2 * np.pi), rng.uniform(100, 800)
            row += amplitude * np.exp(-0.5 * ((n - centre) / 12.0) ** 2) * np.cos(2 * np.pi * frequency * (n - centre) + phase)
    return out


@pytest.mark.parametrize("width", [160, 224, 1024])  # 1024: wider than the dense operator, the FFT path
@pytest.mark.parametrize("shift", [0.6, -0.3, 1.45, -2.8])
def test_subpixel_shift_matches_the_exact_band_limited_shift(width, shift):
    rows = wave_packets(width, 0.0)
    interleaved = np.empty((2 * len(rows), width))
    interleaved[0::2] = rows  # even page rows stay
    interleaved[1::2] = rows  # odd page rows get shifted
    expected = wave_packets(width, shift)
    as_float = apply_offset(interleaved, shift)
    np.testing.assert_array_equal(as_float[0::2], rows)
    # float32 arithmetic on values of ~2000: hundredths of a DN at most
    assert np.abs(as_float[1::2] - expected).max() < 0.05
    as_int16 = apply_offset(np.rint(interleaved).astype(np.int16), shift)
    # the input's rounding (±0.5 DN, carried through the interpolation) plus the output's
    error = as_int16[1::2].astype(float) - expected
    assert np.abs(error).max() <= 1.5 and np.sqrt((error**2).mean()) < 0.5


@pytest.mark.parametrize("width", [224, 1024])
def test_integer_subpixel_shift_is_within_one_dn_of_the_float64_fourier_shift(width):
    # the correction as it was before the dense operator, written out here: edge-pad by
    # ceil(|shift|) + 1 on the left and on the right up to the next length with no prime
    # factor above 5, shift by a phase ramp in float64, crop, round
    rng = np.random.default_rng(5)
    image = np.clip(rng.normal(1000, 600, (64, width)), -32768, 32767).astype(np.int16)
    shift, pad = 0.6, 2
    length = next(
        n
        for n in range(width + 2 * pad, 4 * width)
        if all(p in (2, 3, 5) for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, p)))
    )
    padded = np.pad(image[1::2].astype(np.float64), [(0, 0), (pad, length - width - pad)], mode="edge")
    spectrum = np.fft.rfft(padded, axis=-1) * np.exp(-2j * np.pi * np.fft.rfftfreq(padded.shape[-1]) * shift)
    reference = np.rint(np.fft.irfft(spectrum, n=length, axis=-1)[:, pad : pad + width])
    corrected = apply_offset(image, shift)
    diff = np.abs(corrected[1::2].astype(float) - reference)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01  # off by one only where float32 rounding tips a half


def test_in_place_shift_touches_only_the_odd_rows_of_the_view(base):
    from imexport.phase import shift_odd_rows

    pages = np.rint(np.stack([base, base[::-1]])).astype(np.uint16)[:, None]  # (n, colours, Y, X)
    expected = pages.copy()
    expected[..., 40:100, :] = apply_offset(pages[..., 40:100, :], 0.6, first_row=40)
    shift_odd_rows(pages[..., 40:100, :], 0.6, first_row=40)
    np.testing.assert_array_equal(pages, expected)
    np.testing.assert_array_equal(pages[..., 40:100:2, :], np.rint(np.stack([base, base[::-1]]))[:, None, 40:100:2])
