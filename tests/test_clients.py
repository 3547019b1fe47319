"""The field's own programs open imexport's outputs as they are (issue 17).

* suite2p 1.1 (the current release) and 0.14 run their registration (and the rest of
  their pipeline) on a *copy* of an exported plane folder with the calls README gives;
  every exported file keeps its sha256. Their environments are cached by
  tests/install_suite2p.sh (which tests/run.sh calls); without them these tests skip,
  naming the script, except in CI (``CI=true``), where they fail.
* TIFF: the default plane TIFF is classic TIFF with ImageJ hyperstack tags; ``tiff.bigtiff``
  (auto / true / false) is honoured by both layouts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import sha256

import imexport
from imexport.synthetic import AcquisitionSpec

CLIENTS_CACHE = Path(os.environ.get("IMEXPORT_CLIENTS_CACHE", Path.home() / ".cache" / "imexport"))
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
SUITE2P_TIMEOUT_S = 900

# The calls README documents, run verbatim with FOLDER set to the plane folder.
SUITE2P_1X_CALL = """
import numpy as np, suite2p
db = np.load(f"{FOLDER}/db.npy", allow_pickle=True).item()
settings = np.load(f"{FOLDER}/settings.npy", allow_pickle=True).item()
suite2p.run_plane(db, settings, db_path=f"{FOLDER}/db.npy")
"""
# suite2p 0.14 resolves the folder's relative paths from its working directory
SUITE2P_014_CALL = """
import os, numpy as np, suite2p
ops = np.load("ops.npy", allow_pickle=True).item()
suite2p.run_plane(ops, ops_path=os.path.abspath("ops.npy"))
"""

# suite2p's defaults need frames of several 128-pixel registration blocks and a few
# hundred frames
SUITE2P_SPEC = dict(
    n_frames=300, n_planes=2, roi_heights=[256], width=256, fly_to_lines=0, frames_per_file=100, n_cells=30, noise=5.0
)
PLANES = ("zplane01_tp00001-00300", "zplane02_tp00001-00300")


def tree_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def client_python(venv_name: str) -> Path:
    venv = CLIENTS_CACHE / venv_name
    if not (venv / ".installed").is_file():
        reason = f"{venv} is not installed: run tests/install_suite2p.sh (tests/run.sh does)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return venv / "bin" / "python"


@pytest.fixture
def suite2p_1x():
    """suite2p 1.1's python, checked before the export is made."""
    return client_python("suite2p-1.1-venv")


@pytest.fixture
def suite2p_014():
    return client_python("suite2p-0.14-venv")


@pytest.fixture(scope="module")
def suite2p_export(tmp_path_factory, make_acquisition):
    """A two-plane export to suite2p plane folders, big enough for suite2p's defaults."""
    root = tmp_path_factory.mktemp("suite2p_export")
    make_acquisition(root, **SUITE2P_SPEC)
    out = imexport.imwrite(root / "raw", root / "out", ext=".bin", show_progress=False)
    assert sorted(p.name for p in out.glob("zplane*")) == list(PLANES)
    return out


def run_client(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=SUITE2P_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result


def copy_export(export: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the whole export elsewhere, and the digests of the original's files."""
    digests = tree_digests(export)
    copy = tmp_path / "moved"
    shutil.copytree(export, copy)
    assert tree_digests(copy) == digests
    return copy, digests


def check_registered(folder: Path, ops: dict, exported_sha: str) -> None:
    raw, registered = folder / "data_raw.bin", folder / "data.bin"
    assert sha256(raw) == exported_sha  # suite2p read the export and left it as it was
    assert registered.stat().st_size == raw.stat().st_size == 300 * 256 * 256 * 2
    assert len(ops["yoff"]) == len(ops["xoff"]) == 300  # one rigid shift per frame: registered
    assert (folder / "stat.npy").is_file() and (folder / "F.npy").is_file()


def test_suite2p_1x_runs_on_a_moved_copy_and_never_writes_the_export(suite2p_1x, suite2p_export, tmp_path):
    python = suite2p_1x
    copy, original = copy_export(suite2p_export, tmp_path)
    folder = copy / PLANES[0]
    # the working directory is neither folder: every path must come from db_path
    run_client(python, f"FOLDER = {str(folder)!r}\n" + SUITE2P_1X_CALL, cwd=tmp_path)

    assert tree_digests(suite2p_export) == original  # nothing written into the original
    ops = np.load(folder / "ops.npy", allow_pickle=True).item()
    assert Path(ops["reg_file"]) == folder / "data.bin" and Path(ops["raw_file"]) == folder / "data_raw.bin"
    assert ops["fs"] == pytest.approx(AcquisitionSpec().frame_rate)
    check_registered(folder, ops, original[f"{PLANES[0]}/data_raw.bin"])
    assert (folder / "reg_outputs.npy").is_file()
    # the other plane of the copy was not touched either
    assert tree_digests(copy / PLANES[1]) == {
        name.split("/", 1)[1]: digest for name, digest in original.items() if name.startswith(PLANES[1])
    }


def test_suite2p_014_runs_inside_a_moved_copy_and_never_writes_the_export(suite2p_014, suite2p_export, tmp_path):
    python = suite2p_014
    copy, original = copy_export(suite2p_export, tmp_path)
    folder = copy / PLANES[1]
    run_client(python, SUITE2P_014_CALL, cwd=folder)

    assert tree_digests(suite2p_export) == original
    ops = np.load(folder / "ops.npy", allow_pickle=True).item()
    assert ops["save_path"] == str(folder)
    check_registered(folder, ops, original[f"{PLANES[1]}/data_raw.bin"])


# ---- TIFF ------------------------------------------------------------------------------

TIFF_SPEC = dict(n_frames=7, n_planes=3, n_colors=2, roi_heights=[16, 12], width=20, fly_to_lines=2, frames_per_file=3)
CLASSIC_MAGIC, BIGTIFF_MAGIC = b"II*\x00", b"II+\x00"


@pytest.fixture(scope="module")
def tiff_acquisition(tmp_path_factory, make_acquisition):
    spec, paths = make_acquisition(tmp_path_factory.mktemp("tiff_acquisition"), **TIFF_SPEC)
    return spec, paths[0].parent


def test_default_plane_tiff_is_classic_with_imagej_hyperstack_tags(tiff_acquisition, tmp_path):
    spec, raw = tiff_acquisition
    out = imexport.imwrite(raw, tmp_path / "out", ext=".tiff", show_progress=False, metadata={"dx": 0.5, "dy": 0.25})
    files = sorted(out.glob("*.tif"))
    assert len(files) == spec.n_planes
    for path in files:
        assert path.read_bytes()[:4] == CLASSIC_MAGIC
        with tifffile.TiffFile(path) as tif:
            assert tif.is_imagej and not tif.is_bigtiff
            ij = tif.imagej_metadata
            assert ij["images"] == spec.n_frames * spec.n_colors
            assert (ij["frames"], ij["channels"]) == (spec.n_frames, spec.n_colors)
            assert ij["hyperstack"] is True and ij["unit"] == "um"
            assert ij["finterval"] == pytest.approx(1 / spec.frame_rate)
            assert tif.series[0].axes == "TCYX"
            # resolution tags hold pixels per unit: 1 / (µm per pixel)
            x_res, y_res = (tif.pages[0].tags[name].value for name in ("XResolution", "YResolution"))
            assert x_res[0] / x_res[1] == pytest.approx(2.0) and y_res[0] / y_res[1] == pytest.approx(4.0)


@pytest.mark.parametrize("bigtiff, magic", [("auto", CLASSIC_MAGIC), (False, CLASSIC_MAGIC), (True, BIGTIFF_MAGIC)])
@pytest.mark.parametrize("layout", ["plane", "volume"])
def test_every_layout_honours_bigtiff(tiff_acquisition, tmp_path, layout, bigtiff, magic):
    spec, raw = tiff_acquisition
    out = imexport.imwrite(
        raw, tmp_path / "out", ext=".tiff", show_progress=False, layout=layout, bigtiff=bigtiff, metadata={"dz": 12.5}
    )
    files = sorted(out.glob("*.tif"))
    assert len(files) == (spec.n_planes if layout == "plane" else 1)
    for path in files:
        assert path.read_bytes()[:4] == magic
    if layout == "volume":
        with tifffile.TiffFile(files[0]) as tif:
            ij = tif.imagej_metadata
            assert (ij["frames"], ij["slices"], ij["channels"]) == (spec.n_frames, spec.n_planes, spec.n_colors)
            assert ij["spacing"] == 12.5 and ij["hyperstack"] is True


# ImageJ 1.x itself (Debian's imagej package, run on a virtual screen: it builds its menus
# even in batch mode) opens the default TIFFs and reports their hyperstack dimensions
IMAGEJ_JAR = Path("/usr/share/java/ij.jar")
IMAGEJ_MACRO = """
open(getArgument());
Stack.getDimensions(width, height, channels, slices, frames);
getVoxelSize(pixel_width, pixel_height, depth, unit);
print("DIMS " + width + " " + height + " " + channels + " " + slices + " " + frames + " " + bitDepth());
print("CALIBRATION " + pixel_width + " " + pixel_height + " " + depth);
print("PIXEL " + getPixel(3, 2));
run("Quit");
"""


def imagej_report(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or not IMAGEJ_JAR.is_file():
        reason = "ImageJ under Xvfb needs Debian's imagej and xvfb packages (tests/run.sh installs them)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    macro = tmp_path / "dimensions.ijm"
    macro.write_text(IMAGEJ_MACRO)
    result = subprocess.run(
        [xvfb_run, "-a", "java", "-jar", str(IMAGEJ_JAR), "-batch", str(macro), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line.split() for line in result.stdout.splitlines() if line.split()]
    report = {words[0]: words[1:] for words in lines if words[0] in ("DIMS", "CALIBRATION", "PIXEL")}
    assert set(report) == {"DIMS", "CALIBRATION", "PIXEL"}, f"ImageJ could not open {path}:\n{result.stdout}{result.stderr}"
    return report


@pytest.mark.parametrize("layout", ["plane", "volume"])
def test_imagej_opens_the_default_tiffs_as_hyperstacks(tiff_acquisition, tmp_path, layout):
    spec, raw = tiff_acquisition
    out = imexport.imwrite(
        raw, tmp_path / "out", ext=".tiff", show_progress=False, layout=layout, metadata={"dx": 0.5, "dy": 0.25, "dz": 12.5}
    )
    path = sorted(out.glob("*.tif"))[0]
    with tifffile.TiffFile(path) as tif:
        pixels = tif.series[0].asarray()
    report = imagej_report(path, tmp_path)

    height, width = pixels.shape[-2:]
    slices = spec.n_planes if layout == "volume" else 1
    assert report["DIMS"] == [str(width), str(height), str(spec.n_colors), str(slices), str(spec.n_frames), "16"]
    pixel_width, pixel_height, depth = map(float, report["CALIBRATION"])
    assert (pixel_width, pixel_height) == (pytest.approx(0.5, rel=1e-3), pytest.approx(0.25, rel=1e-3))
    if layout == "volume":
        assert depth == 12.5
    # ImageJ holds signed 16-bit data as unsigned, shifted by 32768 (its calibration undoes it)
    assert pixels.dtype == np.int16
    assert int(float(report["PIXEL"][0])) == int(pixels.reshape(-1, height, width)[0, 2, 3]) + 32768


# ---- OME-Zarr ---------------------------------------------------------------------------

ZARR_SPEC = dict(n_frames=7, n_planes=3, roi_heights=[16, 12], width=20, fly_to_lines=2, frames_per_file=3)


def read_with_ome_zarr_py(store: Path) -> tuple[list[dict], list[float], tuple[int, ...]]:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    image = next(iter(Reader(parse_url(str(store)))()))
    scale = image.metadata["coordinateTransformations"][0][0]["scale"]
    return image.metadata["axes"], scale, image.data[0].shape


def read_with_bioio(store: Path):
    import bioio_ome_zarr
    from bioio import BioImage

    image = BioImage(store, reader=bioio_ome_zarr.Reader)
    return image.dims.order, image.scale, image.dimension_properties, image.shape


@pytest.fixture(scope="module")
def zarr_acquisition(tmp_path_factory, make_acquisition):
    spec, paths = make_acquisition(tmp_path_factory.mktemp("zarr_acquisition"), **ZARR_SPEC)
    return spec, paths[0].parent


def zarr_session(run_snakemake, raw: Path, work: Path, **extra) -> Path:
    """A session config on top of the shipped default, as a user writes one."""
    run_snakemake(work, {"input": str(raw), "outdir": str(work / "out"), "format": "zarr", **extra})
    return next((work / "out").glob("*.zarr"))


def check_readers(store: Path, spec: AcquisitionSpec, z_scale: float | None) -> None:
    height, width = max(spec.roi_heights), spec.width * spec.n_rois
    axes, scale, shape = read_with_ome_zarr_py(store)
    assert shape == (spec.n_frames, spec.n_planes, height, width)
    assert [a["name"] for a in axes] == ["t", "z", "y", "x"]
    assert axes[0]["unit"] == "second" and scale[0] == pytest.approx(1 / spec.frame_rate)
    assert axes[2]["unit"] == axes[3]["unit"] == "micrometer"
    order, bio_scale, properties, bio_shape = read_with_bioio(store)
    assert order == "TCZYX" and bio_shape == (spec.n_frames, 1, spec.n_planes, height, width)
    assert str(properties.Y.unit) == str(properties.X.unit) == "micrometer"
    if z_scale is None:
        # one step per plane, and no reader may take it for a length
        assert "unit" not in axes[1] and scale[1] == 1.0
        assert properties.Z.unit is None
    else:
        assert axes[1]["unit"] == "micrometer" and scale[1] == z_scale
        assert str(properties.Z.unit) == "micrometer" and bio_scale.Z == z_scale


def test_unknown_dz_gives_a_z_axis_without_unit_through_snakemake_and_the_api(zarr_acquisition, tmp_path, run_snakemake):
    spec, raw = zarr_acquisition
    # the shipped default config's demo dz must not reach a session that omits dz
    check_readers(zarr_session(run_snakemake, raw, tmp_path / "workflow"), spec, None)
    api_out = imexport.imwrite(raw, tmp_path / "api", ext=".zarr", show_progress=False)
    check_readers(next(api_out.glob("*.zarr")), spec, None)


def test_stated_dz_is_read_as_micrometers(zarr_acquisition, tmp_path, run_snakemake):
    spec, raw = zarr_acquisition
    store = zarr_session(run_snakemake, raw, tmp_path / "workflow", metadata={"dz": 12.5})
    check_readers(store, spec, 12.5)


def test_demo_metadata_fills_only_the_demo_and_never_a_stated_value():
    from imexport.config import validate
    from imexport.demo import with_demo_metadata

    demo = {"folder": "demo_data/raw", "metadata": {"dz": 16.0}}
    on_demo = validate({"input": "demo_data/raw", "demo": demo})
    assert with_demo_metadata(on_demo)["metadata"]["dz"] == 16.0
    stated = validate({"input": "demo_data/raw", "demo": demo, "metadata": {"dz": 5.0}})
    assert with_demo_metadata(stated)["metadata"]["dz"] == 5.0
    elsewhere = validate({"input": "recordings/m1", "demo": demo})
    assert with_demo_metadata(elsewhere)["metadata"]["dz"] is None
    assert with_demo_metadata(validate({"input": "demo_data/raw"}))["metadata"]["dz"] is None  # no demo value
