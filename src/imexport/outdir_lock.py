"""One run per output folder: a lock file ``outdir/.imexport/run.lock``.

Snakemake's own lock lives in the working directory, so two runs started from two
folders (or the API and a workflow) could export into one output folder at once and
overwrite each other's files and manifest. The lock names its holder (host, PID, the
process's start time, working directory, start time) so that a refusal says who holds it.

A lock left by a process that is gone is taken over, but only on the host that took it:
whether a PID on another machine is alive cannot be known from here, so such a lock is
reported with how to clear it. The check for "gone" compares the kernel's start time of
the PID too, so a recycled PID does not keep a dead run's lock alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAME = "run.lock"


class OutdirLockedError(ValueError):
    """Another run exports into the same output folder."""


def lock_path(work: str | Path) -> Path:
    return Path(work) / LOCK_NAME


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: count fields after its closing parenthesis
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(holder: dict[str, Any]) -> bool:
    pid = int(holder["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _process_start(pid)
    return started is None or holder.get("process_start") in (None, started)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or damaged
    return holder if isinstance(holder, dict) and "pid" in holder and "host" in holder else {}


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}, "
        f"working directory {holder.get('cwd')}"
    )


def _refusal(path: Path, holder: dict[str, Any]) -> OutdirLockedError:
    outdir = path.parent.parent
    if not holder:
        return OutdirLockedError(
            f"{outdir}: the lock {path} is unreadable (damaged, or another run is taking it just now); "
            f"if no imexport run exports into this folder, remove {path} and start again"
        )
    if holder["host"] != socket.gethostname():
        return OutdirLockedError(
            f"{outdir}: another imexport run exports into this folder ({_describe(holder)}); "
            f"wait for it to finish, or, if no run is active on {holder['host']} any more, remove {path} and start again"
        )
    return OutdirLockedError(
        f"{outdir}: another imexport run exports into this folder ({_describe(holder)}); "
        f"wait for it to finish or stop it: two runs into one folder overwrite each other's files and manifest"
    )


def _stale(holder: dict[str, Any] | None) -> bool:
    return bool(holder) and holder["host"] == socket.gethostname() and not _alive(holder)


def check_unlocked(work: str | Path) -> None:
    """Raise if a live run (or one on another host) holds the folder; read-only."""
    path = lock_path(work)
    holder = _read(path)
    if holder is None or _stale(holder) or _mine(holder):
        return
    raise _refusal(path, holder)


def _mine(holder: dict[str, Any]) -> bool:
    return bool(holder) and holder["host"] == socket.gethostname() and int(holder["pid"]) == os.getpid()


def acquire(work: str | Path) -> dict[str, Any]:
    """Take the folder's lock for this process; returns the holder record to release with.

    Taking over a stale lock happens under an ``flock`` on a sibling file, so two runs
    that find the same stale lock cannot both remove it and both go ahead.
    """
    path = lock_path(work)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "cwd": os.getcwd(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": secrets.token_hex(8),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if _mine(holder):
                return holder
            with open(path.with_name(f".{LOCK_NAME}.takeover"), "a") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                holder = _read(path)
                if not _stale(holder):
                    if holder is None:
                        continue  # released meanwhile
                    raise _refusal(path, holder) from None
                path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return me
    raise _refusal(path, _read(path) or {})


def release(work: str | Path, holder: dict[str, Any]) -> None:
    """Remove the lock if it is still ``holder``'s (never another run's)."""
    path = lock_path(work)
    current = _read(path)
    if current and current.get("token") == holder.get("token"):
        path.unlink(missing_ok=True)


@contextmanager
def locked(work: str | Path) -> Iterator[dict[str, Any]]:
    holder = acquire(work)
    try:
        yield holder
    finally:
        release(work, holder)
