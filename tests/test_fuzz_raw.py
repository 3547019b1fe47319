"""Damaged raw ScanImage files, a few hundred from a fixed seed: each either gives the
pixels of its pages or stops with imexport's own error naming the file.

Nothing else is acceptable: no other exception type, no hang, no allocation larger
than the file justifies. Pixels are checked against tifffile reading the same damaged
file (an independent TIFF parser) at the page each (frame, colour, plane) holds in the
acquisition as it was written: a damaged header value that still parses must not make
the export read other pages, or fewer planes, than were recorded.
"""

from __future__ import annotations

import shutil
import signal
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imexport.sources import build_index, inspect_input, open_plane_reader
from imexport.sources.info import SourceError

N_MUTANTS = 240
SEED = 20261201
PEAK_BYTES = 32 * 2**20  # the files are ~20 kB: any allocation near this is unjustified
SECONDS_PER_MUTANT = 10


def _mutate(data: bytearray, rng: np.random.Generator) -> bytearray:
    """One of: random byte changes anywhere, a truncation, changes in the header and
    first directories (where a damaged value changes how everything else is read)."""
    mode = rng.integers(3)
    if mode == 1:
        return data[: rng.integers(len(data))]
    limit = len(data) if mode == 0 else min(len(data), 4096)
    for _ in range(rng.integers(1, 8)):
        data[rng.integers(limit)] = rng.integers(256)
    return data


def _timeout(signum, frame):
    raise TimeoutError("a damaged file took too long")


def _read_everything(folder: Path) -> tuple:
    info = inspect_input(folder)
    offsets = build_index(info)
    with open_plane_reader(info, offsets) as reader:
        planes = [reader.read(np.arange(info.n_frames), list(range(info.n_colors)), z) for z in range(info.n_planes)]
    return info, planes


def _check_pixels_against_tifffile(spec, info, planes) -> None:
    """Frame t of plane z, colour c is page ``t_in_file * n_saved + c * n_planes + z`` of its
    file (LBM: the planes of one colour are consecutive saved channels), as tifffile
    reads it. The layout comes from the written ``spec``, not from what imexport read:
    only the last file may have lost whole frames (a truncation at a frame boundary)."""
    n_saved = spec.n_colors * spec.n_planes
    assert (info.n_saved, info.n_colors, info.n_planes) == (n_saved, spec.n_colors, spec.n_planes)
    assert (info.roi_heights, info.fly_to_lines) == (spec.roi_heights, spec.fly_to_lines)
    written = [min(spec.frames_per_file, spec.n_frames - start) for start in range(0, spec.n_frames, spec.frames_per_file)]
    assert info.frames_per_file[:-1] == written[:-1] and info.frames_per_file[-1] <= written[-1], info.frames_per_file
    t = 0
    for path, n_frames in zip(info.files, info.frames_per_file):
        with tifffile.TiffFile(path) as tif:
            for local in range(n_frames):
                for c in range(spec.n_colors):
                    for z in range(spec.n_planes):
                        expected = tif.pages[local * n_saved + c * spec.n_planes + z].asarray()
                        np.testing.assert_array_equal(planes[z][t, c], expected, err_msg=f"{path} frame {local}")
                t += 1


@pytest.fixture(scope="module")
def intact(tmp_path_factory, make_acquisition):
    folder = tmp_path_factory.mktemp("fuzz")
    spec, _ = make_acquisition(folder, content="index", n_frames=7, frames_per_file=4)
    return spec, folder / "raw"


def test_damaged_raw_files_export_their_pages_or_stop_naming_the_file(intact, tmp_path):
    spec, intact = intact
    rng = np.random.default_rng(SEED)
    files = sorted(intact.glob("*.tif"))
    outcomes = {"exported": 0, "refused": 0}
    previous = signal.signal(signal.SIGALRM, _timeout)
    try:
        for i in range(N_MUTANTS):
            work = tmp_path / f"m{i}"
            shutil.copytree(intact, work)
            damaged = work / files[rng.integers(len(files))].name
            damaged.write_bytes(bytes(_mutate(bytearray(damaged.read_bytes()), rng)))
            tracemalloc.start()
            signal.alarm(SECONDS_PER_MUTANT)
            try:
                info, planes = _read_everything(work)
            except SourceError as error:
                assert str(work) in str(error), f"mutant {i}: the error names no file: {error}"
                outcomes["refused"] += 1
                continue
            finally:
                signal.alarm(0)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                assert peak < PEAK_BYTES, f"mutant {i}: {peak / 2**20:.0f} MiB allocated for a {damaged.stat().st_size} byte file"
            _check_pixels_against_tifffile(spec, info, planes)
            outcomes["exported"] += 1
            shutil.rmtree(work)
    finally:
        signal.signal(signal.SIGALRM, previous)
    # the seed must exercise both outcomes, or the test proves nothing
    assert outcomes["exported"] > 20 and outcomes["refused"] > 20, outcomes
