#!/usr/bin/env python
"""End-to-end export benchmark of imexport: the real Snakemake workflow vs a plain copy.

    python benchmarks/bench_export.py [--frames 300] [--long-frames 1000] [--planes 14]
                                      [--formats tiff,bin,zarr,h5] [--phase-offset 0.6]
                                      [--workdir /tmp/imexport-bench] [--keep] [--demo-runs 3]
                                      [--reference-python PATH] [--profile] [--repeat N]

What it does (see benchmarks/README.md for how to read the table):

1. generates a realistic raw ScanImage LBM acquisition with ``imexport.synthetic``, with a
   fractional scan-phase offset as real resonant scanners have (cached in the workdir,
   keyed by the spec; generation time printed on its own);
2. measures the copy ceiling: a plain sequential read+write copy of the raw bytes to the
   same disk, fsync'ed, cold (page cache dropped) and warm;
3. runs the real workflow (``python -m snakemake --snakefile <repo>/workflow/Snakefile ...``) once
   per format, plus TIFF with ``--cores 1``, TIFF on a warm cache, and every TIFF plane job
   in one Python process without Snakemake (benchmarks/profile_plane.py --plane all); a
   run that fails gives an "n/a (error ...)" row naming its log instead of stopping;
4. the same for a ``--long-frames`` acquisition (direct-write copy, one run per format), and
   the fixed cost per run of the shipped demo config (``--demo-runs``);
   optionally runs mbo_utilities (``--reference-python``) on the main acquisition;
5. prints one table (also ``<workdir>/bench_table.md``, raw numbers in
   ``<workdir>/bench_results.json``) and checks each plane job's peak RSS against
   ``2 x target_chunk_mb + 300`` MiB;
6. optionally (``--profile``) profiles one TIFF plane job with cProfile
   (benchmarks/profile_plane.py) and prints the top functions.

Only the generated acquisition is kept between runs unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE_DRIVER = Path(__file__).resolve().with_name("profile_plane.py")
DEFAULT_WORKDIR = Path("/tmp/imexport-bench")
ALL_FORMATS = ("tiff", "bin", "zarr", "h5", "nwb")
# the session keys format nwb requires (placeholders: the benchmark measures the writing)
NWB_SESSION = {
    "session_description": "benchmark",
    "subject": {"subject_id": "bench", "species": "Mus musculus", "sex": "U", "age": "P90D"},
    "indicator": "GCaMP6s",
    "excitation_lambda": 920.0,
}
REFERENCE_EXT = {"tiff": ".tiff", "bin": ".bin", "zarr": ".zarr", "h5": ".h5"}
COPY_BUFFER = 16 * 2**20
MB = 1e6
MIB = 2**20


# --------------------------------------------------------------------------- helpers


def log(message: str = "") -> None:
    print(message, flush=True)


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def machine_info(workdir: Path) -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    disk = "?"
    try:
        st = os.statvfs(workdir)
        disk = f"{st.f_bavail * st.f_frsize / 1e9:.0f} GB free"
        device = subprocess.run(["df", "--output=source,fstype", str(workdir)], capture_output=True, text=True)
        if device.returncode == 0:
            disk = " ".join(device.stdout.splitlines()[-1].split()) + f", {disk}"
    except (OSError, IndexError):
        pass
    versions = {}
    for name in ("numpy", "tifffile", "zarr", "h5py", "snakemake"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 - a broken optional module must not stop the benchmark
            versions[name] = "missing"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "nproc": str(usable),
        "ram": ram,
        "disk": disk,
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "commit": commit.stdout.strip() if commit.returncode == 0 else "?",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
    }


def tree_bytes(root: Path, skip: tuple[str, ...] = (".imexport", ".snakemake")) -> int:
    """Bytes of the files under ``root``, not counting folders named in ``skip``."""
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --------------------------------------------------------------------------- page cache


class PageCache:
    """Cold-cache control for the raw files.

    ``fadvise``: ``posix_fadvise(DONTNEED)`` on every raw file after ``sync`` evicts exactly
    the source data (verified with util-linux ``fincore``); Python, Snakemake and imexport
    stay in RAM, as they would for any but the very first run of the day.
    ``drop_caches``: ``echo 3 > /proc/sys/vm/drop_caches`` (root) evicts everything; the
    software is then read back by one throw-away ``python -m snakemake --version`` and
    import of the writers, so cold rows still measure cold *data* only.
    """

    def __init__(self, raw_files: list[Path], method: str = "auto") -> None:
        self.raw_files = raw_files
        self.method = self._probe(method)

    def _drop_all(self) -> bool:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
            return True
        except OSError:
            return False

    def _fadvise(self) -> None:
        os.sync()
        for path in self.raw_files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    @staticmethod
    def _warm_software() -> None:
        subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import imexport.steps, imexport.export, imexport.sinks.tiff, imexport.workflow_plan, tifffile, zarr, h5py",
            ],
            capture_output=True,
        )

    def _probe(self, wanted: str) -> str:
        can_fadvise = hasattr(os, "posix_fadvise")
        if wanted in ("auto", "fadvise") and can_fadvise:
            self.raw_files and self.warm()
            self._fadvise()
            resident = self.resident_fraction()
            if resident is not None and resident < 0.05:
                return "fadvise"
            if wanted == "fadvise":
                return "fadvise-unverified"
        if wanted in ("auto", "drop_caches") and self._drop_all():
            self._warm_software()
            return "drop_caches"
        if can_fadvise and wanted == "auto":
            return "fadvise-unverified"
        return "none"

    @property
    def cold_possible(self) -> bool:
        return self.method != "none"

    @property
    def label(self) -> str:
        return {
            "fadvise": "cold = raw files evicted from the page cache (sync + posix_fadvise DONTNEED, checked with fincore) "
            "before the run; software stays cached",
            "fadvise-unverified": "cold = raw files evicted with posix_fadvise DONTNEED before the run (not verified: "
            "no fincore, drop_caches not writable)",
            "drop_caches": "cold = page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before the run, then "
            "Python/Snakemake/imexport re-read by a throw-away import",
            "none": "warm cache (could not drop the page cache: every row reads from RAM when the data fit)",
        }[self.method]

    def drop(self) -> None:
        if self.method.startswith("fadvise"):
            self._fadvise()
        elif self.method == "drop_caches":
            self._drop_all()
            self._warm_software()
        else:
            os.sync()

    def resident_fraction(self) -> float | None:
        """Fraction of the raw bytes in the page cache (util-linux ``fincore``), or None."""
        if not shutil.which("fincore"):
            return None
        cached = total = 0
        for path in self.raw_files:
            out = subprocess.run(
                ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", str(path)], capture_output=True, text=True
            )
            if out.returncode != 0 or not out.stdout.split():
                return None
            res, size = out.stdout.split()[:2]
            cached += int(res)
            total += int(size)
        return cached / total if total else None

    def prepare(self, state: str) -> None:
        """Before a measured row: raw files evicted ("cold"), or read in and synced ("warm")."""
        if state == "cold":
            self.drop()
        else:
            self.warm()
            os.sync()

    def warm(self) -> None:
        """Read every raw byte once so the next run finds them in RAM."""
        buf = bytearray(COPY_BUFFER)
        for path in self.raw_files:
            with open(path, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


# --------------------------------------------------------------------------- acquisition


def compile_package_bytecode() -> str:
    """Compile imexport's modules to bytecode, as a regular ``pip install`` does, and say so.

    Every job is a new interpreter that imports imexport. An editable install has no
    bytecode until a first import writes it, and where PYTHONDONTWRITEBYTECODE is set (as
    on the sandboxes these numbers come from) no import ever does: every job would compile
    the package from source again (≈ 60 ms per job), which a user's install does not.
    """
    import compileall

    import imexport

    folder = Path(imexport.__file__).parent
    if not compileall.compile_dir(str(folder), quiet=1):
        return f"bytecode: compiling {folder} failed; jobs compile imexport from source"
    return "bytecode: imexport compiled beforehand (as pip install does)"


def acquisition_spec(frames: int, planes: int, phase_offset: float = 0.0) -> dict:
    return {
        "width": 224,
        "roi_heights": [448, 448],
        "fly_to_lines": 16,
        "n_planes": planes,
        "n_frames": frames,
        "frames_per_file": 100,
        "noise": 20.0,
        "phase_offset": float(phase_offset),
    }


def ensure_acquisition(workdir: Path, settings: dict) -> tuple[Path, list[Path], float | None]:
    """The raw folder for ``settings`` (generated once); returns (folder, files, generation s or None)."""
    from imexport.synthetic import AcquisitionSpec

    spec = AcquisitionSpec(**settings)
    key = hashlib.sha1(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    folder = workdir / "acquisitions" / f"f{spec.n_frames}-z{spec.n_planes}-{key}"
    raw = folder / "raw"
    marker = folder / "spec.json"
    if marker.exists() and all((raw / name).exists() for name in spec.file_names()):
        return raw, [raw / name for name in spec.file_names()], None
    # an older cache entry of the same size (the generator gained a field since): replace it
    for stale in folder.parent.glob(f"f{spec.n_frames}-z{spec.n_planes}-*"):
        if stale.is_dir() and stale.name.split("-")[-1].split(".")[0] != key:
            try:
                old = json.loads((stale / "spec.json").read_text())["spec"]
            except (OSError, ValueError, KeyError):
                old = None
            if old is None or all(old.get(k) == v for k, v in settings.items()):
                remove(stale)
    remove(folder)
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    remove(staging)
    # in a child process: the generator holds ~0.5 GB, which the benchmark itself need not keep
    code = (
        "import json, sys; from imexport.synthetic import AcquisitionSpec, write_acquisition; "
        "write_acquisition(AcquisitionSpec(**json.loads(sys.argv[1])), sys.argv[2])"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict()), str(staging / "raw")], check=True)
    elapsed = time.perf_counter() - t0
    (staging / "spec.json").write_text(json.dumps({"spec": spec.to_dict(), "generation_s": elapsed}, indent=1))
    os.replace(staging, folder)
    return raw, [raw / name for name in spec.file_names()], elapsed


# --------------------------------------------------------------------------- measurements


@dataclass
class Row:
    label: str
    kind: str  # "ceiling" | "export" | "reference"
    fmt: str | None = None
    cache: str = "cold"
    cores: int | None = None
    frames: int | None = None  # frames (volumes) of the acquisition measured; rows compare within one
    bytes: int | None = None
    wall_s: float | None = None
    sync_s: float | None = None
    peak_rss_mib: float | None = None
    peak_rss_job: str | None = None
    jobs_s_sum: float | None = None
    status: str = "ok"  # "ok" | "n/a (error ...)" | "not run (...)"
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mb_s(self) -> float | None:
        if not self.ok or not self.wall_s or self.bytes is None:
            return None
        return self.bytes / MB / self.wall_s


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds busy on the whole machine, CPU-seconds of this process and its reaped children)."""
    import resource

    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(fields[:8]) - fields[3] - fields[4]
    ours = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return busy / os.sysconf("SC_CLK_TCK"), ours


def best_of(n: int, measure) -> Row:
    """Run ``measure`` n times; keep the fastest successful row (the least disturbed by other load).

    Each run also records the CPU time other processes used meanwhile (machine busy time
    minus this benchmark's own and its children's CPU time; kernel writeback threads count
    as "other", so a few tenths of a second are normal).
    """
    runs = []
    for _ in range(max(1, n)):
        before = _cpu_seconds()
        row = measure()
        after = _cpu_seconds()
        if before and after:
            row.extra["other_cpu_s"] = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
        runs.append(row)
    ok = [r for r in runs if r.ok]
    best = min(ok, key=lambda r: r.wall_s) if ok else runs[-1]
    if len(runs) > 1:
        best.extra["walls"] = [round(r.wall_s, 3) if r.wall_s else None for r in runs]
        best.notes.append("best of " + "/".join(f"{r.wall_s:.2f}" if r.wall_s else "?" for r in runs) + " s")
    other = best.extra.get("other_cpu_s")
    if other is not None and best.wall_s and other > max(0.5, 0.1 * best.wall_s):
        best.notes.append(f"other processes used {other:.1f} CPU-s meanwhile")
    return best


def copy_ceiling(raw_files: list[Path], dest: Path, cache: PageCache, state: str, direct: bool = False) -> Row:
    """Sequential copy of every raw byte to ``dest`` (same disk as the exports), fsync'ed.

    ``direct``: the writes go through imexport's DirectFile (O_DIRECT where the filesystem
    allows it), as the exporters' do — the ceiling for a writer that bypasses the page cache.
    """
    from imexport.sinks.direct import DirectFile

    remove(dest)
    dest.mkdir(parents=True)
    cache.prepare(state)
    resident = cache.resident_fraction()
    buf = bytearray(COPY_BUFFER)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for path in raw_files:
        target = dest / path.name
        with open(path, "rb", buffering=0) as src:
            dst = DirectFile(target, head_bytes=0) if direct else open(target, "wb", buffering=0)
            with dst:
                while True:
                    n = src.readinto(buf)
                    if not n:
                        break
                    dst.write(view[:n])
                    total += n
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    wall = time.perf_counter() - t0
    remove(dest)
    if direct:
        row = Row(f"copy, direct writes ({state})", "ceiling-direct", cache=state, bytes=total, wall_s=wall)
        row.notes.append(
            "read 16 MiB buffers, write through DirectFile (O_DIRECT), fsync per file; for reference, not a ratio base"
        )
    else:
        row = Row(f"copy ceiling ({state})", "ceiling", cache=state, bytes=total, wall_s=wall)
        row.notes.append("read+write 16 MiB buffers, fsync per file (included)")
    if resident is not None:
        row.extra["raw_resident_before"] = resident
    return row


def _vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a live process (``VmHWM`` in ``/proc/<pid>/status``), KiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class HwmMonitor:
    """Polls every descendant of the Snakemake process for its kernel peak RSS (VmHWM).

    Snakemake's benchmark ``max_rss`` is a *sampled* sum over the job's process tree
    (every 0.5 s for the first ~15 s, then every 30 s), so it can miss short peaks.
    VmHWM is the kernel's own high-water mark of each process: reading it shortly
    before the process exits gives its true peak (growth in the last poll interval
    can be missed). One process per plane job runs the ``write_plane`` script.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import threading

        self.pid = pid
        self.interval = interval
        self.hwm_kib: dict[int, int] = {}
        self.cmdlines: dict[int, str] = {}
        self.root_hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hwm-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                children = root.children(recursive=True)
            except psutil.Error:
                break
            hwm = _vm_hwm_kib(self.pid)
            if hwm:
                self.root_hwm_kib = max(self.root_hwm_kib, hwm)
            for child in children:
                try:
                    if child.pid not in self.cmdlines:
                        self.cmdlines[child.pid] = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                hwm = _vm_hwm_kib(child.pid)
                if hwm:
                    self.hwm_kib[child.pid] = max(self.hwm_kib.get(child.pid, 0), hwm)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _pids(self, select) -> list[int]:
        return [pid for pid, cmd in self.cmdlines.items() if select(cmd) and pid in self.hwm_kib]

    def peak(self, select) -> int | None:
        """Largest VmHWM (KiB) among processes whose command line passes ``select``."""
        pids = self._pids(select)
        return max(self.hwm_kib[p] for p in pids) if pids else None

    def count(self, select) -> int:
        return len(self._pids(select))


def benchmark_records(work: Path) -> list[dict]:
    records = []
    for tsv in sorted((work / "benchmarks").rglob("*.tsv")):
        try:
            with open(tsv, newline="") as fh:
                for rec in csv.DictReader(fh, delimiter="\t"):
                    rec["_file"] = str(tsv.relative_to(work / "benchmarks"))
                    records.append(rec)
        except OSError:
            continue
    return records


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def error_summary(log_text: str) -> str:
    """The most telling line of a failed run, shortened for a table cell.

    The last Python exception line (``SomeError: message``) wins; a bare
    ``SomeError:`` or ``Error in rule x:`` line is joined with the line after it.
    """
    import re

    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    exception = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception)|Error in rule [\w]+)\b:?")
    picked = None
    for i in range(len(lines) - 1, -1, -1):
        if exception.match(lines[i]):
            picked = lines[i]
            if picked.endswith(":") and i + 1 < len(lines):
                picked = f"{picked} {lines[i + 1]}"
            break
    if picked is None:
        picked = next((line for line in lines if "Error" in line or "Exception" in line), None)
    if picked is None:
        picked = lines[-1] if lines else "no output"
    picked = " ".join(picked.split())
    return picked if len(picked) <= 110 else picked[:107] + "..."


def snakemake_command(directory: Path, configfile: Path, cores: int) -> list[str]:
    """The real workflow run in ``directory`` on ``configfile``, without a developer's profile."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(directory),
        "--cores",
        str(cores),
        "--workflow-profile",
        "none",
        "--configfile",
        str(configfile),
    ]


def hash_new_recording(raw_files: list[Path], digest_cache: Path, cache: PageCache, state: str) -> str:
    """Hash the raw files once, as planning does the first time a recording is exported, into
    a digest cache of the benchmark's own that every later run shares (``IMEXPORT_DIGEST_CACHE``):
    the rows then measure an export of a recording planned before, and this line the cost
    a first export adds before its first job."""
    from imexport.checksums import checksum_files

    remove(digest_cache)
    os.environ["IMEXPORT_DIGEST_CACHE"] = str(digest_cache)
    cache.prepare(state)
    t0 = time.perf_counter()
    checksum_files(raw_files, None, digest_cache)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in raw_files)
    return (
        f"a first export of a recording also hashes it at planning ({state}, {size / 1e9:.2f} GB): "
        f"{seconds:.1f} s before its first job; the rows export a recording planned before (shared digest cache)"
    )


def run_workflow(
    fmt: str,
    raw: Path,
    workdir: Path,
    cores: int,
    cache: PageCache,
    state: str,
    chunk_mb: float | None,
    logs: Path,
    label: str,
    extra_config: dict | None = None,
) -> tuple[Row, Path]:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")  # "tiff --cores 2 (warm)" -> tiff_cores_2_warm
    run_dir = workdir / f"run_{slug}"
    remove(run_dir)
    run_dir.mkdir(parents=True)
    outdir = run_dir / "out"
    config = {"input": str(raw), "outdir": str(outdir), "format": fmt, **(extra_config or {})}
    if fmt == "nwb":
        config["nwb"] = NWB_SESSION
    if chunk_mb is not None:
        config["target_chunk_mb"] = chunk_mb
    cfg = run_dir / "bench_config.yaml"
    cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
    cmd = snakemake_command(run_dir, cfg, cores)
    # Software is read back before each row (a dry run of the same command; the raw data are
    # evicted after it): the copy rows write gigabytes, which can push Python, Snakemake and
    # imexport out of the page cache, and the first export row then paid ≈ 4 s more start-up
    # than any other (2026-12-02: 5 s from start to its first job, every other row 1-2 s),
    # which alone made --cores 2 look only 1.11x faster than --cores 1.
    subprocess.run([*cmd, "--dry-run"], cwd=run_dir, capture_output=True)
    cache.prepare(state)
    resident = cache.resident_fraction()
    log_file = logs / f"{slug}.log"
    t0 = time.perf_counter()
    started = time.time()
    with open(log_file, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=run_dir)
        monitor = HwmMonitor(proc.pid)
        proc.wait()
    wall = time.perf_counter() - t0
    ended = time.time()
    monitor.stop()
    t1 = time.perf_counter()
    os.sync()
    sync_s = time.perf_counter() - t1
    row = Row(label, "export", fmt=fmt, cache=state, cores=cores, wall_s=wall, sync_s=sync_s)
    row.extra.update({"command": " ".join(cmd), "log": str(log_file), "returncode": proc.returncode})
    if resident is not None:
        row.extra["raw_resident_before"] = resident
    if proc.returncode != 0:
        summary = error_summary(log_file.read_text(errors="replace"))
        # a failed job's traceback is in its own log, which goes with the run dir: keep a copy
        failed = [
            p for p in sorted((outdir / ".imexport" / "logs").rglob("*.log")) if "Traceback" in p.read_text(errors="replace")
        ]
        if failed:
            keep = logs / f"{log_file.stem}_failed_jobs"
            remove(keep)
            keep.mkdir(parents=True)
            for path in failed:
                shutil.copy2(path, keep / path.name)
            summary = error_summary(failed[0].read_text(errors="replace"))
            row.notes.append(f"failed job logs: {keep}")
        row.status = f"n/a (error: {summary})"
        row.notes.append(f"log: {log_file}")
    else:
        row.bytes = tree_bytes(outdir)
        records = benchmark_records(outdir / ".imexport")
        plane = [r for r in records if r["_file"].startswith("write")]
        rss = [(v, r["_file"]) for r in plane if (v := _float(r.get("max_rss"))) is not None]
        if rss:
            row.peak_rss_mib, row.peak_rss_job = max(rss)
        others = [(v, r["_file"]) for r in records if r not in plane and (v := _float(r.get("max_rss"))) is not None]
        if others:
            row.extra["other_jobs_max_rss"] = max(others)
        for rule in sorted({r["_file"].split("/")[0].removesuffix(".tsv") for r in records if r not in plane}):
            of_rule = [r for r in records if r["_file"].split("/")[0].removesuffix(".tsv") == rule]
            row.extra.setdefault("other_jobs_s", {})[rule] = round(sum(_float(r.get("s")) or 0.0 for r in of_rule), 2)
        row.jobs_s_sum = sum(_float(r.get("s")) or 0.0 for r in plane) or None
        row.extra.update(fixed_cost(outdir / ".imexport", plane, started, ended))
        row.extra["n_plane_jobs"] = len(plane)
        row.extra["max_plane_job_s"] = max((_float(r.get("s")) or 0.0 for r in plane), default=None)
        row.extra["benchmarks"] = [
            {k: r.get(k) for k in ("_file", "s", "max_rss", "io_in", "io_out", "mean_load")} for r in records
        ]
        plane_hwm = monitor.peak(lambda cmdline: "write_plane" in cmdline)
        if plane_hwm:
            row.extra["plane_job_hwm_mib"] = plane_hwm / 1024
            row.extra["plane_job_processes_seen"] = monitor.count(lambda cmdline: "write_plane" in cmdline)
        phase_hwm = monitor.peak(lambda cmdline: "scan_phase" in cmdline)
        if phase_hwm:
            row.extra["scan_phase_job_hwm_mib"] = phase_hwm / 1024
        if monitor.root_hwm_kib:
            row.extra["snakemake_main_hwm_mib"] = monitor.root_hwm_kib / 1024
        if row.bytes == 0:
            row.status = "n/a (error: the run succeeded but wrote no output bytes)"
    return row, run_dir


def fixed_cost(work: Path, plane_records: list[dict], started: float, ended: float) -> dict:
    """Seconds from the Snakemake start to the first plane job's start, and from the last plane
    job's end to Snakemake's exit (start-up, DAG, index, scan phase; checksums, history).

    A job's benchmark file is written when the job ends: its mtime is the end, mtime - s the start.
    """
    spans = []
    for record in plane_records:
        duration = _float(record.get("s"))
        path = work / "benchmarks" / record["_file"]
        if duration is not None and path.is_file():
            end = path.stat().st_mtime
            spans.append((end - duration, end))
    if not spans:
        return {}
    return {
        "before_first_plane_job_s": round(min(s for s, _ in spans) - started, 2),
        "after_last_plane_job_s": round(ended - max(e for _, e in spans), 2),
    }


def run_inprocess(fmt: str, raw: Path, workdir: Path, cache: PageCache, state: str, chunk_mb: float | None, logs: Path) -> Row:
    """All plane jobs in one Python process, no Snakemake (benchmarks/profile_plane.py --plane all)."""
    run_dir = workdir / f"inprocess_{fmt}"
    remove(run_dir)
    cmd = [sys.executable, str(PROFILE_DRIVER), "--input", str(raw), "--workdir", str(run_dir), "--format", fmt, "--plane", "all"]
    if chunk_mb is not None:
        cmd += ["--target-chunk-mb", str(chunk_mb)]
    cache.prepare(state)
    log_file = logs / f"inprocess_{fmt}.log"
    t0 = time.perf_counter()
    with open(log_file, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    os.sync()
    row = Row(
        f"{fmt} in-process, 1 core (no Snakemake)",
        "export",
        fmt=fmt,
        cache=state,
        cores=1,
        wall_s=wall,
        sync_s=time.perf_counter() - t1,
    )
    text = log_file.read_text(errors="replace")
    if proc.returncode != 0:
        row.status = f"n/a (error: {error_summary(text)})"
    else:
        results = {}
        for line in text.splitlines():
            if line.startswith("{"):
                results.update(json.loads(line))
        row.bytes = tree_bytes(run_dir / "out")
        row.peak_rss_mib = results.get("peak_rss_mib")
        row.extra.update(results)
        row.notes.append("all plane jobs in one process: RSS is that process' peak")
        steps_s = [
            f"{k.removesuffix('_s')} {results[k]:.1f} s"
            for k in ("index_s", "scan_phase_s", "write_plane_s")
            if isinstance(results.get(k), (int, float))
        ]
        if steps_s:
            row.notes.append(", ".join(steps_s))
    remove(run_dir)
    return row


REFERENCE_SCRIPT = textwrap.dedent('''\
    """Written by imexport's benchmarks/bench_export.py: one mbo_utilities export, timed."""
    import json, resource, sys, time
    raw, out, ext = sys.argv[1:4]
    register_z = sys.argv[4:] == ["register_z"]
    t0 = time.perf_counter()
    import mbo_utilities
    t1 = time.perf_counter()
    arr = mbo_utilities.imread(raw)
    t2 = time.perf_counter()
    mbo_utilities.imwrite(arr, out, ext=ext, register_z=register_z)
    t3 = time.perf_counter()
    hwm = None
    try:
        with open("/proc/self/status") as fh:
            hwm = next((int(l.split()[1]) for l in fh if l.startswith("VmHWM:")), None)
    except OSError:
        pass
    print("BENCH_RESULT " + json.dumps({
        "import_s": t1 - t0, "imread_s": t2 - t1, "imwrite_s": t3 - t2,
        "shape": [int(n) for n in getattr(arr, "shape", ())],
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kib": hwm,
    }))
''')


def reference_available(python: str | None) -> tuple[bool, str]:
    if not python:
        return False, "not run (pass --reference-python)"
    try:
        probe = subprocess.run([python, "-c", "import mbo_utilities"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"not run ({python}: {exc})"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, f"not run (import mbo_utilities fails in {python}: {last[:80]})"
    return True, "ok"


def run_reference(
    python: str, fmt: str, raw: Path, workdir: Path, cache: PageCache, state: str, logs: Path, register_z: bool = False
) -> Row:
    script = workdir / "reference_export.py"
    script.write_text(REFERENCE_SCRIPT)
    out = workdir / f"ref_{fmt}"
    remove(out)
    out.mkdir(parents=True)
    cache.prepare(state)
    suffix = " + register_z" if register_z else ""
    log_file = logs / f"reference_{fmt}{'_register_z' if register_z else ''}.log"
    t0 = time.perf_counter()
    with open(log_file, "w") as fh:
        proc = subprocess.run(
            [python, str(script), str(raw), str(out), REFERENCE_EXT[fmt], *(["register_z"] if register_z else [])],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=out,
        )
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    os.sync()
    row = Row(
        f"reference {fmt}{suffix} (mbo_utilities)",
        "reference",
        fmt=fmt,
        cache=state,
        wall_s=wall,
        sync_s=time.perf_counter() - t1,
    )
    text = log_file.read_text(errors="replace")
    if proc.returncode != 0:
        row.status = f"n/a (error: {error_summary(text)})"
        row.notes.append(f"log: {log_file}")
    else:
        row.bytes = tree_bytes(out, skip=())
        for line in text.splitlines():
            if line.startswith("BENCH_RESULT "):
                result = json.loads(line.split(" ", 1)[1])
                # ru_maxrss survives exec (a child of a big parent reports the parent's size);
                # VmHWM is reset at exec, so it is the child's own peak when available
                row.peak_rss_mib = min(v for v in (result["maxrss_kib"], result.get("vmhwm_kib")) if v) / 1024
                row.extra.update(result)
                row.notes.append(f"import {result['import_s']:.1f} s, imread {result['imread_s']:.1f} s")
    remove(out)
    return row


# --------------------------------------------------------------------------- report


def job_peak_mib(row: Row) -> float | None:
    """The larger of Snakemake's sampled max_rss and the VmHWM of the plane-job processes."""
    values = [v for v in (row.peak_rss_mib, row.extra.get("plane_job_hwm_mib")) if v is not None]
    return max(values) if values else None


def build_table(rows: list[Row], machine: dict, header: dict) -> tuple[str, str]:
    # rows compare with the copies of the same acquisition and cache state, and with the
    # reference run of the same acquisition, format and register_z
    ceilings = {(r.cache, r.frames): r for r in rows if r.kind == "ceiling" and r.ok}
    directs = {(r.cache, r.frames): r for r in rows if r.kind == "ceiling-direct" and r.ok}
    references = {(r.fmt, r.frames, "register_z" in r.label): r for r in rows if r.kind == "reference" and r.ok}
    columns = ["row", "MB/s", "× copy ceiling", "× direct-write copy", "× reference", "peak RSS/job (MiB)", "wall s", "notes"]
    body = []
    for r in rows:
        if not r.ok:
            body.append(
                [r.label, r.status, "—", "—", "—", "—", fmt_num(r.wall_s) if r.kind != "reference" else "—", "; ".join(r.notes)]
            )
            continue
        ceiling = ceilings.get((r.cache, r.frames))
        vs_ceiling = r.mb_s / ceiling.mb_s if (ceiling and r.kind != "ceiling" and ceiling.mb_s) else None
        direct = directs.get((r.cache, r.frames))
        vs_direct = r.mb_s / direct.mb_s if (direct and r.kind in ("export", "reference") and direct.mb_s) else None
        ref = references.get((r.fmt, r.frames, "register_z" in r.label)) if r.kind == "export" else None
        vs_ref = r.mb_s / ref.mb_s if (ref and ref.mb_s) else None
        notes = list(r.notes)
        if r.sync_s is not None and r.kind != "ceiling":
            notes.append(f"+{r.sync_s:.1f} s sync after exit")
        rss_cell = fmt_num(r.peak_rss_mib, 0)
        worst = job_peak_mib(r)
        if r.kind == "export" and r.extra.get("plane_job_hwm_mib") is not None:
            rss_cell += f" (HWM {r.extra['plane_job_hwm_mib']:.0f})"
        if worst is not None and r.kind == "export":
            verdict = "ok" if worst <= header["rss_limit_mib"] else "OVER"
            notes.append(f"≤ {header['rss_limit_mib']:.0f} MiB: {verdict}")
        if "before_first_plane_job_s" in r.extra:
            notes.append(
                f"fixed cost {r.extra['before_first_plane_job_s']:.1f} s before the first plane job "
                f"+ {r.extra['after_last_plane_job_s']:.1f} s after the last"
            )
        body.append(
            [
                r.label,
                fmt_num(r.mb_s),
                fmt_ratio(vs_ceiling),
                fmt_ratio(vs_direct),
                fmt_ratio(vs_ref),
                rss_cell,
                fmt_num(r.wall_s, 2),
                "; ".join(notes),
            ]
        )
    title = [
        f"imexport export benchmark — {header['spec_line']}",
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram']} RAM, disk {machine['disk']}; "
        f"Python {machine['python']}; {machine['versions']}; imexport {machine['commit']}; "
        f"load average at start {machine['load']}",
        f"cache: {header['cache_label']}",
        f"target_chunk_mb {header['chunk_mb']:g} → per-job RSS limit 2×chunk+300 = {header['rss_limit_mib']:.0f} MiB; "
        f"MB = 10^6 bytes of output written (copy ceiling: raw bytes copied); MiB = 2^20",
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *body)]
    sep = "-+-".join("-" * w for w in widths)

    def line(cells):
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    text = "\n".join(title + ["", line(columns), sep] + [line(b) for b in body])
    md = "\n".join(
        [f"### {title[0]}", ""]
        + [f"- {t}" for t in title[1:]]
        + [""]
        + ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        + ["| " + " | ".join(str(c).replace("|", "\\|") for c in b) + " |" for b in body]
    )
    return text, md


def summary_lines(rows: list[Row]) -> list[str]:
    out = []
    for direct in (r for r in rows if r.kind == "ceiling-direct" and r.ok):
        exports = [r for r in rows if r.kind == "export" and r.ok and (r.cache, r.frames) == (direct.cache, direct.frames)]
        if exports:
            out.append(
                f"vs the direct-write copy of the {direct.frames}-frame acquisition ({direct.mb_s:.0f} MB/s): "
                + ", ".join(f"{r.label} {r.mb_s / direct.mb_s:.2f}×" for r in exports)
            )
    two = next(
        (r for r in rows if r.kind == "export" and r.fmt == "tiff" and r.cache == "cold" and r.cores and r.cores > 1 and r.ok),
        None,
    )
    one = next((r for r in rows if r.kind == "export" and r.label.startswith("tiff --cores 1") and r.ok), None)
    if one and two:
        out.append(
            f"tiff speed-up --cores {two.cores} vs --cores 1: {one.wall_s / two.wall_s:.2f}× "
            f"({one.wall_s:.1f} s → {two.wall_s:.1f} s wall)"
        )
    for r in rows:
        if r.kind == "export" and r.ok and r.jobs_s_sum:
            overhead = r.wall_s - r.jobs_s_sum / (r.cores or 1)
            out.append(
                f"{r.label}: {r.extra.get('n_plane_jobs')} plane jobs, Σ job s {r.jobs_s_sum:.1f} "
                f"(max {r.extra.get('max_plane_job_s') or 0:.1f} s); wall − Σjob/cores ≈ {overhead:.1f} s "
                f"of Snakemake start-up, DAG and non-plane jobs; plane-job max_rss in {r.peak_rss_job}"
                + "".join(f"; {rule} jobs Σ {sec:.1f} s" for rule, sec in (r.extra.get("other_jobs_s") or {}).items())
                + (
                    f"; other jobs max_rss {r.extra['other_jobs_max_rss'][0]:.0f} MiB"
                    if r.extra.get("other_jobs_max_rss")
                    else ""
                )
                + (
                    f"; Snakemake main process HWM {r.extra['snakemake_main_hwm_mib']:.0f} MiB"
                    if r.extra.get("snakemake_main_hwm_mib")
                    else ""
                )
            )
    return out


# --------------------------------------------------------------------------- profile


_NOT_IMPORT = (
    r"^(?!.*(importlib|<frozen|<module>|builtins\.exec|__import__|_imp\.|marshal\.|builtins\.compile"
    r"|sre_|_compiler\.py|_parser\.py))"
)


def profile_plane(raw: Path, workdir: Path, chunk_mb: float | None, top: int = 10) -> str:
    prof_dir = workdir / "profile"
    remove(prof_dir)
    prof_dir.mkdir(parents=True)
    base = [sys.executable, str(PROFILE_DRIVER), "--input", str(raw), "--workdir", str(prof_dir), "--format", "tiff"]
    if chunk_mb is not None:
        base += ["--target-chunk-mb", str(chunk_mb)]
    prep = subprocess.run(base + ["--prepare"], capture_output=True, text=True)
    if prep.returncode != 0:
        return f"profile: index step failed:\n{prep.stderr[-2000:]}"
    main_prof = workdir / "plane_main.prof"
    thread_prefix = str(workdir / "plane_thread")
    for old in workdir.glob("plane_thread.*.prof"):
        old.unlink()
    cmd = [sys.executable, "-m", "cProfile", "-o", str(main_prof), *base[1:], "--thread-profiles", thread_prefix]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        return f"profile: plane job failed:\n{run.stderr[-2000:]}"
    result = next((json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"job"')), {})
    prepared = next((line for line in prep.stdout.splitlines() if line.startswith("{")), "{}")
    parts = [
        f"prepared with steps.index_source (+ the correction records the plan asks for): {prepared}",
        f"profile of one TIFF plane job ({result.get('job')}), warm cache, in-process (no Snakemake): "
        f"write_plane {result.get('write_plane_s')} s, process wall {wall:.1f} s, "
        f"exact peak RSS {result.get('peak_rss_mib')} MiB, {result.get('output_bytes', 0) / MB:.1f} MB written",
        f"main thread: {main_prof}",
    ]
    import io

    def top_text(path: Path, sort: str) -> str:
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        # hide the interpreter's start-up and import frames: they are not the plane job
        stats.strip_dirs().sort_stats(sort).print_stats(_NOT_IMPORT, top)
        text = stream.getvalue()
        start = text.find("   ncalls")
        return text[start:].rstrip() if start >= 0 else text.rstrip()

    parts.append(
        f"-- main thread, top {top} by cumulative time (import machinery hidden) --\n{top_text(main_prof, 'cumulative')}"
    )
    parts.append(f"-- main thread, top {top} by own time --\n{top_text(main_prof, 'tottime')}")
    for thread_prof in sorted(workdir.glob("plane_thread.*.prof")):
        parts.append(f"-- thread {thread_prof.name}, top {top} by cumulative time --\n{top_text(thread_prof, 'cumulative')}")
        parts.append(f"-- thread {thread_prof.name}, top {top} by own time --\n{top_text(thread_prof, 'tottime')}")
    remove(prof_dir)
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- long runs, demo


def long_acquisition_rows(args: argparse.Namespace, workdir: Path, cores: int, state: str, logs: Path) -> list[Row]:
    """The direct-write copy and one workflow run per format of the ``--long-frames`` acquisition."""
    settings = acquisition_spec(args.long_frames, args.planes, args.phase_offset)
    raw, raw_files, gen_s = ensure_acquisition(workdir, settings)
    log(
        f"long acquisition: {raw}, {sum(p.stat().st_size for p in raw_files) / 1e9:.2f} GB; "
        + (f"generated in {gen_s:.1f} s" if gen_s is not None else "cached")
    )
    cache = PageCache(raw_files, args.cold_method)
    suffix = f", {args.long_frames} frames"
    rows = [best_of(args.repeat, lambda: copy_ceiling(raw_files, workdir / "copy_ceiling", cache, state, direct=True))]
    rows[0].label += suffix
    log(f"  {rows[0].label}: {rows[0].mb_s:.0f} MB/s")
    for fmt in args.formats:
        label = f"{fmt} --cores {cores}{suffix}"
        log(f"running {label} ({state}) ...")

        def one_run():
            row, run_dir = run_workflow(fmt, raw, workdir, cores, cache, state, args.target_chunk_mb, logs, label)
            remove(run_dir)
            return row

        rows.append(best_of(args.repeat, one_run))
        log(f"  {rows[-1].status if not rows[-1].ok else f'{rows[-1].mb_s:.0f} MB/s'}")
    for row in rows:
        row.frames = args.long_frames
    return rows


def demo_fixed_cost(folder: Path, cores: int, runs: int, logs: Path) -> list[str]:
    """The fixed cost per run on the demo (the shipped default config): Snakemake start to the
    first plane job, last plane job to exit. The first run generates the demo and is not counted."""
    import yaml

    remove(folder)
    folder.mkdir(parents=True)
    with open(REPO / "config" / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    config["show_progress"] = False
    cfg = folder / "config.yaml"
    cfg.write_text(json.dumps(config))
    cmd = snakemake_command(folder, cfg, cores)
    work = folder / config["outdir"] / ".imexport"
    measured = []
    for attempt in range(runs + 1):
        remove(folder / config["outdir"])
        t0, started = time.perf_counter(), time.time()
        with open(logs / f"demo_{attempt}.log", "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=folder)
        wall, ended = time.perf_counter() - t0, time.time()
        if proc.returncode != 0:
            return [f"demo fixed cost: run failed, see {logs / f'demo_{attempt}.log'}"]
        if attempt == 0:
            continue  # generated the demo acquisition
        plane = [r for r in benchmark_records(work) if r["_file"].startswith("write")]
        measured.append({"wall": wall, **fixed_cost(work, plane, started, ended)})
    remove(folder)
    if not measured or "before_first_plane_job_s" not in measured[0]:
        return ["demo fixed cost: no plane job benchmark records found"]
    best = min(measured, key=lambda m: m["before_first_plane_job_s"] + m["after_last_plane_job_s"])
    return [
        f"demo (shipped default config, --cores {cores}; best of {len(measured)}): wall {best['wall']:.2f} s, "
        f"{best['before_first_plane_job_s']:.2f} s to the first plane job + {best['after_last_plane_job_s']:.2f} s "
        f"after the last = {best['before_first_plane_job_s'] + best['after_last_plane_job_s']:.2f} s fixed cost "
        f"(all runs: "
        + ", ".join(f"{m['before_first_plane_job_s']:.2f}+{m['after_last_plane_job_s']:.2f}" for m in measured)
        + ")"
    ]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="frames (volumes) of the generated acquisition")
    parser.add_argument("--planes", type=int, default=14, help="z-planes of the generated acquisition")
    parser.add_argument("--formats", default=",".join(ALL_FORMATS), help="comma-separated: tiff,bin,zarr,h5,nwb")
    parser.add_argument(
        "--phase-offset",
        type=float,
        default=0.6,
        help="bidirectional scan-phase error of the generated data, px (default 0.6: a typical "
        "resonant scanner's, so every odd row is resampled; 0 = none, nothing to correct)",
    )
    parser.add_argument(
        "--long-frames",
        type=int,
        default=1000,
        help="also a direct-write copy and one run per format of an acquisition with this many frames (0 = skip)",
    )
    parser.add_argument(
        "--demo-runs",
        type=int,
        default=3,
        help="runs of the shipped default config (the demo) that measure the fixed cost per run (0 = skip)",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true", help="keep the exported outputs (default: delete after measuring)")
    parser.add_argument("--reference-python", default=None, help="interpreter where `import mbo_utilities` works")
    parser.add_argument("--cores", type=int, default=None, help="--cores of the main runs (default: all usable CPUs)")
    parser.add_argument(
        "--target-chunk-mb", type=float, default=None, help="target_chunk_mb of the runs (default: the workflow default)"
    )
    parser.add_argument("--no-cores1", action="store_true", help="skip the tiff --cores 1 row")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-cache tiff row")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure every row N times and keep the fastest (for a machine with other load)"
    )
    parser.add_argument(
        "--cold-method",
        choices=["auto", "fadvise", "drop_caches"],
        default="auto",
        help="how cold rows evict the raw data (auto: fadvise if fincore can verify it, else drop_caches)",
    )
    parser.add_argument(
        "--no-inprocess", action="store_true", help="skip the tiff in-process row (all plane jobs in one process, no Snakemake)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one tiff plane job (benchmarks/profile_plane.py)")
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in args.formats if f not in ALL_FORMATS]
    if unknown:
        parser.error(f"--formats: unknown {unknown}; valid: {', '.join(ALL_FORMATS)}")
    if args.frames < 1 or args.planes < 1:
        parser.error("--frames and --planes must be >= 1")
    if args.long_frames < 0 or args.demo_runs < 0:
        parser.error("--long-frames and --demo-runs must be >= 0")
    return args


def main() -> int:
    args = parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    machine = machine_info(workdir)
    usable = int(machine["nproc"])
    cores = args.cores or usable

    from imexport.config import validate

    chunk_mb = float(args.target_chunk_mb if args.target_chunk_mb is not None else validate({})["target_chunk_mb"])
    rss_limit = 2 * chunk_mb + 300

    settings = acquisition_spec(args.frames, args.planes, args.phase_offset)
    log(f"acquisition: AcquisitionSpec({', '.join(f'{k}={v}' for k, v in settings.items())})")
    raw, raw_files, gen_s = ensure_acquisition(workdir, settings)
    raw_bytes = sum(p.stat().st_size for p in raw_files)
    out_h, out_w = max(settings["roi_heights"]), settings["width"] * len(settings["roi_heights"])
    expected_out = args.frames * args.planes * out_h * out_w * 2
    gen_line = f"generated in {gen_s:.1f} s" if gen_s is not None else "cached (generated earlier, see spec.json)"
    log(f"raw: {raw} — {len(raw_files)} files, {raw_bytes / 1e9:.2f} GB; {gen_line}")
    log(f"output per format: {args.planes} planes × {args.frames} frames × {out_h}×{out_w} int16 = {expected_out / 1e9:.2f} GB")
    if gen_s is None:
        try:
            gen_s_cached = json.loads((raw.parent / "spec.json").read_text()).get("generation_s")
        except (OSError, ValueError):
            gen_s_cached = None
    else:
        gen_s_cached = gen_s

    cache = PageCache(raw_files, args.cold_method)
    log(f"cache: {cache.label}")
    bytecode = compile_package_bytecode()
    log(bytecode)
    rows: list[Row] = []
    kept: list[Path] = []

    # copy ceiling
    states = ["cold", "warm"] if cache.cold_possible else ["warm"]
    main_state = "cold" if cache.cold_possible else "warm"
    for state, direct in [(s, False) for s in states] + [(main_state, True)]:
        row = best_of(args.repeat, lambda: copy_ceiling(raw_files, workdir / "copy_ceiling", cache, state, direct))
        resident = row.extra.get("raw_resident_before")
        log(
            f"  {row.label}: {row.mb_s:.0f} MB/s ({row.wall_s:.2f} s)"
            + ("" if resident is None else f", raw data in page cache before: {100 * resident:.0f}%")
        )
        rows.append(row)

    hashing_line = hash_new_recording(raw_files, workdir / "input_digests", cache, main_state)
    log(hashing_line)

    ref_ok, ref_status = reference_available(args.reference_python)

    # one workflow run per format
    plan = [(fmt, cores, main_state, f"{fmt} --cores {cores}", None) for fmt in args.formats]
    if "tiff" in args.formats:
        # the cost of each correction: scan phase off, and axial registration on
        plan.append(("tiff", cores, main_state, f"tiff --cores {cores}, fix_phase off", {"scan_phase": {"fix_phase": False}}))
        plan.append(("tiff", cores, main_state, f"tiff --cores {cores} + register_z", {"register_z": True}))
    if "tiff" in args.formats and not args.no_cores1 and cores > 1:
        plan.append(("tiff", 1, main_state, "tiff --cores 1", None))
    if "tiff" in args.formats and not args.no_warm and main_state == "cold":
        plan.append(("tiff", cores, "warm", f"tiff --cores {cores} (warm)", None))
    for fmt, n_cores, state, label, extra_config in plan:
        log(f"running {label}{'' if '(warm)' in label else f' ({state})'} ...")
        run_dirs = []

        def one_run():
            row, run_dir = run_workflow(fmt, raw, workdir, n_cores, cache, state, args.target_chunk_mb, logs, label, extra_config)
            run_dirs.append(run_dir)
            if not args.keep:
                remove(run_dir)
            return row

        row = best_of(args.repeat, one_run)
        run_dir = run_dirs[-1]
        rows.append(row)
        resident = row.extra.get("raw_resident_before")
        resident = "" if resident is None else f", raw data in page cache before: {100 * resident:.0f}%"
        if row.ok:
            log(
                f"  {row.bytes / 1e9:.2f} GB in {row.wall_s:.1f} s = {row.mb_s:.0f} MB/s, "
                f"peak RSS/job {fmt_num(row.peak_rss_mib, 0)} MiB, sync +{row.sync_s:.1f} s{resident}"
            )
        else:
            log(f"  {row.status}")
        if args.keep:
            kept.append(run_dir)

    if args.long_frames:
        rows += long_acquisition_rows(args, workdir, cores, main_state, logs)

    if "tiff" in args.formats and not args.no_inprocess:
        log(f"running tiff in-process ({main_state}) ...")
        row = best_of(args.repeat, lambda: run_inprocess("tiff", raw, workdir, cache, main_state, args.target_chunk_mb, logs))
        rows.append(row)
        log(f"  {row.status if not row.ok else f'{row.bytes / 1e9:.2f} GB in {row.wall_s:.1f} s = {row.mb_s:.0f} MB/s'}")

    # reference rows
    # the reference writes no NWB
    reference_runs = [(fmt, False) for fmt in args.formats if fmt in REFERENCE_EXT]
    reference_runs += [("tiff", True)] if "tiff" in args.formats else []
    for fmt, register_z in reference_runs:
        label = f"reference {fmt}{' + register_z' if register_z else ''} (mbo_utilities)"
        if ref_ok:
            log(f"running {label} ...")
            row = best_of(
                args.repeat, lambda: run_reference(args.reference_python, fmt, raw, workdir, cache, main_state, logs, register_z)
            )
            log(f"  {row.status if not row.ok else f'{row.mb_s:.0f} MB/s'}")
        else:
            row = Row(label, "reference", fmt=fmt, status=ref_status)
        rows.append(row)

    for row in rows:
        row.frames = row.frames or args.frames
    demo_lines = demo_fixed_cost(workdir / "demo", cores, args.demo_runs, logs) if args.demo_runs else []

    header = {
        "spec_line": f"{args.planes} planes × {args.frames} frames, 2 ROIs of 224×448 → {out_h}×{out_w} int16, "
        f"{expected_out / 1e9:.2f} GB output / {raw_bytes / 1e9:.2f} GB raw; --cores {cores}",
        "cache_label": cache.label + (f"; rows are best of {args.repeat}" if args.repeat > 1 else "") + f"; {bytecode}",
        "chunk_mb": chunk_mb,
        "rss_limit_mib": rss_limit,
    }
    text, md = build_table(rows, machine, header)
    extra = [hashing_line] + summary_lines(rows) + demo_lines
    gen_note = "generation of the acquisition: " + (f"{gen_s_cached:.1f} s" if gen_s_cached is not None else "time unknown")
    gen_note += " (not part of any ratio" + ("; reused from the cache this run)" if gen_s is None else ")")
    log("")
    log(text)
    log("")
    for line in [gen_note, *extra]:
        log(line)
    checked = [r for r in rows if r.kind == "export" and job_peak_mib(r) is not None]
    over = [r for r in checked if job_peak_mib(r) > rss_limit]
    memory_line = (
        f"memory check (peak RSS per plane job ≤ 2×{chunk_mb:g}+300 = {rss_limit:.0f} MiB, "
        f"max of Snakemake max_rss and VmHWM, {args.frames} frames): "
        + (
            "no successful export to check"
            if not checked
            else "PASS"
            if not over
            else "FAIL: " + ", ".join(f"{r.label} {job_peak_mib(r):.0f} MiB" for r in over)
        )
    )
    extra.append(memory_line)
    log(memory_line)
    (workdir / "bench_table.md").write_text(md + "\n\n" + "\n".join(f"- {line}" for line in [gen_note, *extra]) + "\n")
    results = {
        "machine": machine,
        "header": header,
        "raw": str(raw),
        "raw_bytes": raw_bytes,
        "generation_s": gen_s_cached,
        "rows": [{**{k: v for k, v in r.__dict__.items()}, "mb_s": r.mb_s} for r in rows],
    }
    (workdir / "bench_results.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"\ntable: {workdir / 'bench_table.md'}; raw numbers: {workdir / 'bench_results.json'}; logs: {logs}")

    if args.profile:
        log("\nprofiling one tiff plane job ...")
        report = profile_plane(raw, workdir, args.target_chunk_mb)
        (workdir / "profile.txt").write_text(report + "\n")
        log(report)
    if kept:
        log("kept: " + ", ".join(str(p) for p in kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
