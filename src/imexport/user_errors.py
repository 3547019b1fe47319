"""What a user sees when a workflow run stops: one message, no Python traceback on screen.

Planning errors (config, inputs, overwrite conflicts, a held output folder) stop Snakemake
while it reads the workflow; a job's error stops that job, its traceback kept in the
job's log file, which Snakemake's "Error in rule" block names.

A user error is one the user can act on: an error class imexport defines (all are
ValueError subclasses naming the file, config key or value) or an OSError (a full disk, a
file size limit, a permission). Anything else is a bug, said as such.

Libraries say things too: tifffile logs a warning for each piece of a damaged TIFF it
reads past, naming a page or tag but not the file. Those never reach the screen raw: a
reader holds them (:func:`held_warnings`) and says them once, naming the file; in a job
they go to the job's log only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("imexport")

LIBRARY_LOGGERS = ("tifffile",)  # libraries whose warnings go to a job's log, never its screen


class _Held(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


@contextmanager
def held_warnings(library: str) -> Iterator[list[str]]:
    """Hold what ``library``'s logger warns within the block (each message once) instead
    of letting it reach a handler: the caller says it, naming the file."""
    logger = logging.getLogger(library)
    messages: list[str] = []
    handler, propagate = _Held(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _not_from_libraries(record: logging.LogRecord) -> bool:
    return record.name.partition(".")[0] not in LIBRARY_LOGGERS


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
    to_screen.addFilter(_not_from_libraries)  # planning named the damaged file already
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
