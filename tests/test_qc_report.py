"""The quality-control report end to end: a real snakemake run with ``qc.enabled``, then
``snakemake --report report.html`` with the same config, then the page in headless Chromium.

The QC step needs matplotlib (the ``report`` extra) and the screenshot needs Chromium;
tests/run.sh installs both. Where one is missing the test fails in CI (``CI`` set) and is
skipped elsewhere, naming what to install.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from imexport.axial import mean_frame_indices
from imexport.qc import qc_files, written_means
from imexport.workflow_plan import plan_for_config

# 3 planes shifted against each other, 2 ROIs (stitched), odd rows displaced by 1 px
SPEC = dict(
    n_frames=10,
    n_planes=3,
    roi_heights=[24, 18],
    width=24,
    fly_to_lines=3,
    frames_per_file=4,
    noise=3.0,
    texture=100.0,
    plane_shifts=[[0, 0], [1, -1], [2, -2]],
    phase_offset=1.0,
)
FORMATS = ["tiff", "zarr", "h5", "bin"]
MAX_FRAMES = 6
CHROMIUM_TIMEOUT_S = 120


def require(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; tests/run.sh installs it")
    pytest.skip(f"{what} is not installed")


def require_matplotlib() -> None:
    require(importlib.util.find_spec("matplotlib") is not None, 'matplotlib (pip install -e ".[report]")')


def report_results(report_html: str) -> dict:
    """The report's table of embedded results: path -> name, labels, mime type, data URI."""
    match = re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', report_html, re.S)
    assert match, "no results table in the report"
    return json.loads(match.group(1))


def png_bytes(data_uri: str) -> bytes:
    assert data_uri.startswith("data:image/png;")
    return base64.b64decode(data_uri.split("base64,", 1)[1])


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, make_acquisition, run_snakemake):
    require_matplotlib()
    root = tmp_path_factory.mktemp("qc")
    spec, paths = make_acquisition(root, **SPEC)
    work = root / "work"
    config = {
        "input": str(paths[0].parent),
        "outdir": str(work / "out"),
        "format": FORMATS,
        "register_z": True,
        "metadata": {"dz": 15.0},
        "qc": {"enabled": True, "max_frames": MAX_FRAMES},
    }
    run_snakemake(work, config)
    run_snakemake(work, config, "--report", "report.html")
    report = work / "report.html"
    assert report.is_file()
    return spec, work, config, report


def test_report_embeds_one_mean_image_per_plane(report_run):
    spec, _, _, report = report_run
    results = report_results(report.read_text())
    names = [entry["name"] for entry in results.values()]
    per_plane = sorted(n for n in names if re.fullmatch(r"mean_stitched_zplane\d+\.png", n))
    assert per_plane == [f"mean_stitched_zplane{z:02d}.png" for z in range(1, spec.n_planes + 1)]
    assert names.count("mean_images_stitched.png") == 1
    from PIL import Image

    for entry in results.values():
        if entry["name"] in per_plane:
            image = np.asarray(Image.open(io.BytesIO(png_bytes(entry["data_uri"]))))
            # a 18-row ROI below a 24-row one: 24 x 48 stitched, enlarged by whole pixels
            assert image.ndim == 2 and image.shape[0] * 48 == image.shape[1] * 24
            assert image.std() > 10  # contrast from the plane's own percentiles
            assert entry["labels"] == {"plane": entry["name"][-6:-4], "view": "stitched"}


def test_report_has_corrections_and_run_tables(report_run):
    _, _, _, report = report_run
    text = report.read_text()
    results = report_results(text)
    by_name = {entry["name"]: entry for entry in results.values()}
    for name in (
        "axial_shifts.png",
        "axial_projection_stitched.png",
        "scan_phase_offsets.png",
        "scan_phase_rows.png",
        "roi_seams.png",
    ):
        assert png_bytes(by_name[name]["data_uri"]).startswith(b"\x89PNG"), name
    for name in ("plane_statistics.html", "run.html", "benchmarks.html"):
        assert by_name[name]["mime_type"] == "text/html"
        assert by_name[name]["data_uri"].startswith("data:text/html")
    # the report's JavaScript sorts entries by label with String.localeCompare: a number breaks the page
    assert all(isinstance(v, str) for entry in results.values() for v in (entry["labels"] or {}).values())
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?:""", text)


def test_every_format_reads_back_the_same_means(report_run):
    _, work, config, _ = report_run
    _, plan = plan_for_config(config)
    positions = mean_frame_indices(len(plan.frames), MAX_FRAMES)
    means = {fmt: written_means(plan, fmt, None, positions) for fmt in FORMATS}
    for fmt in FORMATS[1:]:
        assert [m.plane for m in means[fmt]] == [m.plane for m in means["tiff"]]
        for got, want in zip(means[fmt], means["tiff"]):
            np.testing.assert_array_equal(got.image, want.image, err_msg=fmt)


def test_qc_tables_list_the_jobs_and_the_config(report_run):
    _, _, config, _ = report_run
    _, plan = plan_for_config(config)
    files = qc_files(plan)
    benchmarks = open(files.benchmarks).read()
    for step in ("index_source", "scan_phase", "axial", "write", "assemble", "assemble_folder"):
        assert f"<td class=l>{step}</td>" in benchmarks
    for job in plan.jobs:
        assert f"<td class=l>{job}</td>" in benchmarks
    run = open(files.run).read()
    assert "<td class=l>register_z</td><td class=l>true</td>" in run
    assert "<td class=l>qc.max_frames</td><td class=l>6</td>" in run
    assert "<td class=l>imexport</td>" in run  # the processing history of imexport_manifest.json
    statistics = open(files.planes_table).read()
    assert statistics.count("<td class=l>stitched</td>") == len(plan.planes)


def chromium_screenshot(page, screenshot, profile, window: str) -> str:
    """Render ``page`` (a file) headless into ``screenshot``; Chromium's log (console included)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "chromium (apt-get install -y chromium)")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--virtual-time-budget=5000",
        f"--user-data-dir={profile}",
        f"--screenshot={screenshot}",
        f"--window-size={window}",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert screenshot.is_file(), f"no screenshot (exit {result.returncode}):\n{result.stderr[-3000:]}"
    return result.stderr


def test_report_renders_in_headless_chromium(report_run, tmp_path):
    _, _, _, report = report_run
    screenshot = tmp_path / "report.png"
    log = chromium_screenshot(report, screenshot, tmp_path / "profile", "1400,2000")
    assert "Uncaught" not in log, log[-3000:]
    assert screenshot.stat().st_size > 20_000
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.shape == (2000, 1400)
    assert pixels.std() > 20  # the navigation bar, the text and the rule graph, not a blank page
    assert len(np.unique(pixels)) > 50


# Opens every category and subcategory of results in turn (what a reader clicks through),
# then shows the mean-image grid; an error in any view is an uncaught exception in the log.
BROWSE = """<script>
window.addEventListener("load", () => {
  const views = [];
  for (const [category, subcategories] of Object.entries(categories)) {
    for (const subcategory of Object.keys(subcategories)) {
      // back to the menu in between: a subcategory list is built when it is opened
      views.push({navbarMode: "menu"}, {navbarMode: "subcategory", category: category, subcategory: subcategory});
    }
  }
  const grid = Object.keys(results).find(path => path.endsWith("mean_images_stitched.png"));
  views.push({content: "img", contentPath: results[grid].data_uri, resultPath: grid});
  // flushSync: React renders each view at once instead of batching them into the last one
  views.forEach((view, i) => setTimeout(() => ReactDOM.flushSync(() => app.setView(view)), 100 * (i + 1)));
});
</script>"""


def assert_every_view_renders(report, grid: str, tmp_path) -> None:
    tmp_path.mkdir(exist_ok=True)
    text = report.read_text()
    at = text.rindex("</body>")
    browse = tmp_path / "browse.html"
    browse.write_text(text[:at] + BROWSE.replace("mean_images_stitched.png", grid) + text[at:])
    screenshot = tmp_path / "browse.png"
    log = chromium_screenshot(browse, screenshot, tmp_path / "profile", "1400,900")
    assert "Uncaught" not in log, log[-3000:]
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # the grid of mean images is on screen


def test_every_report_view_renders(report_run, tmp_path):
    _, _, _, report = report_run
    assert_every_view_renders(report, "mean_images_stitched.png", tmp_path)


def test_separate_rois_with_per_frame_phase(tmp_path, make_acquisition, run_snakemake):
    require_matplotlib()
    spec, paths = make_acquisition(tmp_path, **{**SPEC, "n_frames": 6, "frames_per_file": 6})
    out = tmp_path / "out"
    config = {
        "input": str(paths[0].parent),
        "outdir": str(out),
        "roi_mode": "separate",
        "planes": [1, 3],
        "scan_phase": {"phasecorr_method": "frame"},
        "qc": {"enabled": True},
    }
    run_snakemake(tmp_path, config)
    run_snakemake(tmp_path, config, "--report", "report.html")
    qc = out / ".imexport" / "qc"
    assert sorted(p.name for p in (qc / "planes").iterdir()) == [
        f"mean_roi{r:02d}_zplane{z:02d}.png" for r in (1, 2) for z in (1, 3)
    ]
    assert (qc / "mean_images_roi01.png").is_file() and (qc / "mean_images_roi02.png").is_file()
    assert (qc / "scan_phase_offsets.png").is_file() and (qc / "scan_phase_rows.png").is_file()
    assert not (qc / "roi_seams.png").exists()  # no seams: every ROI is its own image
    assert not (qc / "axial_shifts.png").exists()  # register_z is off
    # two ROIs of different heights, two planes: the per-plane entries switch between the ROIs
    assert_every_view_renders(tmp_path / "report.html", "mean_images_roi01.png", tmp_path / "browse")


def test_qc_is_not_part_of_the_default_target(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path, **SPEC)
    result = run_snakemake(tmp_path, {"input": str(paths[0].parent), "outdir": str(tmp_path / "out")}, "-n")
    assert "rule qc" not in result.output and "write_plane_file" in result.output
