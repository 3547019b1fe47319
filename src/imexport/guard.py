"""What imexport owns in an output folder, and what a run does with what is already there.

**Output records.** Every final output has a record
``outdir/.imexport/records/<output>.<fingerprint>.json``, written by a tiny job that
every job writing that output depends on. The fingerprint hashes everything that shapes
the output's bytes: the settings (the source description, the export's plane jobs,
format options and metadata, the correction tasks) and the content of the input files
(their sha256, :mod:`imexport.input_content`). Because the fingerprint is part of the
record's *name*, a changed config or an input rewritten in place asks for a record that
does not exist yet, so the output is rewritten whatever Snakemake's own metadata (kept
in the working directory, not in outdir) remembers; an unchanged config on unchanged
inputs finds every record and does nothing.

**Conflicts** (at planning, before any job): an existing output without its planned
record would be rewritten — it was written by imexport with other parameters or from
another content of an input file (named from the manifest), or not by imexport at all.
With ``overwrite: false`` the run stops and lists them.

**Start of a run** (Snakemake ``onstart``, real runs only): the input digests planning
took enter the digest cache; temporaries of killed jobs are removed; records of planned
outputs with another fingerprint, and of other input contents, are dropped; with
``overwrite: true`` the conflicting outputs go, and so do outputs of the planned formats
that an earlier export made but this plan no longer produces, so nothing stale survives.
Nothing outside outdir is ever touched, nor any input file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .atomic import TEMP_MARKER, remove_path
from .formats import FORMATS
from .history import plain
from .input_content import InputDigests, drop_other_content_records, input_digests, remember_hashed
from .jobs import Export
from .manifest import manifest_path
from .plan import Plan

RECORDS = "records"
FINGERPRINT_CHARS = 16
_TEMPORARY = re.compile(rf"^\..+{re.escape(TEMP_MARKER)}-(?P<pid>\d+)(-old)?$")


class OverwriteError(ValueError):
    """Existing outputs this run would rewrite while ``overwrite`` is false."""


# --------------------------------------------------------------------------- records


def _within(value: Any, outdir: str) -> Any:
    """``value`` with every path under ``outdir`` relative to it, so that spelling outdir
    differently (relative, absolute) does not change a fingerprint."""
    if isinstance(value, dict):
        return {_within(k, outdir): _within(v, outdir) for k, v in value.items()}
    if isinstance(value, list):
        return [_within(v, outdir) for v in value]
    if isinstance(value, str) and value.startswith(outdir + os.sep):
        return value[len(outdir) + 1 :]
    return value


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def settings_digest(plan: Plan, export: Export) -> str:
    """sha256 of every setting that shapes the bytes of one output (deterministic JSON)."""
    tasks = {**plan.phase_tasks, **plan.axial_tasks}
    corrections = [*export.phase_records, *([export.axial_record] if export.axial_record else [])]
    content = _within(
        plain(
            {
                "source": json.loads(plan.source.to_json()),
                "export": export.to_dict(),
                "jobs": [plan.jobs[k].to_dict() for k in export.plane_jobs],
                "corrections": {p: tasks[p] for p in corrections},
            }
        ),
        str(Path(plan.outdir)),
    )
    return _sha256_json(content)


def fingerprint(settings: str, inputs: dict[str, str]) -> str:
    """sha256 of an output's settings digest and its inputs' digests (path → sha256)."""
    return _sha256_json({"settings": settings, "inputs": inputs})


def record_path(work: str | Path, output: str, fingerprint_hex: str) -> Path:
    return Path(work) / RECORDS / f"{output}.{fingerprint_hex[:FINGERPRINT_CHARS]}.json"


def data_paths(plan: Plan, export: Export) -> list[str]:
    """The output and the plane files it keeps beside it (HDF5: the files its master maps),
    relative to outdir: what the plane jobs wrote, unless an assemble step removes it."""
    kept = [job for job in map(plan.jobs.get, export.plane_jobs) if job.output_type == "file" and job.output != export.path]
    return [export.key, *(str(Path(job.output).relative_to(plan.outdir)) for job in kept)]


def planned_records(plan: Plan, inputs: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Output key → its record: ``output``, ``format``, ``fingerprint``, ``settings``
    (the settings' digest), ``paths``, and ``record`` (where the record file goes).

    ``inputs``: every input file's sha256 (:func:`imexport.input_content.input_digests`,
    taken here when not given).
    """
    if inputs is None:
        inputs = input_digests(plan)
    records = {}
    for export in plan.exports:
        settings = settings_digest(plan, export)
        digest = fingerprint(settings, inputs)
        records[export.key] = {
            "output": export.key,
            "format": export.format,
            "fingerprint": digest,
            "settings": settings,
            "paths": data_paths(plan, export),
            "record": str(record_path(plan.work, export.key, digest)),
        }
    return records


def record_text(record: dict[str, Any]) -> str:
    """The record file's content (what the record job writes)."""
    return json.dumps({k: v for k, v in record.items() if k != "record"}, sort_keys=True)


def records_of(work: str | Path, output: str) -> list[Path]:
    """Every record file of one output, whatever its fingerprint."""
    folder = (Path(work) / RECORDS / output).parent
    pattern = re.compile(rf"^{re.escape(Path(output).name)}\.[0-9a-f]{{{FINGERPRINT_CHARS}}}\.json$")
    return sorted(p for p in folder.glob("*.json") if pattern.match(p.name)) if folder.is_dir() else []


# --------------------------------------------------------------------------- planning checks


def check_outdir(outdir: str, source_files: list[str]) -> None:
    """``outdir`` must not be (inside) an input folder and must be creatable and writable."""
    out = Path(outdir).expanduser().resolve()
    sources = [Path(f).resolve() for f in source_files]
    # a source that is a folder (Zarr store, suite2p plane folder) is its own input folder
    for folder in sorted({f if f.is_dir() else f.parent for f in sources}):
        if out == folder or folder in out.parents:
            where = "is" if out == folder else "is inside"
            raise ValueError(f"outdir: {outdir} {where} the input folder {folder}; choose an output folder outside the raw data")
    existing = next(p for p in (out, *out.parents) if os.path.lexists(p))
    if not existing.is_dir():
        raise ValueError(f"outdir: cannot create {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"outdir: cannot write into {existing} (permission denied or read-only file system)")


def conflicts(plan: Plan, records: dict[str, dict[str, Any]], inputs: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Planned outputs that exist without their planned record: key → reason per existing path.

    ``inputs`` (path → sha256 now) lets a reason name the input files whose content
    changed since the output was exported (from the manifest's step that wrote it).
    """
    found: dict[str, list[str]] = {}
    outdir = Path(plan.outdir)
    exported_from = _exported_from(plan.outdir)
    for key, record in records.items():
        existing = [p for p in record["paths"] if os.path.lexists(outdir / p)]
        if not existing or Path(record["record"]).is_file():
            continue
        earlier = records_of(plan.work, key)
        if not earlier:
            reason = "not written by imexport (no record)"
        else:
            reason = _why_rewritten(record, earlier, exported_from.get(key), inputs)
        found[key] = [f"{outdir / p} ({reason})" for p in existing]
    return found


def _exported_from(outdir: str) -> dict[str, dict[str, str]]:
    """Output → the input digests (path → sha256) of the manifest step that wrote it."""
    try:
        manifest = json.loads(manifest_path(outdir).read_text())
        steps = {step["id"]: {f["path"]: f["sha256"] for f in step["inputs"]} for step in manifest["steps"]}
        return {o["path"]: steps[o["step"]] for o in manifest["outputs"] if o.get("step") in steps}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _why_rewritten(
    record: dict[str, Any], earlier: list[Path], exported_from: dict[str, str] | None, inputs: dict[str, str] | None
) -> str:
    """Why an output imexport wrote does not have its planned record: other settings, or
    input files whose content is not the one it was exported from (named when the
    manifest lists them), or both."""
    changed = sorted(p for p, digest in (inputs or {}).items() if exported_from and exported_from.get(p, digest) != digest)
    settings = set()
    for path in earlier:
        try:
            settings.add(json.loads(path.read_text()).get("settings"))
        except (OSError, ValueError, AttributeError):
            settings.add(None)
    other_settings = settings != {record["settings"]}
    if changed:
        content = f"from an earlier content of {', '.join(changed)} (rewritten in place since)"
        return f"written by imexport {'with other parameters, ' if other_settings else ''}{content}"
    return "written by imexport " + ("with other parameters" if other_settings else "from another content of its input files")


def check_overwrite(
    plan: Plan, records: dict[str, dict[str, Any]], overwrite: bool, inputs: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """The conflicts; with ``overwrite`` false and any conflict, an error listing them."""
    found = conflicts(plan, records, inputs)
    if found and not overwrite:
        lines = [line for reasons in found.values() for line in reasons]
        raise OverwriteError(
            f"overwrite: false, but this run would rewrite {len(lines)} existing output(s) in {plan.outdir}:\n  "
            + "\n  ".join(lines)
            + "\nSet overwrite: true to replace them (and remove outputs of the same formats this plan no "
            "longer makes), or choose another outdir."
        )
    return found


# --------------------------------------------------------------------------- start of a run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _protected(path: Path, inputs: list[Path]) -> bool:
    """An input file, or a folder holding one."""
    resolved = path.resolve()
    return any(resolved == f or resolved in f.parents for f in inputs)


def remove_stale_temporaries(outdir: str | Path, inputs: list[str] = ()) -> list[Path]:
    """Remove ``.NAME.imexport-tmp-PID`` leftovers of killed writers anywhere under ``outdir``.

    A temporary whose PID is a live process on this machine may belong to a writer that
    is still running (another run on the same outdir) and is left alone.
    """
    outdir = Path(outdir)
    keep = [Path(f).resolve() for f in inputs]
    removed = []
    for folder, dirs, names in os.walk(outdir):
        for name in [*dirs, *names]:
            match = _TEMPORARY.match(name)
            path = Path(folder) / name
            if not match or _alive(int(match["pid"])) or _protected(path, keep):
                continue
            remove_path(path)
            removed.append(path)
        dirs[:] = [d for d in dirs if (Path(folder) / d).exists()]
    return removed


def _inside(outdir: Path, path: Path) -> bool:
    resolved, root = path.resolve(), outdir.resolve()
    return resolved != root and root in resolved.parents


def _remove_output(outdir: Path, record: dict[str, Any], inputs: list[Path]) -> list[Path]:
    """Remove an output's files (TIFF sidecar included) and the folders they leave empty."""
    paths = [outdir / p for p in record["paths"]]
    if record.get("format") in FORMATS:
        paths += FORMATS[record["format"]].history_sidecars(outdir / record["output"])
    removed = []
    for path in paths:
        if os.path.lexists(path) and _inside(outdir, path) and not _protected(path, inputs):
            remove_path(path)
            removed.append(path)
            parent = path.parent
            while _inside(outdir, parent) and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return removed


def _known_outputs(plan: Plan) -> dict[str, dict[str, Any]]:
    """Outputs earlier runs recorded: every record file, and the manifest's outputs."""
    known: dict[str, dict[str, Any]] = {}
    manifest = manifest_path(plan.outdir)
    if manifest.is_file():
        for output in json.loads(manifest.read_text()).get("outputs", []):
            sidecars = {str(p) for p in FORMATS[output["format"]].history_sidecars(output["path"])}
            known[output["path"]] = {
                "output": output["path"],
                "format": output["format"],
                "paths": [p for p in output["paths"] if p not in sidecars],
            }
    root = Path(plan.work) / RECORDS
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            known.setdefault(record["output"], record)
        except (ValueError, KeyError):  # a record cut short by a kill is of no use
            continue
    return known


def prepare_outdir(
    plan: Plan, records: dict[str, dict[str, Any]], overwrite: bool, inputs: InputDigests | None = None
) -> list[Path]:
    """What a run does before its first job (see the module docstring); the paths it removed.

    ``inputs``: the input digests planning took: what it hashed goes into the digest
    cache, and the records of other input contents go (:mod:`imexport.input_content`).
    """
    if inputs is not None:
        remember_hashed(inputs, plan.work)
        drop_other_content_records(plan.work, inputs)
    outdir = Path(plan.outdir)
    inputs = [Path(f).resolve() for f in plan.source.files]
    removed = remove_stale_temporaries(outdir, plan.source.files)
    if overwrite:
        planned_formats = {r["format"] for r in records.values()}
        stale = {k: r for k, r in _known_outputs(plan).items() if k not in records and r.get("format") in planned_formats}
        for key in [*conflicts(plan, records), *stale]:
            record = records.get(key) or stale[key]
            removed += _remove_output(outdir, record, inputs)
            if key in stale:
                for old in records_of(plan.work, key):
                    old.unlink()
    for key, record in records.items():
        for old in records_of(plan.work, key):
            if str(old) != record["record"]:
                old.unlink()
    return removed
