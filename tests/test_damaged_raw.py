"""Damaged raw ScanImage files are refused while planning, naming the file, the page or
header field and the damaged value, with no Python traceback and no tifffile warning.

Each test damages one known place of a written file (found with tifffile, or by the
header text the writer put there) and checks the message; ``test_fuzz_raw`` covers
random damage.
"""

from __future__ import annotations

import struct

import pytest
import tifffile
from conftest import NO_PHASE, set_next_page_offset

from imexport.sources import inspect_input
from imexport.sources.info import SourceError

# one small plane per page: the second file holds 400 pages
LONG_SERIES = dict(
    content="index", n_planes=1, roi_heights=[4], width=4, fly_to_lines=0, n_frames=800, frames_per_file=400, n_cells=1
)
# not one of the 64 pages the planning step used to sample in a 400-page file
# (np.linspace(0, 399, 64) passes 297 and 304)
DEEP_PAGE = 301


def replace_in_header(path, old: bytes, new: bytes) -> None:
    """Change header text in place, same length: the file's layout stays as written."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))


def damage_tag(path, page: int, code: int, value: int) -> None:
    """Overwrite the (inline, 16-bit) value of TIFF tag ``code`` of one page."""
    with tifffile.TiffFile(path) as tif:
        where = tif.pages[page].tags[code].valueoffset
    with open(path, "r+b") as fh:
        fh.seek(where)
        fh.write(struct.pack("<H", value))


def test_a_damaged_number_in_the_header_is_refused_naming_the_field(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path)
    old = f"SI.hRoiManager.linePeriod = {spec.line_period!r}".encode()
    replace_in_header(paths[0], old, old[:-5] + b"4S-05")  # 4e-05 with one byte changed
    with pytest.raises(SourceError) as error:
        inspect_input(paths[0].parent)
    assert str(paths[0]) in str(error.value)
    assert "SI.hRoiManager.linePeriod = '4S-05'" in str(error.value)


def test_a_damaged_roi_height_is_not_taken_for_fly_to_lines(tmp_path, make_acquisition):
    # the pages hold ROIs of 6 and 4 rows with 2 fly-to lines between them; a ROI of 5
    # rows would leave 3 "fly-to" lines, which the header's fly-to time (2 lines) rules out
    spec, paths = make_acquisition(tmp_path, roi_heights=[6, 4], fly_to_lines=2)
    with tifffile.TiffFile(paths[0]) as tif:
        rois = tif.scanimage_metadata["RoiGroups"]["imagingRoiGroup"]["rois"]
    assert [r["scanfields"]["pixelResolutionXY"][1] for r in rois] == [6, 4]
    replace_in_header(paths[0], b'"pixelResolutionXY": [12, 6]', b'"pixelResolutionXY": [12, 5]')
    with pytest.raises(SourceError) as error:
        inspect_input(paths[0].parent)
    assert str(paths[0]) in str(error.value) and "ROI heights [5, 4]" in str(error.value)


def test_a_damaged_bits_per_sample_is_refused_naming_page_and_tag(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **LONG_SERIES)
    damage_tag(paths[1], DEEP_PAGE, 258, 96)  # BitsPerSample 16 -> 96
    with pytest.raises(SourceError) as error:
        inspect_input(paths[0].parent)
    assert f"{paths[1]}: page {DEEP_PAGE}: BitsPerSample (tag 258) = 96" in str(error.value)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda path: damage_tag(path, DEEP_PAGE, 258, 96), "BitsPerSample (tag 258) = 96"),
        # the next directory beyond the end of the file
        (lambda path: set_next_page_offset(path, DEEP_PAGE, path.stat().st_size + 4096), f"page {DEEP_PAGE + 1} starts at byte"),
    ],
    ids=["bits_per_sample", "next_directory_offset"],
)
def test_damage_deep_in_the_page_chain_stops_the_dry_run(tmp_path, make_acquisition, run_snakemake, damage, fragment):
    _, paths = make_acquisition(tmp_path, **LONG_SERIES)
    damage(paths[1])
    config = {"input": str(paths[0].parent), "outdir": str(tmp_path / "out"), **NO_PHASE}
    result = run_snakemake(tmp_path / "work", config, "-n", expect_ok=False)
    assert f"imexport: {paths[1]}" in result.output and fragment in result.output, result.output[-3000:]
    assert "Traceback" not in result.output
    assert "rule " not in result.output  # no job planned, not even index_source


def test_a_damaged_header_stops_the_run_with_one_imexport_message(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path)
    replace_in_header(paths[0], b'"RoiGroups"', b'"RoiGroups\x01')  # the ROI JSON no longer parses
    config = {"input": str(paths[0].parent), "outdir": str(tmp_path / "out"), **NO_PHASE}
    result = run_snakemake(tmp_path / "work", config, expect_ok=False)
    messages = [line for line in result.output.splitlines() if line.startswith("imexport:")]
    assert len(messages) == 1, result.output
    assert (
        messages[0].startswith(f"imexport: {paths[0]}: the ROI block (RoiGroups JSON) of the ScanImage header is damaged")
        and "copy it again" in messages[0]
    )
    assert "Traceback" not in result.output and "tifffile" not in result.output


def test_a_strip_offset_pointing_at_another_page_is_refused(tmp_path, make_acquisition):
    # the damaged offset still lies inside the file: read as given, page 301 would
    # silently hold page 302's pixels
    _, paths = make_acquisition(tmp_path, **LONG_SERIES)
    with tifffile.TiffFile(paths[1]) as tif:
        where = tif.pages[DEEP_PAGE].tags[273].valueoffset
        other = tif.pages[DEEP_PAGE + 1].dataoffsets[0]
    with open(paths[1], "r+b") as fh:
        fh.seek(where)
        fh.write(struct.pack("<Q", other))
    with pytest.raises(SourceError) as error:
        inspect_input(paths[0].parent)
    assert str(paths[1]) in str(error.value)
    assert f"the pixels of page {DEEP_PAGE + 1}" in str(error.value) and f"page {DEEP_PAGE}" in str(error.value)


def test_a_damaged_channel_list_that_still_parses_is_refused_by_the_pages(tmp_path, make_acquisition):
    # one file: no other file's page count can contradict the header; the pages'
    # frameNumbers (the same on the 3 pages of a frame) do
    _, paths = make_acquisition(tmp_path, n_planes=3, n_frames=4, frames_per_file=4)
    replace_in_header(paths[0], b"SI.hChannels.channelSave = [1;2;3]", b"SI.hChannels.channelSave = [1;213]")
    with pytest.raises(SourceError) as error:
        inspect_input(paths[0].parent)
    assert str(paths[0]) in str(error.value) and "SI.hChannels.channelSave = [1, 213]" in str(error.value)
    assert "[1, 1, 1, 2]" in str(error.value)  # the frameNumbers of the first pages
