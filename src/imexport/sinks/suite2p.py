"""Suite2p plane folders that suite2p 0.14 and 1.x run on as they are.

Each plane job writes one folder under a hidden temporary name and swaps it into place as
a whole on commit, so an overwrite never mixes files or keys from an older export:

* ``data_raw.bin`` (and ``data_chan2_raw.bin`` for a second colour): the exported raw
  movie, int16 frames in C order. These are suite2p's names for the *raw* movie, which it
  only ever reads: ``keep_movie_raw`` is set, so its registration writes a new
  ``data.bin`` (``data_chan2.bin``) beside them and the export stays byte-identical.
* ``ops.npy``: suite2p 0.14's flat options; ``db.npy`` + ``settings.npy``: suite2p 1.x's
  split of the same (``settings.npy`` holds only top-level values, so suite2p's own
  defaults fill every nested group).
* ``timestamps.npy`` (ScanImage sources): each frame's acquisition time, float64 seconds.

Every path in them is relative to the folder: suite2p 1.x's ``run_plane(db, settings,
db_path=...)`` resolves them from the folder ``db.npy`` is in, and suite2p 0.14 from its
working directory (run it inside the folder), so a moved or copied folder is processed
where it is and never writes into the folder it was copied from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.sinks.base import PlaneTarget
from imexport.sinks.direct import DirectFile

DEFAULT_OUTPUT_NAME = "data_raw.bin"
CHAN2_NAME = "data_chan2_raw.bin"
OPS_NAME = "ops.npy"
DB_NAME = "db.npy"
SETTINGS_NAME = "settings.npy"
TIMESTAMPS_NAME = "timestamps.npy"  # float64 seconds of each frame (ScanImage frameTimestamps_sec)
# the registered movies suite2p writes into the folder: never an exported file's name
REGISTERED_NAMES = ("data.bin", "data_chan2.bin")
MAX_CHANNELS = 2
INT16_MIN = int(np.iinfo(np.int16).min)
INT16_MAX = int(np.iinfo(np.int16).max)

# suite2p reads the frame count under several names depending on version and tool
# (suite2p itself, its GUI, downstream readers); all must agree with the binary.
FRAME_COUNT_KEYS = ("nframes", "num_frames", "n_frames", "num_timepoints", "nt", "T", "timepoints")

# The few suite2p settings a user needs to run suite2p straight on this folder; every
# other setting is left to suite2p's own defaults, which it merges under ours.
SUITE2P_DEFAULTS: dict[str, Any] = {
    "input_format": "binary",  # the movie is already a binary: no tiff conversion
    "do_registration": 1,  # exported frames are raw, so they still need registering
    "nonrigid": True,
    # registration reads raw_file and writes reg_file, a separate data.bin: the export
    # is never overwritten
    "keep_movie_raw": True,
    "tau": 1.0,  # indicator decay (s); 1.0 is suite2p's GCaMP6s-like default
    "diameter": 0,  # 0: let suite2p's sparse detection pick the cell scale
    "functional_chan": 1,  # channel 1 (data_raw.bin) carries the activity signal
    "align_by_chan": 1,  # register on the functional channel
    "look_one_level_down": False,
}
# suite2p 1.x keeps these in settings.npy; every other key of ops goes to db.npy
SETTINGS_KEYS = ("fs", "tau")
# suite2p 0.14 keys that suite2p 1.x moved into settings' nested groups or dropped; the
# nested groups come from suite2p 1.x's own defaults
OPS_ONLY_KEYS = ("do_registration", "nonrigid", "diameter", "align_by_chan")


def to_int16(frames: np.ndarray) -> np.ndarray:
    """Convert frames to int16 the way suite2p binaries expect.

    * int16: unchanged.
    * floating point: rounded half to even (``np.rint``), clipped to [-32768, 32767];
      NaN becomes 0 because casting NaN to an integer is undefined.
    * other integer (and bool) types: clipped to [-32768, 32767].
    """
    dtype = frames.dtype
    if dtype == np.int16:
        return frames
    if np.issubdtype(dtype, np.floating):
        # float16 cannot hold 32767 exactly (it would round up and overflow): widen it
        rounded = np.rint(frames, dtype=np.result_type(dtype, np.float32))
        np.clip(rounded, INT16_MIN, INT16_MAX, out=rounded)
        return np.nan_to_num(rounded, copy=False, nan=0.0).astype(np.int16)
    if np.can_cast(dtype, np.int16):
        return frames.astype(np.int16)
    if np.issubdtype(dtype, np.unsignedinteger):
        # unsigned values are never below the int16 minimum, and a negative bound
        # cannot be expressed in the unsigned dtype
        return np.minimum(frames, np.array(INT16_MAX, dtype)).astype(np.int16)
    if np.issubdtype(dtype, np.signedinteger):
        low, high = np.array(INT16_MIN, dtype), np.array(INT16_MAX, dtype)
        return np.clip(frames, low, high).astype(np.int16)
    raise TypeError(f"cannot write {dtype} frames to a suite2p binary")


def validated_output_name(options: dict[str, Any]) -> str:
    name = options.get("output_name") or DEFAULT_OUTPUT_NAME
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"suite2p output_name must be a bare file name, got {name!r}")
    taken = (CHAN2_NAME, OPS_NAME, DB_NAME, SETTINGS_NAME, TIMESTAMPS_NAME, *REGISTERED_NAMES)
    if name in taken:
        raise ValueError(
            f"suite2p output_name {name!r} collides with a file of the plane folder ({', '.join(taken)}): choose another name"
        )
    return name


def binary_names(options: dict[str, Any], n_channels: int) -> list[str]:
    if n_channels > MAX_CHANNELS:
        raise ValueError(f"suite2p binaries hold at most {MAX_CHANNELS} colour channels, got {n_channels}")
    return [validated_output_name(options), CHAN2_NAME][:n_channels]


def source_parent_dirs(source_files: list[str]) -> list[str]:
    return sorted({str(Path(path).parent) for path in source_files})


def build_ops(target: PlaneTarget, binary_names: list[str], n_written: int) -> dict[str, Any]:
    """suite2p 0.14's ops for the committed folder; every path relative to the folder."""
    metadata = target.metadata
    ly, lx = target.frame_shape
    fs = metadata["fs"]
    source_files = [str(path) for path in metadata["source_files"]]
    ops: dict[str, Any] = dict(SUITE2P_DEFAULTS)
    ops.update({key: n_written for key in FRAME_COUNT_KEYS})
    ops.update(
        Ly=int(ly),
        Lx=int(lx),
        nchannels=len(binary_names),
        # every exported plane of the recording; each folder is still run on its own
        nplanes=int(target.n_planes_out),
        iplane=int(target.z_index),
        # suite2p's fs is the rate of one plane, i.e. the volume rate; it needs a
        # number, so the flag keeps "unknown" apart from a real 1 Hz
        fs=1.0 if fs is None else float(fs),
        fs_unknown=fs is None,
        # suite2p's dx/dy are a plane's offsets in its combined view, not pixel sizes
        imexport_pixel_size_um={"x": metadata["dx"], "y": metadata["dy"], "z": metadata["dz"]},
        plane=metadata["plane"],
        raw_file=binary_names[0],
        reg_file=REGISTERED_NAMES[0],
        save_path0=".",
        save_path=".",
        fast_disk=".",
        ops_path=OPS_NAME,
        # suite2p looks for bad_frames.npy / zstack.npy next to the first source
        data_path=source_parent_dirs(source_files) or ["."],
        filelist=source_files,
        tiff_list=source_files,
        imexport=dict(metadata),
    )
    if metadata.get("frames_per_file") is not None:
        # suite2p splits its per-file outputs by these counts (of the exported frames)
        ops["frames_per_file"] = list(metadata["frames_per_file"])
    if len(binary_names) == MAX_CHANNELS:
        ops.update(raw_file_chan2=binary_names[1], reg_file_chan2=REGISTERED_NAMES[1])
    return ops


def split_db_settings(ops: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """suite2p 1.x's ``db`` (files and shapes) and ``settings`` from the 0.14 ops."""
    settings = {key: ops[key] for key in SETTINGS_KEYS}
    db = {key: value for key, value in ops.items() if key not in (*SETTINGS_KEYS, *OPS_ONLY_KEYS, "ops_path")}
    db.update(db_path=DB_NAME, settings_path=SETTINGS_NAME, save_folder="", file_list=ops["filelist"])
    return db, settings


class Suite2pPlaneSink:
    """Streams one plane into a suite2p plane folder (``target.path``).

    Channel 0 goes to ``data_raw.bin`` (or ``options["output_name"]``), channel 1 to
    ``data_chan2_raw.bin``, each as int16 frames in C order (frames x Ly x Lx); see
    :func:`to_int16` for how other dtypes are converted. ``ops.npy``, ``db.npy`` and
    ``settings.npy`` are written on commit.
    """

    def __init__(self, target: PlaneTarget):
        self.target = target
        self.final = Path(target.path).absolute()
        self.names = binary_names(target.options, target.n_channels)
        self.temporary = temporary_sibling(self.final)
        remove_path(self.temporary)  # leftover of a killed job that had this pid
        self.temporary.mkdir(parents=True)
        # nothing is ever patched in a binary: no head kept back, every block goes out direct
        self.files = [DirectFile(self.temporary / name, head_bytes=0) for name in self.names]
        self.n_written = 0

    def write(self, chunk: np.ndarray) -> None:
        self._check_chunk(chunk)
        for channel, handle in enumerate(self.files):
            handle.write(np.ascontiguousarray(to_int16(chunk[:, channel])).data)
        self.n_written += chunk.shape[0]

    def commit(self) -> None:
        if self.n_written != self.target.n_frames:
            self.abort()
            raise ValueError(f"{self.final}: {self.n_written} frames written, {self.target.n_frames} announced")
        self._close_files()
        ops = build_ops(self.target, self.names, self.n_written)
        db, settings = split_db_settings(ops)
        for name, values in ((OPS_NAME, ops), (DB_NAME, db), (SETTINGS_NAME, settings)):
            np.save(self.temporary / name, np.array(values, dtype=object), allow_pickle=True)
        timing = self.target.metadata.get("timing")
        if timing:
            np.save(self.temporary / TIMESTAMPS_NAME, np.asarray(timing["timestamps_sec"], dtype=np.float64))
        commit_path(self.temporary, self.final)

    def abort(self) -> None:
        for handle in self.files:
            handle.abort()
        remove_path(self.temporary)

    def _check_chunk(self, chunk: np.ndarray) -> None:
        expected = (self.target.n_channels, *self.target.frame_shape)
        if chunk.ndim != 4 or tuple(chunk.shape[1:]) != expected:
            raise ValueError(f"{self.final}: chunk of shape {chunk.shape} does not match (n, {', '.join(map(str, expected))})")

    def _close_files(self) -> None:
        for handle in self.files:
            handle.close()


def read_suite2p_plane(folder: Path | str) -> tuple[list[np.memmap], dict[str, Any]]:
    """Memory-map the binaries of a plane folder as ``(T, Ly, Lx)`` int16, one per channel.

    The binaries are looked up by file name inside ``folder``, whatever directory the
    paths in ops (relative here, absolute once suite2p has rewritten ops.npy) point to.
    """
    folder = Path(folder)
    ops = np.load(folder / OPS_NAME, allow_pickle=True).item()
    shape = (ops["nframes"], ops["Ly"], ops["Lx"])
    keys = ["raw_file", "raw_file_chan2"][: ops["nchannels"]]
    movies = [np.memmap(folder / Path(ops[key]).name, dtype=np.int16, mode="r", shape=shape) for key in keys]
    return movies, ops
