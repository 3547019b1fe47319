"""imexport.user_errors.job, the frame of every Snakemake script job, run as Snakemake runs
a script: its own Python process, stderr on the screen. A user error is one line on screen;
a bug says so; the traceback and the job's INFO lines are in the job log only."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """\
import logging
from imexport.sources.info import SourceError
from imexport.user_errors import job

with job({log!r}):
    logging.getLogger("imexport").info("hashed into the cache")
    logging.getLogger("imexport").warning("a warning the user must see")
    {raise_}
"""


def run_job(tmp_path, raise_: str) -> tuple[subprocess.CompletedProcess, str, str]:
    log = tmp_path / "logs" / "job.log"
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(log=str(log), raise_=raise_))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    return result, str(log), log.read_text()


@pytest.mark.parametrize(
    "raise_, message",
    [
        ('raise SourceError("/data/a.tif: changed after the run indexed it")', "/data/a.tif: changed after the run indexed it"),
        ('open("/no/such/folder/x")', "[Errno 2] No such file or directory: '/no/such/folder/x'"),
    ],
    ids=["source_error", "os_error"],
)
def test_a_user_error_is_one_line_on_screen_and_a_traceback_in_the_log(tmp_path, raise_, message):
    result, log, logged = run_job(tmp_path, raise_)
    assert result.returncode == 1 and result.stdout == ""
    screen = result.stderr.splitlines()
    assert len(screen) == 2 and screen[0].endswith("WARNING imexport: a warning the user must see")
    assert screen[1] == f"imexport: {message} (job log: {log})"
    assert "Traceback (most recent call last)" in logged and logged.rstrip().endswith(message)
    assert "INFO imexport: hashed into the cache" in logged and "a warning the user must see" in logged


def test_an_unexpected_error_is_said_to_be_a_bug(tmp_path):
    result, log, logged = run_job(tmp_path, "1 + None")
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        f"imexport: unexpected TypeError: unsupported operand type(s) for +: 'int' and 'NoneType' "
        f"(a bug in imexport: please report it with the traceback in {log})"
    ]
    assert "Traceback" not in result.stderr and "Traceback (most recent call last)" in logged


def test_a_job_that_succeeds_prints_nothing_but_warnings(tmp_path):
    result, _, logged = run_job(tmp_path, "pass")
    assert result.returncode == 0
    assert [line.split(" ", 2)[2] for line in result.stderr.splitlines()] == ["WARNING imexport: a warning the user must see"]
    assert "INFO imexport: hashed into the cache" in logged
