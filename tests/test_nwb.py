"""NWB output (``format: nwb``) through the API and the workflow, read back with pynwb and h5py.

Expected values come from elsewhere than the writer: pixels from the TIFF export of the
same acquisition, frame times and the start time from the raw page descriptions parsed
here (``frameNumbers``, ``frameTimestamps_sec``, ``epoch``), physical sizes from the
synthetic acquisition's parameters. nwbinspector, with the DANDI archive's configuration,
must find nothing critical and no best-practice violation.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import h5py
import numpy as np
import pytest
import tifffile
import yaml
from conftest import verify_cli
from nwbinspector import Importance, inspect_nwbfile, load_config
from pynwb import NWBHDF5IO

from imexport.api import imwrite
from imexport.axial import mean_frame_indices
from imexport.config import ConfigError
from imexport.demo import demo_spec
from imexport.formats import FORMATS
from imexport.qc import written_means
from imexport.verify import verify
from imexport.workflow_plan import plan_for_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
SESSION = {
    "session_description": "two-photon imaging of layer 2/3, test session",
    "experiment_description": "synthetic recording",
    "experimenter": ["Doe, Jane"],
    "institution": "Test University",
    "lab": "Imaging Lab",
    "keywords": ["two-photon", "light beads microscopy"],
    "timezone": "Europe/Berlin",
    "subject": {"subject_id": "mouse-01", "species": "Mus musculus", "sex": "F", "age": "P90D", "description": "wild type"},
    "indicator": "GCaMP6s",
    "excitation_lambda": 920.0,
    "location": "VISp",
}
_FIELD = {key: re.compile(rf"^{key}\s*=\s*([^\n]+)", re.M) for key in ("frameNumbers", "frameTimestamps_sec")}
_EPOCH = re.compile(r"^epoch\s*=\s*\[([^\]]+)\]", re.M)


def header_times(raw: list[Path]) -> tuple[np.ndarray, dt.datetime]:
    """Each logged frame's ``frameTimestamps_sec`` (its first page's) and the naive ``epoch``,
    parsed from every page's description."""
    times: dict[int, float] = {}
    epoch = None
    for path in sorted(raw):
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                text = page.tags["ImageDescription"].value
                number = int(_FIELD["frameNumbers"].search(text).group(1))
                times.setdefault(number, float(_FIELD["frameTimestamps_sec"].search(text).group(1)))
                epoch = epoch or [float(v) for v in _EPOCH.search(text).group(1).split()]
    start = dt.datetime(*(int(v) for v in epoch[:5])) + dt.timedelta(seconds=epoch[5])
    return np.array([times[n] for n in sorted(times)]), start


def dandi_problems(path: Path) -> list[str]:
    """nwbinspector's critical issues and best-practice violations under the DANDI configuration."""
    messages = inspect_nwbfile(nwbfile_path=path, config=load_config("dandi"))
    serious = (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    return [f"{m.check_function_name}: {m.message}" for m in messages if m is not None and m.importance in serious]


def series_times(series) -> np.ndarray:
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:])
    return series.starting_time + np.arange(series.data.shape[0]) / series.rate


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- API, two colours


def test_api_two_colour_recording_reads_back_with_pynwb(tmp_path, make_acquisition):
    # 10 Hz: the header's times are regular to the µs it logs, so they become starting_time + rate
    spec, raw = make_acquisition(
        tmp_path, n_colors=2, n_planes=2, n_frames=40, roi_heights=[16, 14], width=14, frames_per_file=15, frame_rate=10.0
    )
    session = {**SESSION, "emission_lambda": [510.0, 580.0]}
    nwb_out = imwrite(raw[0].parent, tmp_path / "nwb", ext=".nwb", show_progress=False, **session)
    imwrite(raw[0].parent, tmp_path / "tiff", ext=".tiff", show_progress=False)
    path = only(nwb_out, "*.nwb")
    assert path.name == "zplane01-02_tp00001-00040_ch01-02.nwb"
    times, epoch = header_times(raw)
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert nwbfile.session_start_time == epoch.replace(tzinfo=ZoneInfo("Europe/Berlin"))
        assert nwbfile.subject.subject_id == "mouse-01" and nwbfile.subject.species == "Mus musculus"
        assert set(nwbfile.acquisition) == {f"TwoPhotonSeriesPlane{z:02d}Ch{c:02d}" for z in (1, 2) for c in (1, 2)}
        for z in (1, 2):
            tiff = tifffile.imread(only(tmp_path / "tiff", f"zplane{z:02d}_*.tif"))  # (T, C, Y, X)
            for c in (1, 2):
                series = nwbfile.acquisition[f"TwoPhotonSeriesPlane{z:02d}Ch{c:02d}"]
                np.testing.assert_array_equal(np.asarray(series.data[:]).transpose(0, 2, 1), tiff[:, c - 1])
                assert series.timestamps is None and series.rate == pytest.approx(10.0)
                np.testing.assert_allclose(series_times(series), times, rtol=0, atol=1e-9)
                plane = series.imaging_plane
                assert plane.optical_channel[0].emission_lambda == [510.0, 580.0][c - 1]
                assert plane.excitation_lambda == 920.0 and plane.indicator == "GCaMP6s"
                pixel = spec.objective_resolution * spec.deg_per_pixel  # µm
                np.testing.assert_allclose(plane.grid_spacing[:], [pixel, pixel])
        history = json.loads(nwbfile.scratch["processing_history"].data)
        assert history and history[-1]["step"] == "imexport"
        metadata = json.loads(nwbfile.scratch["imexport_metadata"].data)
        assert metadata["timing"]["acquisition_start"] == epoch.isoformat(timespec="microseconds")
        assert [p["plane"] for p in json.loads(nwbfile.scratch["imexport_planes"].data)] == [1, 2]
    assert dandi_problems(path) == []
    with h5py.File(path, "r") as file:  # h5py alone: contiguous, uncompressed (frame, x, y)
        data = file["acquisition/TwoPhotonSeriesPlane02Ch01/data"]
        assert data.chunks is None and data.compression is None and data.shape == (40, 14 * 2, 16)
    assert verify(nwb_out) == []


def test_api_piezo_stack_series_carry_their_own_planes_times(tmp_path, make_acquisition):
    # a piezo stack logs its slices one after the other: each plane's series has its pages' times
    S, F = 3, 1
    spec, raw = make_acquisition(
        tmp_path,
        n_planes=1,
        piezo_slices=S,
        flyback_frames=F,
        n_frames=40,
        roi_heights=[16],
        width=14,
        fly_to_lines=0,
        frames_per_file=50,
        frame_rate=30.0,
    )
    out = imwrite(raw[0].parent, tmp_path / "nwb", ext=".nwb", show_progress=False, **SESSION)
    imwrite(raw[0].parent, tmp_path / "tiff", ext=".tiff", show_progress=False)
    logged, _ = header_times(raw)  # one time per logged frame: volume v, slice s is frame v * (S + F) + s
    with NWBHDF5IO(str(only(out, "*.nwb")), "r") as io:
        nwbfile = io.read()
        for s in range(S):
            series = nwbfile.acquisition[f"TwoPhotonSeriesPlane{s + 1:02d}"]
            np.testing.assert_array_equal(series.timestamps[:], logged[np.arange(40) * (S + F) + s])
            tiff = tifffile.imread(only(tmp_path / "tiff", f"zplane{s + 1:02d}_*.tif"))
            np.testing.assert_array_equal(np.asarray(series.data[:]).transpose(0, 2, 1), tiff)
            assert series.imaging_plane.origin_coords[:].tolist() == [0.0, 0.0, s * spec.z_step]
    assert dandi_problems(only(out, "*.nwb")) == []


def test_api_array_without_epoch_takes_the_configured_start_and_the_frame_rate(tmp_path):
    movie = np.random.default_rng(0).integers(0, 4000, size=(40, 12, 10), dtype=np.int16)
    options = dict(ext=".nwb", dim_order="TYX", metadata={"fs": 5.0}, fix_phase=False, show_progress=False)
    with pytest.raises(ConfigError, match="no acquisition start .* set the config key nwb.session_start_time"):
        imwrite(movie, tmp_path / "no_start", **options, **SESSION)
    assert not list((tmp_path / "no_start").glob("*.nwb"))
    out = imwrite(movie, tmp_path / "nwb", **options, **SESSION, session_start_time="2024-03-01T10:00:00")
    with NWBHDF5IO(str(only(out, "*.nwb")), "r") as io:
        nwbfile = io.read()
        assert nwbfile.session_start_time == dt.datetime(2024, 3, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))
        series = nwbfile.acquisition["TwoPhotonSeriesPlane01"]
        assert (series.starting_time, series.rate) == (0.0, 5.0)
        np.testing.assert_array_equal(np.asarray(series.data[:]).transpose(0, 2, 1), movie)
    assert dandi_problems(only(out, "*.nwb")) == []


def test_api_volume_series_per_colour(tmp_path, make_acquisition):
    # nwb.series: volume: one (frame, x, y, z) series per colour, the volumes' times, plane spacing as z spacing
    spec, raw = make_acquisition(
        tmp_path, n_colors=2, n_planes=3, n_frames=40, roi_heights=[16, 14], width=14, frames_per_file=15, frame_rate=10.0
    )
    config = tmp_path / "config.yaml"
    options = dict(show_progress=False, metadata={"dz": 12.0}, config_out=config)
    out = imwrite(raw[0].parent, tmp_path / "nwb", ext=".nwb", nwb_series="volume", **options, **SESSION)
    imwrite(raw[0].parent, tmp_path / "tiff", ext=".tiff", show_progress=False)
    times, epoch = header_times(raw)
    path = only(out, "*.nwb")
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        assert nwbfile.session_start_time == epoch.replace(tzinfo=ZoneInfo("Europe/Berlin"))
        assert list(nwbfile.acquisition) == ["TwoPhotonSeriesCh01", "TwoPhotonSeriesCh02"]
        for c in (1, 2):
            series = nwbfile.acquisition[f"TwoPhotonSeriesCh{c:02d}"]
            assert series.data.shape == (40, 28, 16, 3)
            for z in range(3):
                tiff = tifffile.imread(only(tmp_path / "tiff", f"zplane{z + 1:02d}_*.tif"))  # (T, C, Y, X)
                np.testing.assert_array_equal(np.asarray(series.data[:, :, :, z]).transpose(0, 2, 1), tiff[:, c - 1])
            np.testing.assert_allclose(series_times(series), times, rtol=0, atol=1e-9)
            pixel = spec.objective_resolution * spec.deg_per_pixel
            np.testing.assert_allclose(series.imaging_plane.grid_spacing[:], [pixel, pixel, 12.0])
        assert json.loads(nwbfile.scratch["imexport_metadata"].data)["timing"]["acquisition_start"] == epoch.isoformat(
            timespec="microseconds"
        )
        assert json.loads(nwbfile.scratch["processing_history"].data)[-1]["step"] == "imexport"
    assert not list((out / ".imexport").rglob("*.nwb"))  # the plane series' file is gone
    assert dandi_problems(path) == []
    assert verify(out) == []
    # what QC reads back: plane by plane, as from the TIFFs
    _, plan = plan_for_config(yaml.safe_load(config.read_text()))
    export = next(e for e in plan.exports if e.format == "nwb")
    for z in range(3):
        tiff = tifffile.imread(only(tmp_path / "tiff", f"zplane{z + 1:02d}_*.tif"))
        np.testing.assert_array_equal(FORMATS["nwb"].read_frames(export, z, np.array([0, 5, 39])), tiff[[0, 5, 39], 0])


def test_api_gzip_compressed_copy_reads_back_the_same(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, n_planes=2, n_frames=40, roi_heights=[16, 14], width=14, frames_per_file=15)
    plain = only(imwrite(raw[0].parent, tmp_path / "plain", ext=".nwb", show_progress=False, **SESSION), "*.nwb")
    # a block of 1 frame: the copy goes block by block
    out = imwrite(
        raw[0].parent,
        tmp_path / "gzip",
        ext=".nwb",
        show_progress=False,
        nwb_compression="gzip",
        target_chunk_mb=0.001,
        **SESSION,
    )
    path = only(out, "*.nwb")
    times, _ = header_times(raw)
    with NWBHDF5IO(str(path), "r") as io, NWBHDF5IO(str(plain), "r") as plain_io:
        nwbfile, reference = io.read(), plain_io.read()
        assert list(nwbfile.acquisition) == list(reference.acquisition) == ["TwoPhotonSeriesPlane01", "TwoPhotonSeriesPlane02"]
        for name, series in nwbfile.acquisition.items():
            assert series.data.compression == "gzip" and series.data.compression_opts == 4
            assert series.data.chunks == (1, *series.data.shape[1:])
            np.testing.assert_array_equal(series.data[:], reference.acquisition[name].data[:])
            np.testing.assert_array_equal(series.timestamps[:], times)
            assert series.imaging_plane.name == f"ImagingPlane{name[len('TwoPhotonSeries') :]}"
        assert nwbfile.session_start_time == reference.session_start_time
        assert json.loads(nwbfile.scratch["processing_history"].data)[-1]["step"] == "imexport"
    assert path.stat().st_size < plain.stat().st_size
    assert not list((out / ".imexport").rglob("*.nwb"))  # the uncompressed store is gone
    assert dandi_problems(path) == []
    assert verify(out) == []


def test_api_missing_session_keys_stop_before_anything_is_written(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, roi_heights=[16, 14])
    with pytest.raises(ConfigError) as error:
        imwrite(raw[0].parent, tmp_path / "out", ext=".nwb", show_progress=False, indicator="GCaMP6s", subject={"sex": "F"})
    for key in ("nwb.session_description", "nwb.subject.subject_id", "nwb.subject.species", "nwb.excitation_lambda"):
        assert key in str(error.value)
    assert "nwb.subject.age or nwb.subject.date_of_birth" in str(error.value)
    assert "nwb.indicator" not in str(error.value) and "nwb.subject.sex" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_api_one_emission_wavelength_per_exported_colour(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, roi_heights=[16, 14])  # one colour
    with pytest.raises(ConfigError, match=r"nwb.emission_lambda: 2 wavelengths for 1 exported colour"):
        imwrite(raw[0].parent, tmp_path / "out", ext=".nwb", show_progress=False, **SESSION, emission_lambda=[510.0, 580.0])
    assert not list((tmp_path / "out").glob("*.nwb"))


def test_api_unknown_time_zone_is_a_config_error(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, roi_heights=[16, 14])
    with pytest.raises(ConfigError, match="nwb.timezone: 'Mars/Olympus'"):
        imwrite(raw[0].parent, tmp_path / "out", ext=".nwb", show_progress=False, **{**SESSION, "timezone": "Mars/Olympus"})
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- workflow, the LBM demo


def test_workflow_multi_roi_lbm_demo_one_file_per_roi(tmp_path, run_snakemake, monkeypatch):
    # the demo acquisition (6 LBM planes, 2 ROIs), long enough that time is the longest axis
    # (nwbinspector's data orientation check); every ROI in its own file; QC reads them back
    config = {
        "format": ["tiff", "nwb"],
        "roi_mode": "separate",
        "demo": {"n_frames": 70},
        "nwb": SESSION,
        "qc": {"enabled": True, "max_frames": 5},
    }
    run_snakemake(tmp_path, config)
    monkeypatch.chdir(tmp_path)  # the run's relative paths
    defaults = yaml.safe_load(DEFAULT_CONFIG.read_text())
    resolved = {**defaults, **config, "demo": {**defaults["demo"], **config["demo"]}}  # as snakemake merges them
    spec = demo_spec(resolved)
    out = tmp_path / resolved["outdir"]
    raw = sorted((tmp_path / resolved["demo"]["folder"]).glob("*.tif"))
    times, epoch = header_times(raw)
    pixel = spec.objective_resolution * spec.deg_per_pixel
    _, plan = plan_for_config(resolved)
    for roi in (1, 2):
        path = only(out / f"roi{roi:02d}", "*.nwb")
        with NWBHDF5IO(str(path), "r") as io:
            nwbfile = io.read()
            assert nwbfile.session_start_time == epoch.replace(tzinfo=ZoneInfo("Europe/Berlin"))
            assert list(nwbfile.acquisition) == [f"TwoPhotonSeriesPlane{z:02d}" for z in range(1, 7)]
            for z in range(1, 7):
                series = nwbfile.acquisition[f"TwoPhotonSeriesPlane{z:02d}"]
                tiff = tifffile.imread(only(out / f"roi{roi:02d}", f"zplane{z:02d}_*.tif"))
                np.testing.assert_array_equal(np.asarray(series.data[:]).transpose(0, 2, 1), tiff)
                # the header logs µs: 9.6 Hz is not regular to 1 ns, so every frame's time is stored
                np.testing.assert_array_equal(series.timestamps[:], times)
                plane = series.imaging_plane
                assert plane.origin_coords[:].tolist() == [0.0, 0.0, (z - 1) * 16.0]  # the demo's dz
                np.testing.assert_allclose(plane.grid_spacing[:], [pixel, pixel])
                assert plane.location == "VISp"
            # the scan-phase records the run estimated (in its work folder), one per plane
            export = next(e for e in plan.exports if e.format == "nwb" and e.roi == roi - 1)
            records = [json.loads(Path(p).read_text()) for p in export.phase_records]
            assert json.loads(nwbfile.scratch["imexport_metadata"].data)["scan_phase"] == records
            assert [r["plane"] for r in records] == list(range(1, 7)) and all(r["applied"] < 0 for r in records)
        assert dandi_problems(path) == []
    result = verify_cli(out)
    assert result.returncode == 0, result.stdout + result.stderr
    # the QC step's read-back of NWB equals its read-back of the TIFFs
    positions = mean_frame_indices(len(plan.frames), 5)
    for roi in (0, 1):
        nwb_means, tiff_means = written_means(plan, "nwb", roi, positions), written_means(plan, "tiff", roi, positions)
        assert [m.plane for m in nwb_means] == [m.plane for m in tiff_means] == list(range(6))
        for got, want in zip(nwb_means, tiff_means):
            np.testing.assert_array_equal(got.image, want.image)


def test_shipped_nwb_config_plans_the_demo_with_nwb(tmp_path, monkeypatch):
    # config/nwb.yaml on top of the default config: the demo plans an NWB export, no key missing
    monkeypatch.chdir(tmp_path)
    defaults = yaml.safe_load(DEFAULT_CONFIG.read_text())
    _, plan = plan_for_config({**defaults, **yaml.safe_load((DEFAULT_CONFIG.parent / "nwb.yaml").read_text())})
    assert {e.format for e in plan.exports} == {"nwb", "tiff"}
    assert next(e for e in plan.exports if e.format == "nwb").options["subject"]["subject_id"] == "demo-mouse"


def test_workflow_missing_session_keys_stop_before_any_job(tmp_path, run_snakemake):
    result = run_snakemake(tmp_path, {"format": "nwb", "nwb": {"indicator": "GCaMP6s"}}, expect_ok=False)
    assert "nwb.session_description" in result.output and "nwb.subject.subject_id" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()
