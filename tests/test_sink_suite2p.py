from pathlib import Path

import numpy as np
import pytest

from imexport.atomic import TEMP_MARKER
from imexport.sinks.base import PlaneTarget
from imexport.sinks.suite2p import FRAME_COUNT_KEYS, Suite2pPlaneSink, read_suite2p_plane

SHAPE = (6, 5)


def make_target(folder: Path, n_frames: int, n_channels: int = 1, dtype=np.int16, **options):
    source_files = [
        "/data/session1/rec_00001.tif",
        "/data/session1/rec_00002.tif",
        "/data/session0/rec_00001.tif",
    ]
    metadata = {
        "fs": 30.0,
        "dx": 1.5,
        "dy": 1.25,
        "dz": None,
        "plane": 3,
        "z_index": 2,
        "n_frames": n_frames,
        "frames": [[0, n_frames, 1]],
        "channels": list(range(1, n_channels + 1)),
        "roi": None,
        "source_files": source_files,
        "experimenter": {"name": "A. B.", "tags": ["x", 1]},
    }
    return PlaneTarget(
        path=folder / "zplane03_tp00001-00010",
        plane=2,
        z_index=2,
        n_planes_out=4,
        n_frames=n_frames,
        n_channels=n_channels,
        frame_shape=SHAPE,
        dtype=np.dtype(dtype),
        metadata=metadata,
        options=options,
    )


def movie(n_frames: int, n_channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32768, (n_frames, n_channels, *SHAPE), dtype=np.int16)


def export(target, data: np.ndarray, splits=(3, 4)) -> None:
    """Writes ``data`` through a sink in the chunks ``splits`` cuts it into (none: at once), and commits."""
    sink = Suite2pPlaneSink(target)
    for part in np.split(data, list(splits)):
        sink.write(part)
    sink.commit()


def load_ops(folder: Path) -> dict:
    return np.load(folder / "ops.npy", allow_pickle=True).item()


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if TEMP_MARKER in path.name]


def test_int16_chunks_read_back_bit_exact(tmp_path):
    target = make_target(tmp_path, 10)
    data = movie(10)
    export(target, data)

    ops = load_ops(target.path)
    raw = target.path / "data_raw.bin"
    shape = (ops["nframes"], ops["Ly"], ops["Lx"])
    assert np.array_equal(np.memmap(raw, dtype=np.int16, mode="r", shape=shape), data[:, 0])
    assert np.array_equal(np.fromfile(raw, dtype=np.int16).reshape(shape), data[:, 0])
    assert (ops["Ly"], ops["Lx"]) == SHAPE
    assert raw.stat().st_size == ops["nframes"] * ops["Ly"] * ops["Lx"] * 2
    assert not (target.path / "data_chan2_raw.bin").exists()
    assert temporaries(tmp_path) == []


def test_every_frame_count_alias_equals_written_frames(tmp_path):
    target = make_target(tmp_path, 10)
    export(target, movie(10))
    ops = load_ops(target.path)
    for key in ("nframes", "num_frames", "n_frames", "num_timepoints", "nt", "T", "timepoints"):
        assert ops[key] == 10
    assert set(FRAME_COUNT_KEYS) <= set(ops)


def load_npy(path: Path) -> dict:
    return np.load(path, allow_pickle=True).item()


def test_ops_paths_and_metadata(tmp_path):
    target = make_target(tmp_path, 10)
    export(target, movie(10))
    ops = load_ops(target.path)

    # paths relative to the plane folder, and the registered movie is not the export
    assert (ops["raw_file"], ops["reg_file"]) == ("data_raw.bin", "data.bin")
    assert ops["keep_movie_raw"] is True
    assert ops["save_path0"] == ops["save_path"] == ops["fast_disk"] == "."
    assert ops["ops_path"] == "ops.npy"
    assert not any(str(tmp_path) in repr(value) for value in ops.values() if isinstance(value, str))
    assert TEMP_MARKER not in repr(ops)
    assert ops["data_path"] == ["/data/session0", "/data/session1"]
    assert ops["tiff_list"] == ops["filelist"] == target.metadata["source_files"]
    assert ops["nchannels"] == 1 and ops["nplanes"] == 4 and ops["iplane"] == 2
    assert ops["functional_chan"] == 1 and ops["align_by_chan"] == 1
    assert ops["fs"] == 30.0 and ops["fs_unknown"] is False
    # suite2p's dx/dy are plane offsets in its combined view: the pixel size has its own key
    assert not {"dx", "dy", "dz", "umPerPixX", "umPerPixY", "umPerPixZ"} & set(ops)
    assert ops["imexport_pixel_size_um"] == {"x": 1.5, "y": 1.25, "z": None}
    assert ops["plane"] == 3
    assert ops["input_format"] == "binary" and ops["do_registration"] == 1
    assert ops["imexport"] == target.metadata
    assert "raw_file_chan2" not in ops


def test_db_and_settings_for_suite2p_1x(tmp_path):
    target = make_target(tmp_path, 10)
    export(target, movie(10))
    db = load_npy(target.path / "db.npy")
    settings = load_npy(target.path / "settings.npy")

    assert settings == {"fs": 30.0, "tau": 1.0}
    assert (db["raw_file"], db["reg_file"]) == ("data_raw.bin", "data.bin")
    assert (db["db_path"], db["settings_path"]) == ("db.npy", "settings.npy")
    assert db["keep_movie_raw"] is True and db["input_format"] == "binary"
    assert (db["nframes"], db["Ly"], db["Lx"], db["nchannels"]) == (10, *SHAPE, 1)
    assert db["nplanes"] == 4 and db["iplane"] == 2 and db["functional_chan"] == 1
    assert db["file_list"] == target.metadata["source_files"]
    assert db["data_path"] == ["/data/session0", "/data/session1"]
    # suite2p 1.x reads these from settings' nested groups, never from db
    assert not {"fs", "tau", "do_registration", "nonrigid", "diameter", "dx", "dy"} & set(db)


def test_unknown_fs_is_flagged(tmp_path):
    target = make_target(tmp_path, 2)
    target.metadata["fs"] = None
    export(target, movie(2), splits=())
    ops = load_ops(target.path)
    assert ops["fs"] == 1.0 and ops["fs_unknown"] is True


def test_output_name_option(tmp_path):
    target = make_target(tmp_path, 4, output_name="movie.bin")
    data = movie(4)
    export(target, data, splits=())
    ops = load_ops(target.path)
    assert ops["raw_file"] == "movie.bin"
    assert sorted(p.name for p in target.path.iterdir()) == ["db.npy", "movie.bin", "ops.npy", "settings.npy"]
    movies, _ = read_suite2p_plane(target.path)
    assert np.array_equal(movies[0], data[:, 0])


def test_output_name_must_be_bare(tmp_path):
    with pytest.raises(ValueError, match="bare file name"):
        Suite2pPlaneSink(make_target(tmp_path, 4, output_name="sub/movie.bin"))


@pytest.mark.parametrize("name", ["data.bin", "data_chan2.bin", "data_chan2_raw.bin", "db.npy"])
def test_output_name_never_a_file_suite2p_writes(tmp_path, name):
    with pytest.raises(ValueError, match=f"output_name '{name}' collides"):
        Suite2pPlaneSink(make_target(tmp_path, 4, output_name=name))


def expected_int16(values: np.ndarray) -> np.ndarray:
    """Independent reference: exact rounding in Python floats, clipping by comparison."""

    def convert(value):
        rounded = round(float(value)) if np.issubdtype(values.dtype, np.floating) else int(value)
        return min(max(rounded, -32768), 32767)

    return np.array([convert(v) for v in values.ravel()], dtype=np.int16).reshape(values.shape)


@pytest.mark.parametrize(
    "dtype, special",
    [
        (np.uint16, [0, 1, 32766, 32767, 32768, 40000, 65535]),
        (np.int32, [-100000, -32769, -32768, 32767, 32768, 100000, 0]),
        (np.float32, [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 32766.5, 32767.4, 32767.5, -32768.5, -32769.0, 1e6, -1e6, 3.49, -3.51]),
        (np.float64, [0.5, 1.5, -2.5, 32767.5, -32768.5, 1e12, -1e12]),
    ],
)
def test_non_int16_inputs_are_rounded_and_clipped(tmp_path, dtype, special):
    n_values = 4 * SHAPE[0] * SHAPE[1]
    values = np.resize(np.array(special, dtype=dtype), n_values)
    data = values.reshape(4, 1, *SHAPE)
    target = make_target(tmp_path, 4, dtype=dtype)
    export(target, data, splits=(1,))

    movies, _ = read_suite2p_plane(target.path)
    assert movies[0].dtype == np.int16
    assert np.array_equal(movies[0], expected_int16(data[:, 0]))


def test_float16_limits_and_nan(tmp_path):
    values = np.array([np.nan, np.inf, -np.inf, 32767, 32000, -32768, 65504, -0.5, 2.5], dtype=np.float16)
    data = np.resize(values, 2 * SHAPE[0] * SHAPE[1]).reshape(2, 1, *SHAPE)
    target = make_target(tmp_path, 2, dtype=np.float16)
    export(target, data, splits=())
    expected = np.resize(
        np.array([0, 32767, -32768, 32767, 32000, -32768, 32767, 0, 2], dtype=np.int16),
        data.size,
    ).reshape(2, *SHAPE)
    assert np.array_equal(read_suite2p_plane(target.path)[0][0], expected)


def test_two_channels_go_to_chan2_binary(tmp_path):
    target = make_target(tmp_path, 7, n_channels=2)
    data = movie(7, n_channels=2)
    export(target, data, splits=(2, 5))

    ops = load_ops(target.path)
    assert ops["nchannels"] == 2
    assert (ops["raw_file_chan2"], ops["reg_file_chan2"]) == ("data_chan2_raw.bin", "data_chan2.bin")
    db = load_npy(target.path / "db.npy")
    assert (db["raw_file_chan2"], db["reg_file_chan2"]) == ("data_chan2_raw.bin", "data_chan2.bin")
    shape = (ops["nframes"], ops["Ly"], ops["Lx"])
    chan2 = np.fromfile(target.path / "data_chan2_raw.bin", dtype=np.int16).reshape(shape)
    assert np.array_equal(chan2, data[:, 1])
    movies, read_ops = read_suite2p_plane(target.path)
    assert len(movies) == 2 and read_ops["nframes"] == 7
    assert np.array_equal(movies[0], data[:, 0]) and np.array_equal(movies[1], data[:, 1])


def test_three_channels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at most 2 colour channels.*3"):
        Suite2pPlaneSink(make_target(tmp_path, 4, n_channels=3))
    assert list(tmp_path.iterdir()) == []


def write_old_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "stale.txt").write_text("old")
    (folder / "data_raw.bin").write_bytes(b"\x01\x02" * 1000)
    np.save(folder / "ops.npy", {"nframes": 99, "old_key": 1}, allow_pickle=True)


def test_overwrite_replaces_the_whole_folder(tmp_path):
    target = make_target(tmp_path, 5)
    write_old_folder(target.path)
    data = movie(5)
    export(target, data, splits=())

    assert sorted(p.name for p in target.path.iterdir()) == ["data_raw.bin", "db.npy", "ops.npy", "settings.npy"]
    ops = load_ops(target.path)
    assert "old_key" not in ops and ops["nframes"] == 5
    assert np.array_equal(read_suite2p_plane(target.path)[0][0], data[:, 0])
    assert temporaries(tmp_path) == []


def test_abort_removes_temporary_and_keeps_old_output(tmp_path):
    target = make_target(tmp_path, 5)
    write_old_folder(target.path)
    sink = Suite2pPlaneSink(target)
    sink.write(movie(3))
    sink.abort()

    assert temporaries(tmp_path) == []
    assert (target.path / "stale.txt").read_text() == "old"
    assert load_ops(target.path) == {"nframes": 99, "old_key": 1}


def test_commit_with_missing_frames_raises_and_keeps_final_path(tmp_path):
    target = make_target(tmp_path, 10)
    write_old_folder(target.path)
    sink = Suite2pPlaneSink(target)
    sink.write(movie(6))
    with pytest.raises(ValueError, match="6 frames written, 10 announced"):
        sink.commit()

    assert load_ops(target.path) == {"nframes": 99, "old_key": 1}
    assert temporaries(tmp_path) == []


def test_commit_with_missing_frames_creates_nothing(tmp_path):
    target = make_target(tmp_path, 10)
    sink = Suite2pPlaneSink(target)
    sink.write(movie(6))
    with pytest.raises(ValueError):
        sink.commit()
    assert list(tmp_path.iterdir()) == []


def test_chunk_of_wrong_shape_is_refused(tmp_path):
    sink = Suite2pPlaneSink(make_target(tmp_path, 4))
    with pytest.raises(ValueError, match="does not match"):
        sink.write(np.zeros((2, 1, 5, 6), dtype=np.int16))
    sink.abort()
