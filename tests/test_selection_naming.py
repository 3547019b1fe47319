"""1-based selections (selection.py) and output names (naming.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from imexport.naming import (
    UnsafeNameError,
    check_output_name,
    roi_folder,
    sanitize_suffix,
    stem,
    tag,
)
from imexport.selection import (
    SelectionError,
    from_runs,
    limit,
    reorder,
    select,
    to_runs,
    uniform_step,
)

# --------------------------------------------------------------------------- select


@pytest.mark.parametrize(
    "value, size, expected",
    [
        (None, 4, [0, 1, 2, 3]),
        (1, 4, [0]),
        (4, 4, [3]),
        (np.int64(2), 4, [1]),
        ([3, 1], 4, [2, 0]),  # order is kept
        ((2, 4), 4, [1, 3]),
        (np.array([1, 2]), 4, [0, 1]),
        ("2:5", 6, [1, 2, 3, 4]),  # b inclusive
        ("1:10:3", 10, [0, 3, 6, 9]),
        ("1:9:4", 9, [0, 4, 8]),
        ("3:3", 5, [2]),
        ("2:12:2", 20, [1, 3, 5, 7, 9, 11]),
    ],
)
def test_select_forms(value, size, expected):
    got = select("planes", value, size)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        (0, "out of range"),
        (7, "out of range"),
        ([1, 8], "out of range"),
        ([0, 2], "out of range"),
        ("0:3", "out of range"),
        ("5:9", "out of range"),
        ([2, 2], "twice"),
        ([1, 3, 1], "twice"),
        (True, "not an integer"),
        ([1, False], "not an integer"),
        (2.0, "not an integer"),
        ([1.5], "not an integer"),
        ("2", "not a range"),
        ("1-3", "not a range"),
        ("a:b", "not a range"),
        ("1:2:3:4", "not a range"),
        ("", "not a range"),
        ("1.5:3", "not a range"),
        ("4:2", "upwards"),
        ("1:5:0", "upwards"),
        ("1:5:-1", "upwards"),
        ([], "empty"),
        ({"a": 1}, "not an integer"),
    ],
)
def test_select_errors_name_the_key(value, fragment):
    with pytest.raises(SelectionError) as err:
        select("frames", value, 6)
    message = str(err.value)
    assert message.startswith("frames:")
    assert fragment in message
    if fragment in ("out of range", "not an integer", "empty"):
        assert "1..6" in message  # the valid range


def test_select_out_of_range_names_the_bad_value():
    with pytest.raises(SelectionError, match=r"\[9\]"):
        select("planes", [1, 9], 4)


# --------------------------------------------------------------------------- limit / reorder


def test_limit():
    idx = np.array([1, 3, 5, 7, 9, 11])
    assert limit("num_frames", idx, None) is idx
    assert limit("num_frames", idx, 4).tolist() == [1, 3, 5, 7]
    assert limit("num_frames", idx, 6).tolist() == idx.tolist()
    assert limit("num_frames", idx, np.int32(1)).tolist() == [1]
    for bad in (0, 7, -1):
        with pytest.raises(SelectionError, match=r"^num_frames: .*1\.\.6"):
            limit("num_frames", idx, bad)
    for bad in (True, 2.0, "3"):
        with pytest.raises(SelectionError, match="^num_frames: .*not an integer"):
            limit("num_frames", idx, bad)


def test_reorder():
    idx = np.array([2, 4, 8])
    assert reorder("order", idx, None) is idx
    assert reorder("order", idx, [2, 0, 1]).tolist() == [8, 2, 4]
    assert reorder("order", idx, (0, 1, 2)).tolist() == [2, 4, 8]
    for bad in ([0, 1], [0, 1, 2, 3], [0, 0, 1], [1, 2, 3], [-1, 0, 1]):
        with pytest.raises(SelectionError, match=r"^order: .*permutation of 0\.\.2"):
            reorder("order", idx, bad)
    with pytest.raises(SelectionError, match="^order: .*not an integer"):
        reorder("order", idx, [0, 1.0, 2])


# --------------------------------------------------------------------------- runs


@pytest.mark.parametrize("seed", range(40))
def test_runs_round_trip(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 200))
    kind = seed % 4
    if kind == 0:  # random subset, ascending
        idx = np.sort(rng.choice(size, int(rng.integers(1, size + 1)), replace=False))
    elif kind == 1:  # random order (as after `order`)
        idx = rng.permutation(size)[: int(rng.integers(1, size + 1))]
    elif kind == 2:  # a strided range
        start, step = int(rng.integers(0, size)), int(rng.integers(1, 7))
        idx = np.arange(start, size, step)
    else:  # several strided pieces
        idx = np.unique(np.concatenate([np.arange(a, a + 20, s) for a, s in zip(rng.integers(0, 300, 3), rng.integers(1, 5, 3))]))
    runs = to_runs(idx)
    back = from_runs(runs)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, idx)
    for a, b, s in runs:
        assert s >= 1 and b > a
    if kind == 2:
        assert len(runs) == 1


def test_runs_known_cases():
    assert to_runs(np.arange(12)) == [[0, 12, 1]]
    assert to_runs(np.array([1, 3, 5, 7])) == [[1, 8, 2]]
    assert to_runs(np.array([4])) == [[4, 5, 1]]
    assert from_runs([]).tolist() == []
    assert from_runs([[0, 3, 1], [10, 15, 2]]).tolist() == [0, 1, 2, 10, 12, 14]


def test_uniform_step():
    assert uniform_step(np.array([5])) == 1
    assert uniform_step(np.array([], dtype=np.int64)) == 1
    assert uniform_step(np.arange(3, 20, 4)) == 4
    assert uniform_step(np.array([0, 1])) == 1
    assert uniform_step(np.array([0, 1, 3])) is None
    assert uniform_step(np.array([6, 4, 2])) is None  # descending: not a stride
    assert uniform_step(np.array([2, 2])) is None


# --------------------------------------------------------------------------- tags


def test_tag_padding_and_single_values():
    assert tag("tp", np.arange(300)) == "tp00001-00300"
    assert tag("tp", np.array([0])) == "tp00001"
    assert tag("zplane", np.array([6])) == "zplane07"
    assert tag("zplane", np.arange(14)) == "zplane01-14"
    assert tag("ch", np.array([0, 1])) == "ch01-02"
    assert tag("roi", np.array([2])) == "roi03"
    assert tag("tp", np.array([99998])) == "tp99999"


def test_tag_strided():
    assert tag("zplane", np.arange(0, 14, 2)) == "zplane01-13-2"
    assert tag("tp", np.array([1, 3, 5, 7])) == "tp00002-00008-2"
    assert tag("tp", np.arange(0, 1000, 10)) == "tp00001-00991-10"


def test_tag_short_non_uniform_lists_every_element():
    assert tag("zplane", np.array([0, 1, 6])) == "zplane01+02+07"
    assert tag("zplane", np.array([2, 0, 1])) == "zplane03+01+02"  # reordered planes
    assert tag("tp", np.array([0, 4, 5, 9])) == "tp00001+00005+00006+00010"


def test_tag_long_non_uniform_has_count_and_fingerprint():
    got = tag("zplane", np.array([0, 1, 2, 3, 9]))
    assert re.fullmatch(r"zplane01-10-n5h[0-9a-f]{6}", got), got
    assert tag("zplane", np.array([0, 1, 2, 3, 9])) == got  # deterministic


def test_non_uniform_tags_never_collide():
    rng = np.random.default_rng(0)
    selections = set()
    # same first and last element, same count: only the inner elements differ
    for i in range(1, 40):  # every 3-element selection 0, i, 40 except the uniform 0, 20, 40
        if i != 20:
            selections.add((0, i, 40))
    for count in (4, 5, 8):
        for _ in range(80):
            inner = tuple(sorted(int(i) for i in rng.choice(np.arange(1, 40), count - 2, replace=False)))
            selections.add((0, *inner, 40))
    assert all(uniform_step(np.array(sel)) is None for sel in selections)
    assert len(selections) > 250
    tags = {}
    for sel in selections:
        t = tag("tp", np.array(sel))
        assert t not in tags, f"{sel} and {tags.get(t)} share the tag {t}"
        tags[t] = sel
    # and no non-uniform tag looks like a plain or strided range with the same ends
    assert "tp00001-00041" not in tags
    assert not any(re.fullmatch(r"tp00001-00041(-\d+)?", t) for t in tags)


def test_roi_folder_and_stem():
    assert roi_folder(None) == ""
    assert roi_folder(0) == "roi01"
    assert roi_folder(11) == "roi12"
    planes, frames = np.array([2]), np.arange(10, 20)
    assert stem(planes=planes, frames=frames, channels=None, suffix="") == "zplane03_tp00011-00020"
    assert stem(planes=planes, frames=frames, channels=np.array([1]), suffix="_s1") == "zplane03_tp00011-00020_ch02_s1"


# --------------------------------------------------------------------------- names from the config


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ""),
        ("", ""),
        ("session1", "_session1"),
        ("_session1", "_session1"),
        ("__a__b_", "_a_b"),
        ("x.tif", "_x"),
        ("x.TIFF", "_x"),
        ("run.zarr", "_run"),
        ("run.nwb", "_run"),
        ("a b", "_a_b"),
        ("a  :b", "_a_b"),
        ("v1.2", "_v1.2"),
        ("_", ""),
    ],
)
def test_sanitize_suffix(value, expected):
    assert sanitize_suffix(value) == expected


@pytest.mark.parametrize("value", ["../x", "a/b", "~x", "a\\b", "..", "x/.."])
def test_sanitize_suffix_rejects_path_parts(value):
    with pytest.raises(UnsafeNameError, match="^output_suffix:"):
        sanitize_suffix(value)


def test_check_output_name():
    assert check_output_name(None) is None
    assert check_output_name("data_raw.bin") == "data_raw.bin"
    for bad in ("../data.bin", "a/data.bin", "~data.bin", "data.raw", "data raw.bin", ".bin", "data.bin.txt"):
        with pytest.raises(UnsafeNameError, match="^output_name:"):
            check_output_name(bad)
