"""The sessions sheet: many recordings in one run, each exported as it would be alone.

``sessions: path/to/sessions.tsv`` in the config names a tab-separated sheet, one row per
recording: ``session`` (a unique name), ``input``, and any column overriding a config key
for that row, spelled as in the config (``planes``, ``format``, ``metadata.dz``,
``outdir``). A cell is a YAML value (``[1, 3]``, ``16.0``); an empty cell keeps the
config's value; ``session`` and ``input`` are plain text. Lines starting with ``#`` are
comments.

A session's config is the run's config, ``outdir`` set to ``<outdir>/<session>``, then its
row's cells; it is validated and planned by :func:`plan_for_config`, as a run of that
config alone would be, so its outputs are the same bytes. The run-level keys
(:data:`SHEET_KEYS`) are never part of a session's config. Without a sheet the config is
the one session, without a name.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .config import load_schema, validate
from .demo import demo_active
from .guard import check_overwrite, planned_records
from .input_content import InputDigests, input_digests
from .pipeline import Pipeline
from .plan import Plan
from .workflow_plan import plan_for_config

SHEET_KEYS = ("sessions", "only_sessions", "skip_failed_sessions")  # the run's, not a session's
SESSIONS_SCHEMA = Path(__file__).with_name("schema") / "sessions.schema.yaml"
TEXT_COLUMNS = ("session", "input")  # not YAML: a session "001" stays "001"


class SheetError(ValueError):
    """A sessions sheet that cannot be read, or a row or cell it rejects (named)."""


class SessionError(ValueError):
    """A session that cannot be planned: the message names the session and its sheet line."""


@dataclass(frozen=True)
class Row:
    session: str
    line: int  # in the sheet file, 1-based (the header is line 1 unless comments precede it)
    cells: dict[str, Any]  # column -> value, empty cells left out; input included


@dataclass
class Session:
    name: str | None  # None: the config without a sheet
    line: int | None
    config: dict[str, Any]  # validated, every default filled
    plan: Plan
    digests: InputDigests  # input file -> its sha256 (input_content.input_digests)
    records: dict[str, dict[str, Any]]  # output key -> its record (guard.planned_records)
    pipeline: Pipeline  # every step, with what it needs and makes


@dataclass(frozen=True)
class FailedSession:
    name: str
    line: int
    reason: str


@dataclass
class Sessions:
    planned: list[Session]
    failed: list[FailedSession]  # only with skip_failed_sessions: true
    sheet: str | None
    run_config: dict[str, Any]  # the one session's config, or the run's (validated) with a sheet

    def by_outdir(self) -> dict[str, Session]:
        return {s.plan.outdir: s for s in self.planned}


def plan_sessions(
    config: dict[str, Any], check_folder: Callable[[str], None] | None = None, say: Callable[[str], None] | None = None
) -> Sessions:
    """Every session of ``config`` planned, each checked as a run of it alone is: its output
    folder by ``check_folder`` (called with its work folder), then against overwriting
    (``guard.check_overwrite``) with its inputs' content digests, hashing only inputs changed
    since they were last hashed (``say``: where to tell the user how much is read).

    One after the other: each file's header is read once, and 100 sessions of 3 files plan
    in about 2 s of CPU (20 ms a session); threads were 10-20 % slower (the GIL: headers are
    parsed in Python)."""
    run = validate(config)  # the run-level keys too; a session's own values are checked when it is planned
    sheet = run.get("sessions")
    if not sheet:
        only = _planned(None, None, session_config(config), check_folder, say)
        return Sessions([only], [], None, only.config)
    rows = chosen(read_sheet(sheet), run.get("only_sessions"), sheet)
    results = [_plan_row(config, run["outdir"], row, check_folder, say) for row in rows]
    planned = [r for r in results if isinstance(r, Session)]
    failed = [r for r in results if isinstance(r, FailedSession)]
    if failed and not run.get("skip_failed_sessions"):
        first = failed[0]
        raise SessionError(
            f"session {first.name} ({sheet}, line {first.line}): {first.reason}\n"
            "  (skip_failed_sessions: true exports the other sessions and lists this one as failed)"
        )
    if not planned:
        reasons = "\n  ".join(f"{f.name} (line {f.line}): {f.reason}" for f in failed)
        raise SessionError(f"no session of {sheet} could be planned:\n  {reasons}")
    _check_outdirs_apart(planned, sheet, run["outdir"])
    return Sessions(planned, failed, str(sheet), run)


def session_config(config: dict[str, Any], row: Row | None = None, root_outdir: str | None = None) -> dict[str, Any]:
    """The config of one session: ``config`` without the run-level keys, with the row's
    cells over it and, unless the row sets it, ``outdir`` = ``<root_outdir>/<session>``."""
    own = {key: copy.deepcopy(value) for key, value in config.items() if key not in SHEET_KEYS}
    if row is None:
        return own
    own["outdir"] = str(Path(root_outdir) / row.session)
    for column, value in row.cells.items():
        *parents, last = column.split(".")
        node = own
        for key in parents:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[last] = copy.deepcopy(value)
    return own


def read_sheet(path: str | Path) -> list[Row]:
    """The rows of a sessions sheet, every cell checked against the schemas."""
    try:
        with open(path, newline="") as fh:
            lines = [(n, line) for n, line in enumerate(fh.read().splitlines(), start=1)]
    except OSError as error:
        raise SheetError(f"sessions: cannot read the sheet {path}: {error.strerror or error}") from None
    lines = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SheetError(f"sessions: the sheet {path} has no header line (session, input, ...)")
    (header_line, header), *body = lines
    config_schema = load_schema()
    columns = _columns(path, header_line, next(csv.reader([header], delimiter="\t", quoting=csv.QUOTE_NONE)), config_schema)
    row_schema = jsonschema.Draft7Validator(yaml.safe_load(SESSIONS_SCHEMA.read_text()))
    rows, lines_of = [], {}
    for n, line in body:
        texts = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))  # quotes are YAML's
        if len(texts) > len(columns):
            raise SheetError(f"{path}, line {n}: {len(texts)} cells where the header has {len(columns)} columns")
        texts += [""] * (len(columns) - len(texts))  # trailing empty cells an editor dropped
        cells = {c: _cell(path, n, c, t, config_schema) for c, t in zip(columns, texts) if t.strip()}
        for error in row_schema.iter_errors(cells):
            column = error.path[0] if error.path else error.message.split("'")[1]
            raise SheetError(f"{path}, line {n}, column {column}: {error.message}")
        if cells["session"] in lines_of:
            raise SheetError(
                f"{path}, line {n}, column session: {cells['session']!r} is also the session of line {lines_of[cells['session']]}"
            )
        lines_of[cells["session"]] = n
        rows.append(Row(cells.pop("session"), n, cells))
    return rows


def chosen(rows: list[Row], names: list[str] | None, sheet: str) -> list[Row]:
    """The rows ``only_sessions`` names (all when it is null), in sheet order."""
    if names is None:
        return rows
    unknown = sorted(set(names) - {r.session for r in rows})
    if unknown:
        known = ", ".join(r.session for r in rows)
        raise SheetError(f"only_sessions: {', '.join(unknown)} not in {sheet} (its sessions: {known})")
    return [r for r in rows if r.session in names]


def _columns(path: str | Path, line: int, columns: list[str], config_schema: dict[str, Any]) -> list[str]:
    columns = [c.strip() for c in columns]
    for name in ("session", "input"):
        if name not in columns:
            raise SheetError(f"{path}, line {line} (the header): no {name!r} column; a sheet needs session and input")
    seen = set()
    for column in columns:
        if column in seen:
            raise SheetError(f"{path}, line {line} (the header): column {column!r} appears twice")
        seen.add(column)
        if column in SHEET_KEYS:
            raise SheetError(f"{path}, line {line} (the header): column {column!r} is a run-level key, not a session's")
        if column not in TEXT_COLUMNS:
            _key_schema(config_schema, column, f"{path}, line {line} (the header)")
    return columns


def _cell(path: str | Path, line: int, column: str, text: str, config_schema: dict[str, Any]) -> Any:
    where = f"{path}, line {line}, column {column}"
    if column in TEXT_COLUMNS:
        return text.strip()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SheetError(f"{where}: {text!r} is not a YAML value ({getattr(error, 'problem', error)})") from None
    if isinstance(value, int) and ":" in text:
        value = text.strip()  # a range such as 1:30:2, not YAML 1.1's base-60 integer 5402
    schema = {**_key_schema(config_schema, column, where), "definitions": config_schema.get("definitions", {})}
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(value))
    if errors:
        raise SheetError(f"{where}: {errors[0].message}")
    return value


def _key_schema(config_schema: dict[str, Any], column: str, where: str) -> dict[str, Any]:
    """The config schema's entry for ``column`` (a dotted key path), or an error naming it."""
    node = config_schema
    for part in column.split("."):
        properties = node.get("properties") or {}
        if part not in properties:
            raise SheetError(f"{where}: column {column!r} is not a config key (nested keys as in the config, e.g. metadata.dz)")
        node = properties[part]
    return node


def _plan_row(config: dict[str, Any], root_outdir: str, row: Row, check_folder, say) -> Session | FailedSession:
    try:
        return _planned(row.session, row.line, session_config(config, row, root_outdir), check_folder, say)
    except (ValueError, OSError) as error:
        return FailedSession(row.session, row.line, str(error))


def _planned(name: str | None, line: int | None, config: dict[str, Any], check_folder, say) -> Session:
    resolved, plan = plan_for_config(config)
    if check_folder is not None:
        check_folder(plan.work)
    digests = input_digests(plan, demo_active(resolved), say)
    records = planned_records(plan, digests)
    check_overwrite(plan, records, resolved["overwrite"], digests)
    pipeline = Pipeline(plan, {key: r["record"] for key, r in records.items()})
    return Session(name, line, resolved, plan, digests, records, pipeline)


def _check_outdirs_apart(sessions: list[Session], sheet: str, root_outdir: str) -> None:
    """No two sessions write into one folder, or one inside the other's; none into the
    config's outdir itself, which holds the sessions table."""
    for s in sessions:
        if Path(s.plan.outdir).resolve() == Path(root_outdir).resolve():
            raise SheetError(
                f"{sheet}, line {s.line}, column outdir: session {s.name} would write into {root_outdir}, the config's "
                "outdir, which holds the sessions table; give it a folder of its own"
            )
    folders = sorted(((Path(s.plan.outdir).resolve(), s) for s in sessions), key=lambda pair: pair[0])
    for (a, first), (b, second) in zip(folders, folders[1:]):
        if a == b or a in b.parents:
            raise SheetError(
                f"{sheet}: sessions {first.name} (line {first.line}) and {second.name} (line {second.line}) "
                f"would write into one folder ({first.plan.outdir}, {second.plan.outdir}); give each its own outdir"
            )
