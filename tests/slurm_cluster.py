"""A throw-away one-node SLURM cluster on localhost, for tests.

``one_node_cluster(workdir)`` starts munged, slurmctld and slurmd from the
distribution's packages (see tests/install_slurm.sh), waits until the node is
idle, yields a :class:`SlurmCluster` describing it and, on exit, stops every
daemon it started, by PID, and checks that they are gone.

Why it is built the way it is:

* No systemd on the test machines, so nothing starts by itself and the
  packages' unit files are irrelevant: every daemon is started here in the
  foreground (``-F`` / ``-D``) with :class:`subprocess.Popen`, so the PID we
  kill later is exactly the process we started (no pidfile races, no
  daemonising double fork).
* Every path (config, state, spool, pid files, logs) lives under ``workdir``
  so parallel or stale clusters cannot share state, and the logs end up next
  to the test that produced them.  The single exception is munge's runtime
  directory: munged must run as user ``munge`` and refuses keys/sockets in
  directories it does not own, while pytest's ``tmp_path`` sits below a 0700
  root-owned directory that user ``munge`` cannot even enter.  That directory
  is therefore a private temp dir (key, socket, seed), removed on exit; its
  log goes to ``workdir/logs/munged.out`` like the other daemons' output.
* Ports are picked free at start-up instead of SLURM's fixed 6817/6818, so a
  stale cluster from a killed test run (or a real one) cannot collide.
* The hostname of these machines is not ``localhost``; naming both the
  controller and the node ``localhost`` (and starting ``slurmd -N localhost``)
  makes the configuration independent of the machine's name.
* No accounting daemon: ``sacct`` fails, so job records must stay in
  slurmctld's memory long enough for ``squeue`` polling (``MinJobAge``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Binaries the harness calls.  Daemons live in /usr/sbin, which is not always
# on PATH for non-login shells, hence the explicit fallback in _find().
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "unmunge", "scontrol", "sinfo", "squeue", "sbatch", "scancel", "srun")

NODE = "localhost"
PARTITION = "debug"
BRINGUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0

# Environment variables that would make the SLURM clients (or the Snakemake
# plugin) talk to another cluster or believe they already run inside a job,
# e.g. when the test suite itself runs inside an allocation of a real cluster.
_FOREIGN_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")


class ClusterUnavailable(RuntimeError):
    """The cluster could not be brought up (missing packages, not root, a
    daemon that did not start).  Tests may turn this into a skip locally."""


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        cand = Path(d, name)
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def check_binaries() -> dict[str, str]:
    """Return {name: path} for every needed binary or raise ClusterUnavailable
    naming the missing ones and how to install them."""
    paths = {n: _find(n) for n in DAEMONS + CLIENTS}
    missing = sorted(n for n, p in paths.items() if p is None)
    if missing:
        raise ClusterUnavailable(
            f"SLURM/munge binaries not found: {', '.join(missing)}. "
            "Install them with `bash tests/install_slurm.sh` "
            "(apt-get install slurmctld slurmd slurm-client munge)."
        )
    return {n: p for n, p in paths.items() if p is not None}


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without foreign SLURM settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    # A user-level Snakemake profile would silently change how the tests'
    # snakemake calls behave.
    env.pop("SNAKEMAKE_PROFILE", None)
    if extra:
        env.update(extra)
    return env


def _free_ports(n: int) -> list[int]:
    # Bind all sockets before closing any, so the n ports are distinct.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 4096


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text[-lines:])


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # Field 3 is the state; the command name in field 2 may contain
            # spaces/parentheses, so split after the last ')'.
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def run_with_timeout(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    cwd: Path | None = None,
    grace: float = 20.0,
) -> tuple[int, str]:
    """Run ``cmd`` in its own session, stdout+stderr to ``log_path``.

    On timeout the whole process group first gets SIGINT (Snakemake then
    cancels its SLURM jobs and exits), then SIGKILL after ``grace`` seconds,
    so a polling bug fails the test instead of hanging it.  Returns
    (returncode, log text); returncode is -9999 after a timeout.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = -9999
        finally:
            # Children that outlived the leader (e.g. a stuck shell) must
            # not leak into the next test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    text = log_path.read_text(errors="replace")
    if rc == -9999:
        text += f"\n<<< TIMEOUT after {timeout:.0f}s: process group SIGINT/SIGKILLed >>>"
    return rc, text


@dataclass
class SlurmJob:
    job_id: int
    name: str
    state: str
    cpus: int  # CPUs it asked for (sbatch --cpus-per-task)
    memory_mb: int  # memory it asked for (sbatch --mem)
    time_limit_min: int | None  # wall-clock limit (sbatch -t); None: unlimited


def _minutes(limit: str) -> int | None:
    """squeue's time limit ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in minutes."""
    if limit in ("UNLIMITED", "INVALID", "NOT_SET"):
        return None
    days, _, clock = limit.rpartition("-")
    fields = [int(f) for f in clock.split(":")]
    hours, minutes, seconds = [0] * (3 - len(fields)) + fields
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def _megabytes(memory: str) -> int:
    """squeue's minimum memory (``2400M``, ``4G``) in MB."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return round(float(memory[:-1]) * units[memory[-1]]) if memory[-1] in units else int(memory)


@dataclass
class SlurmCluster:
    """What a test needs to use the cluster."""

    workdir: Path
    conf: Path  # slurm.conf
    log_dir: Path  # slurmctld.log, slurmd.log, <daemon>.out (stdout/stderr)
    munge_socket: Path
    env: dict[str, str]  # variables to add to a clean environment (SLURM_CONF)
    cpus: int
    real_memory_mb: int
    pids: dict[str, int] = field(default_factory=dict)
    bringup_seconds: float = 0.0
    munge_dir: Path | None = None  # key + socket (outside workdir, see module doc)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A full environment for subprocesses that use this cluster."""
        env = clean_environ(self.env)
        if extra:
            env.update(extra)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``squeue``, ``scontrol``...) against this cluster."""
        return subprocess.run(
            list(args),
            env=self.environ(),
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still knows (all states; kept MinJobAge seconds)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%C|%m|%l").stdout
        jobs = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 6 and parts[0].isdigit():
                jobs.append(SlurmJob(int(parts[0]), parts[1], parts[2], int(parts[3]), _megabytes(parts[4]), _minutes(parts[5])))
        return sorted(jobs, key=lambda j: j.job_id)

    def submitted_job_ids_from_log(self) -> list[int]:
        """Job ids of batch submissions as logged by slurmctld (independent of
        squeue, so the two can be cross-checked)."""
        text = (self.log_dir / "slurmctld.log").read_text(errors="replace")
        return sorted({int(m) for m in re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", text)})

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for name in sorted(self.log_dir.glob("*")):
            if name.is_file():
                parts.append(f"----- {name} (last {lines} lines) -----\n{_tail(name, lines)}")
        return "\n".join(parts)


def _write_config(
    workdir: Path,
    *,
    cpus: int,
    real_memory_mb: int,
    munge_socket: Path,
    ctld_port: int,
    slurmd_port: int,
    log_dir: Path,
) -> Path:
    state = workdir / "state"
    spool = workdir / "spool"
    run = workdir / "run"
    for d in (state, spool, run):
        d.mkdir(parents=True, exist_ok=True)
    conf = workdir / "slurm.conf"
    conf.write_text(
        f"""\
# Generated by tests/slurm_cluster.py for a throw-away one-node test cluster.
ClusterName=imexport-test
# The machine's hostname is not 'localhost'; naming controller and node
# 'localhost' (slurmd is started with -N localhost) avoids depending on it.
SlurmctldHost={NODE}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# Root runs everything; fine for a test box, avoids chown-ing the tmp dirs.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged, not the system one (which is not running without systemd).
AuthInfo=socket={munge_socket}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldLogFile={log_dir}/slurmctld.log
SlurmdLogFile={log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in the test containers: track processes by parent PID and do no
# task binding.  These need no cgroup.conf.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct fails, so the workflow polls with squeue, which only
# sees jobs slurmctld still holds.  Keep finished jobs for an hour (the
# plugin wants MinJobAge >= 3x its initial status-check delay, and the tests
# count submitted jobs with squeue after long workflow runs).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
# mail(1) is not installed; a real path silences slurmctld's startup error.
MailProg=/bin/true
# Bring the node back to service by itself after a slurmd restart.
ReturnToService=2
# Trust the node line below even where the hardware is smaller (a 2-core CI
# box can then accept jobs that request the production profile's CPUs and
# memory); without cgroups nothing is enforced anyway.
SlurmdParameters=config_overrides
# Short timeouts: a dead daemon should surface within the test's timeouts.
SlurmdTimeout=30
MessageTimeout=10
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _write_client_shims(shim_dir: Path, conf: Path, bins: dict[str, str]) -> Path:
    """Wrappers for the SLURM clients that pin SLURM_CONF to this cluster.

    Needed because snakemake-executor-plugin-slurm-jobstep (0.6.1) removes
    every SLURM_* variable except a few job-identity ones, SLURM_CONF
    included, from the environment of the ``srun`` it runs inside each job.
    Real clusters keep slurm.conf at the default path (or run configless), so
    srun still finds it there; our config lives in the test's workdir, and
    without the shim srun dies with "Could not establish a configuration
    source".  The shims come first on the PATH that sbatch exports to jobs.
    """
    shim_dir.mkdir(parents=True, exist_ok=True)
    for name in ("srun", "sbatch", "squeue", "sinfo", "scontrol", "scancel"):
        shim = shim_dir / name
        shim.write_text(
            "#!/bin/sh\n"
            "# Generated by tests/slurm_cluster.py: always talk to the test cluster.\n"
            f"SLURM_CONF='{conf}'\n"
            "export SLURM_CONF\n"
            f"exec '{bins[name]}' \"$@\"\n"
        )
        shim.chmod(0o755)
    return shim_dir


def _stop_pid(pid: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    """SIGTERM, wait, SIGKILL.  True if the process is gone afterwards."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _pid_alive(pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()  # reap our own child so it does not linger as a zombie
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    return not _pid_alive(pid)


def _pids_with_marker(marker: bytes) -> list[int]:
    """PIDs whose environment carries ``marker``: our daemons and whatever
    they spawned (slurmstepd inherits slurmd's environment).  This finds
    leftovers precisely, without matching processes by name."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def one_node_cluster(
    workdir: Path,
    *,
    cpus: int | None = None,
    real_memory_mb: int | None = None,
    timeout: float = BRINGUP_TIMEOUT_S,
) -> Iterator[SlurmCluster]:
    """Bring up munged + slurmctld + slurmd on localhost under ``workdir``.

    ``cpus``/``real_memory_mb`` default to the machine's CPU count and 80 % of
    its memory.  Raises :class:`ClusterUnavailable` if the binaries are
    missing, we are not root, or the node is not idle within ``timeout`` s
    (the message includes the daemons' log tails).
    """
    bins = check_binaries()
    if os.geteuid() != 0:
        # slurmd must be root to launch jobs, munged must be started as user
        # munge, the daemons need root-owned state: no way around it.
        raise ClusterUnavailable("the one-node SLURM test cluster must be started as root")
    try:
        munge_user = pwd.getpwnam("munge")
    except KeyError:
        raise ClusterUnavailable("user 'munge' does not exist (is the munge package installed?)") from None

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    cpus = cpus or os.cpu_count() or 1
    real_memory_mb = real_memory_mb or max(1000, int(_mem_total_mb() * 0.8))

    # munge's runtime dir: see the module docstring for why not in workdir.
    # /run has a root-owned 0755 parent, which munged's path checks like;
    # fall back to the temp dir (sticky /tmp is accepted too).
    base = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    munge_dir = Path(tempfile.mkdtemp(prefix="imexport-munge-", dir=base))
    os.chown(munge_dir, munge_user.pw_uid, munge_user.pw_gid)
    # 0755: munged insists nobody else can write here; others may traverse so
    # non-root clients could reach the socket too.
    munge_dir.chmod(0o755)
    # Everything up to the daemons' start: on failure only the munge dir
    # (outside workdir) needs cleaning up.
    try:
        key = munge_dir / "munge.key"
        # 128 random bytes, like `mungekey`'s default 1024-bit key; fresh per
        # cluster so no other munged can forge credentials for it.
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(128))
        os.chown(key, munge_user.pw_uid, munge_user.pw_gid)
        munge_socket = munge_dir / "munge.socket"

        ctld_port, slurmd_port = _free_ports(2)
        conf = _write_config(
            workdir,
            cpus=cpus,
            real_memory_mb=real_memory_mb,
            munge_socket=munge_socket,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
            log_dir=log_dir,
        )
        shim_dir = _write_client_shims(workdir / "bin", conf, bins)
        cluster = SlurmCluster(
            workdir=workdir,
            conf=conf,
            log_dir=log_dir,
            munge_socket=munge_socket,
            env={"SLURM_CONF": str(conf), "PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"},
            cpus=cpus,
            real_memory_mb=real_memory_mb,
            munge_dir=munge_dir,
        )
    except BaseException:
        shutil.rmtree(munge_dir, ignore_errors=True)
        raise

    # A unique marker in the daemons' environment lets teardown find their
    # descendants (slurmstepd) by PID without matching on process names.
    marker_value = uuid.uuid4().hex
    marker = f"IMEXPORT_SLURM_CLUSTER_ID={marker_value}".encode()
    daemon_env = clean_environ({"SLURM_CONF": str(conf), "IMEXPORT_SLURM_CLUSTER_ID": marker_value})
    procs: dict[str, subprocess.Popen] = {}
    open_files = []

    def start(name: str, argv: list[str], **kw) -> subprocess.Popen:
        out = open(log_dir / f"{name}.out", "wb")
        open_files.append(out)
        # Own session: a Ctrl-C aimed at pytest must not kill the daemons
        # before teardown can stop them in order.
        p = subprocess.Popen(
            argv,
            env=daemon_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
            **kw,
        )
        procs[name] = p
        cluster.pids[name] = p.pid
        return p

    def fail(msg: str) -> ClusterUnavailable:
        return ClusterUnavailable(f"{msg}\n{cluster.log_tails()}")

    def wait_for(what: str, check, deadline: float) -> None:
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    raise fail(f"{name} (pid {p.pid}) exited with code {p.returncode} while waiting for {what}")
            if check():
                return
            if time.monotonic() > deadline:
                raise fail(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.25)

    def quiet(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv),
            env=daemon_env,
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )

    def munge_ok() -> bool:
        try:
            cred = quiet(bins["munge"], "-n", "-S", str(munge_socket))
            if cred.returncode != 0:
                return False
            return (
                subprocess.run(
                    [bins["unmunge"], "-S", str(munge_socket)],
                    input=cred.stdout,
                    capture_output=True,
                    text=True,
                    timeout=15,
                ).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False

    def ctld_up() -> bool:
        try:
            r = quiet(bins["scontrol"], "ping")
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0 and "UP" in r.stdout

    def node_idle() -> bool:
        try:
            r = quiet(bins["sinfo"], "--noheader", "--nodes", NODE, "--format=%T")
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0 and r.stdout.strip() == "idle"

    t0 = time.monotonic()
    deadline = t0 + timeout
    # Set only when the body finished normally: a teardown problem then
    # fails loudly, otherwise it must not mask the exception in flight.
    clean_exit = False
    try:
        # In the foreground munged logs to stderr, i.e. to logs/munged.out.
        start(
            "munged",
            [
                bins["munged"],
                "--foreground",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_dir}/munged.pid",
                f"--seed-file={munge_dir}/munged.seed",
            ],
            user=munge_user.pw_uid,
            group=munge_user.pw_gid,
            extra_groups=[],
        )
        wait_for("munged (munge -n | unmunge)", munge_ok, deadline)
        # -D: stay in the foreground (our PID is the daemon); -c: ignore any
        # saved state (there is none in a fresh workdir, but be explicit);
        # -i: ignore errors reading state files.
        start("slurmctld", [bins["slurmctld"], "-D", "-c", "-i", "-f", str(conf)])
        wait_for("slurmctld (scontrol ping)", ctld_up, deadline)
        start("slurmd", [bins["slurmd"], "-D", "-N", NODE, "-f", str(conf)])
        wait_for(f"node {NODE} to be idle (sinfo)", node_idle, deadline)
        cluster.bringup_seconds = time.monotonic() - t0
        yield cluster
        clean_exit = True
    finally:
        problems = _teardown(cluster, procs, marker, bins)
        for fh in open_files:
            fh.close()
        shutil.rmtree(munge_dir, ignore_errors=True)
        if problems:
            msg = "SLURM test cluster teardown left processes running: " + "; ".join(problems)
            if clean_exit:
                raise RuntimeError(msg)
            warnings.warn(msg, stacklevel=2)


def _teardown(cluster: SlurmCluster, procs: dict[str, subprocess.Popen], marker: bytes, bins: dict[str, str]) -> list[str]:
    # Cancel jobs first, while slurmctld/slurmd still run, so slurmstepd can
    # kill job processes and exit by itself.
    if "slurmctld" in procs and procs["slurmctld"].poll() is None:
        with contextlib.suppress(Exception):
            unfinished = [
                j for j in cluster.jobs() if j.state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")
            ]
            if unfinished:
                cluster.run(bins["scancel"], *[str(j.job_id) for j in unfinished], check=False)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                    j.state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for j in cluster.jobs()
                ):
                    time.sleep(0.5)
    # Stop in reverse start order: slurmd, slurmctld, munged.
    problems = []
    for name in reversed(list(procs)):
        p = procs[name]
        if not _stop_pid(p.pid, p, STOP_TIMEOUT_S):
            problems.append(f"{name} pid {p.pid}")
    # Leftover descendants (slurmstepd of a job that would not die).
    for pid in _pids_with_marker(marker):
        if not _stop_pid(pid, None, 5.0):
            problems.append(f"descendant pid {pid}")
    return problems
