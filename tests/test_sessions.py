"""A sessions sheet: many recordings in one Snakemake run, each exported exactly as it
would be alone; bad rows named; the sheet over the config's keys; one bad session not
hiding the others (skip_failed_sessions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from conftest import make_acquisition_in

from imexport.sessions import SessionError, SheetError, plan_sessions, read_sheet

PIEZO = dict(roi_heights=[8], n_planes=1, piezo_slices=3, flyback_frames=2, n_frames=4, frames_per_file=7)
STACK_SHAPE = (5, 2, 9, 10)  # T, Z, Y, X of the TIFF stack session

# What differs between a session exported from the sheet and the same session exported
# alone from another working directory: when and where the history step ran.
VOLATILE_KEYS = {
    "id",  # the history step's random id
    "step",  # an output's step: that id
    "timestamp",  # when the step ran
    "written",  # when the manifest was written
    "durations",  # the jobs' wall/CPU times and memory (benchmark files)
    "outdir",  # the absolute output folder (another working directory); the config's, relative, is compared
}
# the files carrying the history (their other bytes must match): the manifest, TIFF
# history sidecars, Zarr's zarr.json, Suite2p's ops.npy
HISTORY_FILES = ("imexport_manifest.json", ".history.json", "zarr.json", "ops.npy")


def write_sheet(path: Path, header: list[str], *rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(cells) for cells in [header, *rows]) + "\n")
    return path


def write_recordings(root: Path) -> tuple[dict[str, str], np.ndarray]:
    """Two raw ScanImage recordings of different kinds (LBM with two ROIs, a piezo stack
    with flyback frames) and a TIFF stack, in ``root``: {name: input path}, and the stack's
    pixels (tests/test_slurm_cluster.py exports the same three)."""
    _, lbm = make_acquisition_in(root, "lbm")
    _, piezo = make_acquisition_in(root, "piezo", **PIEZO)
    stack = np.random.default_rng(7).integers(0, 3000, STACK_SHAPE, dtype=np.int16)
    tifffile.imwrite(root / "stack.tif", stack, imagej=True, metadata={"axes": "TZYX"})
    inputs = {"lbm": str(lbm[0].parent), "piezo": str(piezo[0].parent), "stack": str(root / "stack.tif")}
    return inputs, stack


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    return write_recordings(tmp_path_factory.mktemp("recordings"))


# The lbm row overrides four keys (one nested, one a list), piezo none, stack the format.
SHEET_HEADER = ["session", "input", "planes", "metadata.dz", "format", "scan_phase.fix_phase"]
BASE_CONFIG = {"format": "tiff", "scan_phase": {"fix_phase": False, "border": 1}}
ALONE_CONFIGS = {  # each session as a plain config, as the README says the sheet resolves
    "lbm": {
        "planes": [1, 3],
        "metadata": {"dz": 16.0},
        "format": ["tiff", "zarr"],
        "scan_phase": {"fix_phase": True, "border": 1},
    },
    "piezo": {},
    "stack": {"format": "bin"},
}


def sheet_rows(inputs):
    return [
        ["lbm", inputs["lbm"], "[1, 3]", "16.0", "[tiff, zarr]", "true"],
        ["piezo", inputs["piezo"], "", "", "", ""],
        ["stack", inputs["stack"], "", "", "bin", ""],
    ]


def normalized(value, history_files=()):
    """``value`` without the VOLATILE_KEYS; manifest entries of history files without their digests."""
    if isinstance(value, dict):
        drop = {"size", "sha256"} if value.get("path", "").endswith(history_files) and "sha256" in value else set()
        volatile = (VOLATILE_KEYS - {"outdir"} if not str(value.get("outdir", "")).startswith("/") else VOLATILE_KEYS) | drop
        return {k: normalized(v, history_files) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [normalized(v, history_files) for v in value]
    return value


def read_history_file(path: Path):
    if path.name == "ops.npy":
        return np.load(path, allow_pickle=True).item()
    return json.loads(path.read_text())


def assert_same_export(sheet_out: Path, alone_out: Path) -> None:
    """Every file of the two exports (internal files aside) has the same bytes, but for
    the history fields VOLATILE_KEYS names, in the HISTORY_FILES."""

    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".imexport" not in p.parts)

    assert files(sheet_out) == files(alone_out)
    for rel in files(sheet_out):
        a, b = (sheet_out / rel).read_bytes(), (alone_out / rel).read_bytes()
        if a == b:
            continue
        assert rel.endswith(HISTORY_FILES), f"{rel} differs between the sheet run and the session alone"
        got, want = read_history_file(sheet_out / rel), read_history_file(alone_out / rel)
        assert normalized(got, HISTORY_FILES) == normalized(want, HISTORY_FILES), rel
    # the outputs' pixels come out identical: TIFFs and binaries never differ at all
    assert any(p.suffix in (".tif", ".bin") for p in sheet_out.rglob("*"))


def test_three_sessions_of_different_kinds_in_one_run_match_each_session_alone(tmp_path, recordings, run_snakemake):
    inputs, stack = recordings
    sheet = write_sheet(tmp_path / "run" / "sessions.tsv", SHEET_HEADER, *sheet_rows(inputs))
    result = run_snakemake(tmp_path / "run", {**BASE_CONFIG, "sessions": str(sheet), "outdir": "results"})
    out = tmp_path / "run" / "results"
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".imexport") == ["lbm", "piezo", "stack"]

    # per-session overrides took effect: lbm planes 1 and 3 in TIFF and Zarr, dz 16 µm per
    # source plane so 32 µm between the two exported; piezo all 3 slices; stack as binaries
    lbm_tiffs = sorted(p.name for p in (out / "lbm").glob("*.tif"))
    assert [n[:8] for n in lbm_tiffs] == ["zplane01", "zplane03"]
    with tifffile.TiffFile(out / "lbm" / lbm_tiffs[0]) as tif:
        assert tif.asarray().shape[0] == 7 and json.loads(tif.imagej_metadata["Info"])["dz"] == pytest.approx(32.0)
    (store,) = (out / "lbm").glob("*.zarr")
    scale = json.loads((store / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"][1] == pytest.approx(32.0)
    assert [p.name[:8] for p in sorted((out / "piezo").glob("*.tif"))] == ["zplane01", "zplane02", "zplane03"]
    for z in range(STACK_SHAPE[1]):
        (binary,) = (out / "stack").glob(f"zplane{z + 1:02d}_*/data_raw.bin")
        np.testing.assert_array_equal(np.fromfile(binary, dtype=np.int16).reshape(STACK_SHAPE[0], *STACK_SHAPE[2:]), stack[:, z])
    # lbm's scan phase is on (its row) and recorded: one record per exported plane
    lbm_manifest = json.loads((out / "lbm" / "imexport_manifest.json").read_text())
    assert sorted(lbm_manifest["steps"][-1]["parameters"]["scan_phase"]["records"]) == [
        "scan_phase/stitched/zplane01.json",
        "scan_phase/stitched/zplane03.json",
    ]

    # the sessions table, printed and written: planes, frames, formats as the sheet asked
    table = [line.split("\t") for line in (out / "sessions_summary.tsv").read_text().splitlines()]
    header, *rows = table
    got = {row[0]: dict(zip(header, row)) for row in rows}
    assert {s: (r["planes"], r["frames"], r["formats"], r["status"]) for s, r in got.items()} == {
        "lbm": ("2", "7", "tiff, zarr", "exported"),
        "piezo": ("3", "4", "tiff", "exported"),
        "stack": ("2", "5", "bin", "exported"),
    }
    for name, row in got.items():  # size: the files on disk; wall time: the benchmark files' seconds
        files = [p for p in (out / name).rglob("*") if p.is_file() and ".imexport" not in p.parts]
        size = sum(p.stat().st_size for p in files if p.name != "imexport_manifest.json")
        assert row["size"] == f"{size / 1024:.1f} KiB", name
        benchmarks = (out / name / ".imexport" / "benchmarks").rglob("*.tsv")
        seconds = sum(float(b.read_text().splitlines()[1].split("\t")[0]) for b in benchmarks)
        assert row["wall time"] == f"{seconds:.1f} s", name
    assert got["lbm"]["scan-phase offsets"].endswith("px") and got["stack"]["scan-phase offsets"] == "-"
    assert got["piezo"]["dropped frames"] == "0" and got["stack"]["dropped frames"] == "-"  # a TIFF stack logs no frame numbers
    assert "imexport: sessions of" in result.output and "lbm " in result.output.split("imexport: sessions of")[1]

    # each session alone, from a plain config, in another working directory
    for name, overrides in ALONE_CONFIGS.items():
        alone = tmp_path / f"alone_{name}"
        run_snakemake(alone, {**BASE_CONFIG, **overrides, "input": inputs[name], "outdir": f"results/{name}"})
        assert_same_export(out / name, alone / "results" / name)


def test_one_session_by_its_path_or_by_only_sessions(tmp_path, recordings, run_snakemake):
    inputs, _ = recordings
    sheet = write_sheet(tmp_path / "sessions.tsv", SHEET_HEADER, *sheet_rows(inputs))
    config = {**BASE_CONFIG, "sessions": str(sheet), "outdir": "results"}
    by_path = run_snakemake(tmp_path, config, "-n", "results/piezo/imexport_manifest.json")
    outputs = [
        path
        for line in by_path.output.splitlines()
        if line.strip().startswith("output: ")
        for path in line.strip().removeprefix("output: ").split(", ")
    ]
    assert outputs and {Path(path).parts[1] for path in outputs} == {"piezo"}, outputs
    plans = plan_sessions({**config, "only_sessions": ["stack", "lbm"]})
    assert [s.name for s in plans.planned] == ["lbm", "stack"]  # sheet order
    with pytest.raises(SheetError, match=r"only_sessions: nosuch not in .*sessions.tsv \(its sessions: lbm, piezo, stack\)"):
        plan_sessions({**config, "only_sessions": ["nosuch"]})


def test_the_sheet_over_the_config_keys(tmp_path, recordings):
    inputs, _ = recordings
    sheet = write_sheet(
        tmp_path / "sessions.tsv",
        ["session", "input", "metadata.dz", "outdir", "planes", "format"],
        ["a", inputs["piezo"], "5.5", "", "", ""],
        ["b", inputs["piezo"], "", str(tmp_path / "elsewhere"), "2", "[tiff, bin]"],
        ["c", inputs["piezo"], "", "", "1:3:2", ""],
        ["d", inputs["piezo"], "", "", '"2:3"', "'tiff'"],
    )
    config = {
        "sessions": str(sheet),
        "input": "ignored/with/a/sheet",
        "outdir": str(tmp_path / "root"),
        "format": "zarr",
        "metadata": {"dx": 2.0, "dz": 1.0},
        "scan_phase": {"fix_phase": False},
    }
    a, b, c, d = plan_sessions(config).planned
    # a: its own dz over the config's, the config's dx kept, outdir <outdir>/<session>
    assert a.config["metadata"] == {"dx": 2.0, "dz": 5.5, "fs": None, "dy": None}
    assert a.plan.outdir == str(tmp_path / "root" / "a") and a.config["format"] == "zarr"
    assert a.config["input"] == inputs["piezo"] and len(a.plan.planes) == 3
    # b: empty cells keep the config's values; its outdir and planes and formats its own
    assert b.config["metadata"]["dz"] == 1.0 and b.plan.outdir == str(tmp_path / "elsewhere")
    assert b.plan.planes.tolist() == [1] and [e.format for e in b.plan.exports][:1] == ["tiff"]
    # a range is one, quoted or not (YAML 1.1 would read 1:3:2 as the base-60 integer 3782)
    assert c.config["planes"] == "1:3:2" and c.plan.planes.tolist() == [0, 2]
    assert d.config["planes"] == "2:3" and d.plan.planes.tolist() == [1, 2] and d.config["format"] == "tiff"
    # the run-level keys are no session's: its config is what a plain config alone resolves to
    assert (a.config["sessions"], a.config["only_sessions"], a.config["skip_failed_sessions"]) == (None, None, False)


@pytest.mark.parametrize(
    "header, row, message",
    [
        (["session", "input", "planes"], ["s1", "x", "[1, "], r"line 2, column planes: '\[1, ' is not a YAML value"),
        (["session", "input", "planes"], ["s1", "x", "zero"], r"line 2, column planes: 'zero' is not valid"),
        (["session", "input", "metadata.dz"], ["s1", "x", "-3"], r"line 2, column metadata.dz: -3 is less than or equal to"),
        (["session", "input", "nosuch"], ["s1", "x", "1"], r"line 1 \(the header\): column 'nosuch' is not a config key"),
        (["session", "input", "sessions"], ["s1", "x", "1"], r"column 'sessions' is a run-level key"),
        (["session", "planes"], ["s1", "1"], r"line 1 \(the header\): no 'input' column"),
        (["session", "input"], ["bad name", "x"], r"line 2, column session: 'bad name' does not match"),
        (["session", "input"], ["s1", ""], r"line 2, column input: 'input' is a required property"),
        (["session", "input"], ["s1", "x", "y"], r"line 2: 3 cells where the header has 2 columns"),
    ],
)
def test_a_bad_row_is_named_by_its_line_and_column(tmp_path, header, row, message):
    sheet = write_sheet(tmp_path / "sessions.tsv", header, row)
    with pytest.raises(SheetError, match=message):
        read_sheet(sheet)


def test_two_sessions_of_one_name_or_one_folder_are_refused(tmp_path, recordings):
    inputs, _ = recordings
    twice = write_sheet(tmp_path / "twice.tsv", ["session", "input"], ["a", inputs["piezo"]], ["a", inputs["stack"]])
    with pytest.raises(SheetError, match=r"twice.tsv, line 3, column session: 'a' is also the session of line 2"):
        read_sheet(twice)
    nested = write_sheet(
        tmp_path / "nested.tsv",
        ["session", "input", "outdir"],
        ["a", inputs["piezo"], ""],
        ["b", inputs["stack"], str(tmp_path / "root" / "a" / "b")],
    )
    config = {"sessions": str(nested), "outdir": str(tmp_path / "root"), "scan_phase": {"fix_phase": False}}
    with pytest.raises(SheetError, match=r"sessions a \(line 2\) and b \(line 3\) would write into one folder"):
        plan_sessions(config)
    at_root = write_sheet(tmp_path / "root.tsv", ["session", "input", "outdir"], ["a", inputs["piezo"], str(tmp_path / "root")])
    with pytest.raises(
        SheetError, match=r"root.tsv, line 2, column outdir: session a would write into .*root, the config's outdir"
    ):
        plan_sessions({**config, "sessions": str(at_root)})


def test_a_bad_session_stops_the_run_naming_it_unless_skip_failed_sessions(tmp_path, recordings, run_snakemake):
    inputs, _ = recordings
    sheet = write_sheet(
        tmp_path / "sessions.tsv", ["session", "input"], ["good", inputs["stack"]], ["gone", str(tmp_path / "missing.tif")]
    )
    config = {**BASE_CONFIG, "sessions": str(sheet), "outdir": "results"}
    stopped = run_snakemake(tmp_path / "stop", config, expect_ok=False)
    assert f"imexport: session gone ({sheet}, line 3): " in stopped.output and "missing.tif" in stopped.output
    assert "skip_failed_sessions: true" in stopped.output and "Traceback" not in stopped.output
    assert not (tmp_path / "stop" / "results").exists()
    with pytest.raises(SessionError, match="session gone"):
        plan_sessions(config)

    kept = run_snakemake(tmp_path / "keep", {**config, "skip_failed_sessions": True})
    out = tmp_path / "keep" / "results"
    assert (out / "good" / "imexport_manifest.json").is_file() and not (out / "gone").exists()
    assert "imexport: session gone skipped (line 3): " in kept.output
    summary = kept.output.split("imexport: sessions of")[1]
    gone_line = next(line for line in summary.splitlines() if line.startswith("gone "))
    assert "failed: " in gone_line and "missing.tif" in gone_line
    rows = {line.split("\t")[0]: line.split("\t")[-1] for line in (out / "sessions_summary.tsv").read_text().splitlines()[1:]}
    assert rows["good"] == "exported" and rows["gone"].startswith("failed: ") and "missing.tif" in rows["gone"]
    # a session added to the sheet is exported; good, up to date, was exported by the first run
    write_sheet(
        sheet,
        ["session", "input"],
        ["good", inputs["stack"]],
        ["gone", str(tmp_path / "missing.tif")],
        ["added", inputs["piezo"]],
    )
    again = run_snakemake(tmp_path / "keep", {**config, "skip_failed_sessions": True})
    summary = again.output.split("imexport: sessions of")[1].splitlines()
    assert next(line for line in summary if line.startswith("added ")).endswith(" exported")
    good_line = next(line for line in summary if line.startswith("good "))
    written = json.loads((out / "good" / "imexport_manifest.json").read_text())["written"]  # by the first run
    assert good_line.endswith(f"exported earlier ({written[:10]} {written[11:16]})"), good_line

    with pytest.raises(SessionError, match=r"no session of .* could be planned:\n  gone \(line 2\)"):
        only_bad = write_sheet(tmp_path / "bad.tsv", ["session", "input"], ["gone", str(tmp_path / "missing.tif")])
        plan_sessions({**config, "sessions": str(only_bad), "skip_failed_sessions": True})


def test_the_test_sheet_config_is_valid():
    """.test/config/sessions.yaml (snakemake --directory .test --configfile ...) names a sheet that reads."""
    root = Path(__file__).resolve().parents[1] / ".test"
    config = yaml.safe_load((root / "config" / "sessions.yaml").read_text())
    rows = read_sheet(root / config["sessions"])
    assert [r.session for r in rows] == ["all_planes", "two_planes"]


def test_the_qc_report_has_the_sessions_table_and_each_sessions_figures(tmp_path, recordings, run_snakemake):
    pytest.importorskip("matplotlib")
    import zipfile

    inputs, _ = recordings
    sheet = write_sheet(tmp_path / "sessions.tsv", ["session", "input"], ["piezo", inputs["piezo"]], ["stack", inputs["stack"]])
    config = {**BASE_CONFIG, "sessions": str(sheet), "outdir": "results", "qc": {"enabled": True, "max_frames": 2}}
    run_snakemake(tmp_path, config)
    made = run_snakemake(tmp_path, config, "--report", "report.zip")
    assert "WARNING" not in made.output  # e.g. docutils' for a category name with a colon
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        (table,) = [n for n in names if n.endswith("sessions_summary.html")]
        page = archive.read(table).decode()
        report = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    assert all(f"<td>{s}</td>" in page for s in ("piezo", "stack")) and page.count("<td>exported</td>") == 2
    # each session's figures under its own categories: both have a mean-image grid
    assert "piezo - 1 Mean images" in report and "stack - 1 Mean images" in report
    assert sum(n.endswith("mean_images_stitched.png") for n in names) == 2


# NWB metadata every session shares, in the config; the animal's id and age in the sheet
NWB_SHARED = {
    "session_description": "two-photon imaging, test session",
    "timezone": "Europe/Berlin",
    "subject": {"species": "Mus musculus", "sex": "F"},
    "indicator": "GCaMP6s",
    "excitation_lambda": 920.0,
}
NWB_HEADER = ["session", "input", "nwb.subject.subject_id", "nwb.subject.age"]


def test_nwb_session_metadata_from_the_sheet_columns(tmp_path, recordings, run_snakemake):
    """Each row gives its own animal (config/README.md, NWB): a row lacking a required key
    stops the dry run naming the row and the key; with both rows complete each session's
    NWB export carries its own subject."""
    inputs, _ = recordings
    config = {**BASE_CONFIG, "format": "nwb", "nwb": NWB_SHARED, "outdir": "results"}
    incomplete = write_sheet(
        tmp_path / "bad" / "sessions.tsv",
        NWB_HEADER,
        ["m1", inputs["lbm"], "mouse-01", "P90D"],
        ["m2", inputs["piezo"], "", "P120D"],
    )
    stopped = run_snakemake(tmp_path / "bad", {**config, "sessions": str(incomplete)}, "-n", expect_ok=False)
    assert f"session m2 ({incomplete}, line 3)" in stopped.output, stopped.output[-3000:]
    assert "nwb.subject.subject_id" in stopped.output.split("session m2")[1]
    assert "session m1" not in stopped.output and "Traceback" not in stopped.output
    assert not (tmp_path / "bad" / "results").exists()

    complete = write_sheet(
        tmp_path / "good" / "sessions.tsv",
        NWB_HEADER,
        ["m1", inputs["lbm"], "mouse-01", "P90D"],
        ["m2", inputs["piezo"], "mouse-02", "P120D"],
    )
    sessions = plan_sessions({**config, "sessions": str(complete), "outdir": str(tmp_path / "good" / "results")})
    subjects = {s.name: [e.options["subject"] for e in s.plan.exports if e.format == "nwb"] for s in sessions.planned}
    want = {"m1": ("mouse-01", "P90D"), "m2": ("mouse-02", "P120D")}
    assert set(subjects) == set(want)
    for name, (subject_id, age) in want.items():
        assert subjects[name] and all(
            (s["subject_id"], s["age"], s["species"], s["sex"]) == (subject_id, age, "Mus musculus", "F") for s in subjects[name]
        ), subjects[name]
    planned = run_snakemake(tmp_path / "good", {**config, "sessions": str(complete)}, "-n")
    assert all(f"results/{name}/" in planned.output for name in want), planned.output[-3000:]
