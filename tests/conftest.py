"""Shared fixtures and helpers: small synthetic ScanImage acquisitions and real Snakemake runs.

Fixtures:

* ``make_acquisition(folder, **spec_overrides) -> (spec, paths)`` writes a small raw
  ScanImage acquisition (``imexport.synthetic``) into ``folder/raw`` (``subdir=`` picks
  another sub-folder) and returns its ``AcquisitionSpec`` and file paths.
* ``run_snakemake(workdir, config, *extra_args, expect_ok=True)`` writes ``config`` to
  ``workdir/config.yaml`` and runs the repository's workflow/Snakefile on it in a subprocess.
  The returned ``CompletedProcess`` has ``stdout`` and ``stderr`` captured and an extra
  attribute ``output`` = both together. ``expect_ok=True`` asserts exit status 0,
  ``False`` asserts a failure, ``None`` asserts nothing. ``preexec_fn`` runs in the
  snakemake process before it starts (e.g. to set resource limits).
* ``cupy``: the cupy module on a usable GPU, as ``gpu: true`` gets it; without one the
  test is skipped.
* (autouse) every run of the session, Snakemake's too, keeps input digests in a shared
  digest cache of the test session's own, never the user's ``~/.cache``.

Helpers test files import (``from conftest import ...``):

* ``make_acquisition_in`` and ``snakemake_command(workdir, config, *extra_args, cores=2)``:
  the make_acquisition function outside a fixture; run_snakemake's setup, returning the
  command, for a test that starts the process itself.
* ``NO_PHASE``: the config fragment that turns the scan-phase correction off.
* Acquisition specs: ``ONE_ROI`` (one ROI, one plane, pixels that name their page),
  ``PIEZO_STACK`` (a fast-Z stack with flyback frames, two saved channels and a dropped
  frame), ``LARGE_PLANES`` (plane files too large for ``small_disk``, a ``preexec_fn``).
* ``verify_cli(outdir)``: ``imexport verify`` on an export, its output captured.
* ``set_next_page_offset(path, page, offset)``: damages a raw file's page chain.
* ``sha256(path)`` and ``snapshot(folder)`` (every file's mtime and sha256): what a run left
  untouched.

Markers: ``slurm`` (brings up a SLURM cluster), ``gpu`` (needs a CUDA device).
"""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile
import yaml

from imexport.backend import array_module
from imexport.input_content import SHARED_CACHE_ENV
from imexport.synthetic import AcquisitionSpec, write_acquisition

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
SNAKEMAKE_TIMEOUT_S = 300

# Small enough that every test stays fast; each test overrides what it needs.
SMALL_SPEC = dict(
    n_frames=7,
    n_planes=3,
    roi_heights=[6, 4],
    width=12,
    fly_to_lines=2,
    frames_per_file=3,
    n_cells=8,
)

# No scan_phase job: the exported pixels are the raw pages'.
NO_PHASE = {"scan_phase": {"fix_phase": False}}

# One 5 x 6 ROI, one plane, 30 Hz; content="index" (imexport.synthetic): a page's pixels name the page.
ONE_ROI = dict(content="index", roi_heights=[5], width=6, fly_to_lines=0, n_planes=1, frame_rate=30.0)
# A piezo (fast-Z) stack of 6 volumes of 3 slices + 2 flyback frames, saved channels [1 4], in
# files of 7 logged frames (files end mid-volume), one frame number skipped after logged frame 11.
PIEZO_STACK = dict(
    **ONE_ROI,
    n_colors=2,
    channel_save=[1, 4],
    piezo_slices=3,
    flyback_frames=2,
    n_frames=6,
    frames_per_file=7,
    dropped_after=[11],
)

# Two planes of 60 frames of 48 x 96 int16: 550 kB per plane TIFF, above the file size limit of
# small_disk, while what a run writes before its plane jobs (index, records, lock, logs) stays below it.
LARGE_PLANES = dict(n_frames=60, n_planes=2, roi_heights=[48, 48], width=48, fly_to_lines=2, frames_per_file=30, n_cells=8)
SMALL_DISK_BYTES = 256 * 1024


def small_disk() -> None:
    """``preexec_fn`` of run_snakemake: no file may grow past SMALL_DISK_BYTES (``ulimit -f``), as on a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_DISK_BYTES, SMALL_DISK_BYTES))


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: brings up a throw-away SLURM cluster (slow, needs root and the Debian packages)")


def make_acquisition_in(folder, subdir: str = "raw", **spec_overrides):
    """Write a small synthetic acquisition into ``folder/subdir``; ``(spec, paths)``."""
    spec = AcquisitionSpec(**{**SMALL_SPEC, **spec_overrides})
    paths = write_acquisition(spec, Path(folder) / subdir)
    return spec, paths


def snakemake_command(workdir, config: dict, *extra_args: str, cores: int = 2) -> list[str]:
    """Writes ``config`` to ``workdir/config.yaml``; the command that runs the workflow on it there."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--cores", str(cores)]
    return [*cmd, "--workflow-profile", "none", "--configfile", str(configfile), *extra_args]


def run_snakemake_in(
    workdir, config: dict, *extra_args: str, expect_ok: bool | None = True, timeout: float = SNAKEMAKE_TIMEOUT_S, preexec_fn=None
) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, config, *extra_args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir, preexec_fn=preexec_fn)
    result.output = result.stdout + result.stderr
    if expect_ok is True:
        assert result.returncode == 0, f"snakemake failed ({result.returncode}):\n{result.output[-6000:]}"
    elif expect_ok is False:
        assert result.returncode != 0, f"snakemake unexpectedly succeeded:\n{result.output[-6000:]}"
    return result


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder, *, work_folder: bool = True) -> dict[str, tuple[int, str]]:
    """Every file under ``folder`` (imexport's ``.imexport`` work folder too unless told not): mtime and sha256."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, sha256(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (work_folder or ".imexport" not in p.relative_to(folder).parts)
    }


def verify_cli(outdir) -> subprocess.CompletedProcess:
    """``imexport verify outdir`` as a user runs it, its output captured."""
    return subprocess.run([sys.executable, "-m", "imexport.cli", "verify", str(outdir)], capture_output=True, text=True)


def set_next_page_offset(path, page: int, offset: int) -> None:
    """Rewrites in place where BigTIFF page ``page``'s directory says the next one starts (0: the chain ends there)."""
    with tifffile.TiffFile(path) as tif:
        ifd = tif.pages[page].offset
    data = bytearray(Path(path).read_bytes())
    n_entries = struct.unpack_from("<Q", data, ifd)[0]
    struct.pack_into("<Q", data, ifd + 8 + 20 * n_entries, offset)
    Path(path).write_bytes(bytes(data))


@pytest.fixture(scope="session", autouse=True)
def private_shared_digest_cache(tmp_path_factory):
    os.environ[SHARED_CACHE_ENV] = str(tmp_path_factory.mktemp("input_digests"))
    yield
    del os.environ[SHARED_CACHE_ENV]


@pytest.fixture(scope="session")
def make_acquisition():
    """``make_acquisition(folder, **spec_overrides) -> (spec, paths)``."""
    return make_acquisition_in


@pytest.fixture(scope="session")
def run_snakemake():
    """``run_snakemake(workdir, config, *extra_args, expect_ok=True) -> CompletedProcess``."""
    return run_snakemake_in


@pytest.fixture
def cupy():
    """The cupy module on a usable GPU; the test is skipped without one."""
    pytest.importorskip("cupy", reason="cupy is not installed")
    try:
        module, _ = array_module(True)
    except RuntimeError as exc:
        pytest.skip(f"no usable GPU: {exc}")
    return module
