"""What a user sees when a workflow run stops: one message, no Python traceback on screen.

Planning errors (config, inputs, overwrite conflicts, a held output folder) stop Snakemake
while it reads the workflow; a job's error stops that job, its traceback kept in the
job's log file, which Snakemake's "Error in rule" block names.

A user error is one the user can act on: an error class imexport defines (all are
ValueError subclasses naming the file, config key or value) or an OSError (a full disk, a
file size limit, a permission). Anything else is a bug, said as such.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("imexport")


def is_user_error(error: BaseException) -> bool:
    own = isinstance(error, ValueError) and type(error).__module__.partition(".")[0] == "imexport"
    return own or isinstance(error, OSError)


def stop_run(error: BaseException | str) -> NoReturn:
    """Stop a Snakemake run before any job (while it reads the workflow, or in its onstart
    handler): the message alone on stderr, exit status 1. Snakemake 9 lets SystemExit
    through as it is, where a WorkflowError is printed with its .smk file and line."""
    say(f"imexport: {error}")
    raise SystemExit(1)


@contextmanager
def job(log_file: str, debug: bool = False) -> Iterator[None]:
    """Run the body of a Snakemake script job: everything it logs goes to ``log_file``,
    warnings and errors also to the screen; an error ends the job with exit status 1,
    one line on screen and the traceback in ``log_file``."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, mode="w")
    to_screen = logging.StreamHandler()
    to_screen.setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[to_file, to_screen],
        force=True,
    )
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every error ends here, as one line
        # the traceback to the log file only (not through the logger: the screen handler would print it)
        to_file.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (error,), sys.exc_info()))
        if is_user_error(error):
            say(f"imexport: {error} (job log: {log_file})")
        else:
            say(
                f"imexport: unexpected {type(error).__name__}: {error} (a bug in imexport: please report it "
                f"with the traceback in {log_file})"
            )
        raise SystemExit(1) from None


def say(line: str) -> None:
    """``line`` on stderr in one write: parallel jobs share the screen, and print() writes
    the newline apart, which lets another job's line land in between."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
