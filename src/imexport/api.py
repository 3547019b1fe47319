"""In-process Python API with the reference's signature: ``imread`` and ``imwrite``.

``imwrite`` turns its arguments into the same config the workflow validates, builds the
same plan and runs the same step functions, in dependency order, in this process — so
its files are the workflow's files. ``config_out=`` saves that config as YAML, to rerun
the export with ``snakemake --configfile``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import steps
from .atomic import write_atomic
from .config import validate
from .formats import FORMATS
from .jobs import OUTPUT_TYPES, Export, PlaneJob
from .pipeline import Pipeline
from .plan import Plan
from .progress import ProgressBar
from .sources import SourceInfo, inspect_input
from .workflow_plan import plan_for_config

log = logging.getLogger("imexport")

_EXTENSIONS = {ext: fmt.name for fmt in FORMATS.values() for ext in fmt.extensions}
_AXIAL_KWARGS = ("max_frames", "chunk_frames", "max_reg_xy", "gpu")
_PHASE_KWARGS = ("fix_phase", "phasecorr_method", "use_fft", "border", "max_offset", "window_frames")


class LazyArray:
    """A recording opened by ``imread``: 5-D ``(T, C, Z, Y, X)``, pixels read on demand."""

    def __init__(self, path: str | Path, info: SourceInfo, options: dict[str, Any]) -> None:
        self.path = str(path)
        self.info = info
        self.options = dict(options)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self.info.shape()

    @property
    def ndim(self) -> int:
        return 5

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy: changing it never changes the array or later exports."""
        return {
            "fs": self.info.fs,
            "dx": self.info.dx,
            "dy": self.info.dy,
            "dz": self.info.dz,
            "shape": list(self.shape),
            "dims": ["t", "c", "z", "y", "x"],
            "stack_type": self.info.stack_type,
            "files": list(self.info.files),
            "rois": [dict(r) for r in self.info.rois],
        }

    def __repr__(self) -> str:
        return f"LazyArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key) -> np.ndarray:
        """numpy-style indexing; integer-indexed axes are dropped as in numpy."""
        from . import geometry
        from .sources import open_plane_reader

        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key) or len(key) > 5:
            raise IndexError("LazyArray supports up to 5 indices (T, C, Z, Y, X) without Ellipsis")
        key = key + (slice(None),) * (5 - len(key))
        axes = [np.arange(n)[k] for n, k in zip(self.shape[:3], key[:3])]
        frames, colors, planes = (np.atleast_1d(a) for a in axes)
        out = np.empty((len(frames), len(colors), len(planes), *self.shape[3:]), self.dtype)
        with open_plane_reader(self.info, None) as reader:
            for j, plane in enumerate(planes):
                pages = reader.read(frames, [int(c) for c in colors], int(plane))
                out[:, :, j] = geometry.extract(pages, self.info.layout, None)
        out = out[..., key[3], key[4]]
        drop = tuple(i for i, k in enumerate(key[:3]) if isinstance(k, (int, np.integer)))
        return out.squeeze(axis=drop) if drop else out


def imread(path: str | Path, **options) -> LazyArray:
    """Open a recording lazily: header first, pixels on demand (see ``input_options``)."""
    return LazyArray(path, inspect_input(path, **options), options)


def _format_of(ext: str | Sequence[str]) -> str | list[str]:
    def one(e: str) -> str:
        e = e.lower() if e.startswith(".") else "." + e.lower()
        if e not in _EXTENSIONS:
            raise ValueError(f"ext: {e!r} is not one of {', '.join(_EXTENSIONS)}")
        return _EXTENSIONS[e]

    return one(ext) if isinstance(ext, str) else [one(e) for e in ext]


def _rois(roi: Any) -> Any:
    """The reference's ``roi``: 0 = every ROI separately, k = ROI k, list = those ROIs."""
    if roi == 0 and not isinstance(roi, bool):
        return None
    return roi


def build_config(
    lazy_array: Any,
    outpath: str | Path,
    *,
    ext: str | Sequence[str] = ".tiff",
    planes=None,
    frames=None,
    channels=None,
    num_frames=None,
    register_z=False,
    roi_mode="concat_y",
    roi=None,
    metadata=None,
    overwrite=False,
    order=None,
    target_chunk_mb=100,
    debug=False,
    show_progress=True,
    output_name=None,
    output_suffix=None,
    dataset_name=None,
    dim_order=None,
    **kwargs,
) -> dict[str, Any]:
    """The workflow config equivalent to an ``imwrite`` call (validated, defaults filled)."""
    if isinstance(lazy_array, LazyArray):
        source, input_options = lazy_array.path, dict(lazy_array.options)
    elif isinstance(lazy_array, (str, Path)):
        source, input_options = str(lazy_array), {}
    else:
        raise TypeError(f"lazy_array: expected a path, an imread() result or a numpy array, got {type(lazy_array).__name__}")
    if dim_order is not None:
        input_options["dim_order"] = dim_order
    roi_mode = str(getattr(roi_mode, "value", roi_mode)).lower()
    config: dict[str, Any] = {
        "input": str(source),
        "outdir": str(outpath),
        "format": _format_of(ext),
        "planes": _plain(planes),
        "frames": _plain(frames),
        "channels": _plain(channels),
        "num_frames": num_frames,
        "order": _plain(order),
        "roi_mode": roi_mode,
        "rois": _plain(_rois(roi)) if roi_mode == "separate" else _plain(roi),
        "output_suffix": output_suffix,
        "output_name": output_name,
        "overwrite": bool(overwrite),
        "target_chunk_mb": target_chunk_mb,
        "metadata": dict(metadata or {}),
        "debug": bool(debug),
        "show_progress": bool(show_progress),
        "register_z": bool(register_z),
    }
    if input_options:
        config["input_options"] = input_options
    if dataset_name is not None:
        config.setdefault("h5", {})["dataset_name"] = dataset_name
    if kwargs.pop("ome", True) is not True:
        raise ValueError("ome: imexport always writes OME-NGFF 0.5 metadata into Zarr stores")
    for group, names in (("axial", _AXIAL_KWARGS), ("scan_phase", _PHASE_KWARGS)):
        for name in names:
            if name in kwargs:
                config.setdefault(group, {})[name] = kwargs.pop(name)
    for fmt in FORMATS.values():
        for name, key in fmt.api_keywords.items():
            if name in kwargs:
                config.setdefault(fmt.name, {})[key] = kwargs.pop(name)
    if kwargs:
        raise TypeError(f"imwrite: unknown keyword argument(s) {sorted(kwargs)}")
    return validate(config)


def _plain(value: Any) -> Any:
    """numpy / range selections as plain lists, so the config is YAML and JSON clean."""
    if isinstance(value, (range, tuple, np.ndarray)):
        return [int(v) for v in value]
    if isinstance(value, list):
        return [int(v) if isinstance(v, np.integer) else v for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_plan(plan: Plan, config: dict[str, Any], progress: Callable[[float, Any], None] | None = None) -> None:
    """Every step of the plan's pipeline (:mod:`imexport.pipeline`, the description the
    workflow's rules use), in order, in this process: the overwrite check, output records,
    clean-up of temporaries and processing history included, under the output folder's
    lock (:mod:`imexport.outdir_lock`)."""
    from .outdir_lock import locked

    with locked(plan.work):  # one run per output folder, as in the workflow
        _run_locked(plan, config, progress)


def _run_locked(plan: Plan, config: dict[str, Any], progress: Callable[[float, Any], None] | None) -> None:
    from .atomic import remove_path
    from .checksums import cache_folder
    from .demo import demo_active
    from .guard import check_overwrite, planned_records, prepare_outdir, record_text
    from .history import history_spec, record_history
    from .input_content import content_record_path, content_record_text, input_digests

    inputs = input_digests(plan, made_by_run=demo_active(config))
    records = planned_records(plan, inputs)
    check_overwrite(plan, records, config["overwrite"], inputs)
    prepare_outdir(plan, records, config["overwrite"], inputs)
    texts = {content_record_path(plan.work, inputs): content_record_text(inputs)}
    texts.update({Path(record["record"]): record_text(record) for record in records.values()})
    for path, text in texts.items():
        write_atomic(path, lambda fh, t=text: fh.write((t + "\n").encode()))
    pipeline = Pipeline(plan, {key: record["record"] for key, record in records.items()})
    run = _step_runners(plan, str(cache_folder(plan.work)))  # writers hash what they write; record_history looks it up
    last_use = pipeline.last_use()
    done, total = 0, len(plan.jobs)
    for i, step in enumerate(pipeline.steps):
        missing = [p for p in step.input_files() if not os.path.lexists(p)]
        if missing:
            raise RuntimeError(f"{step.rule} {step.key}: missing input(s) {missing}")
        run[step.rule](step.key)
        if step.rule.startswith("write_plane_"):
            done += 1
            if progress is not None:
                progress(done / total, plan.jobs[step.key].plane + 1)
        for path in [p for p, last in last_use.items() if last == i]:
            remove_path(Path(path))
    record_history(history_spec(plan, config, records, {}))


def _as_params(record: PlaneJob | Export) -> PlaneJob | Export:
    """``record`` as a workflow script receives it: rebuilt from plain data, sharing no
    object with the plan, so what a writer pickles (``ops.npy``, ``db.npy``) has the
    workflow's bytes (pickle writes an object used twice once, which changes the bytes)."""
    return type(record).from_dict(record.to_dict())


def _step_runners(plan: Plan, checksums: str) -> dict[str, Callable[[str], None]]:
    """Rule name -> the step function called as the rule's script calls it, given the job's key."""
    source_json, index = plan.source_json, plan.page_index
    views = plan.phase_views()
    threads = min(4, os.cpu_count() or 1)

    def scan_phase(view: str) -> None:
        steps.scan_phase([plan.phase_tasks[p] for p in views[view]], source_json, index, views[view], threads)

    def write_plane(key: str) -> None:
        steps.write_plane(_as_params(plan.jobs[key]), source_json, index, checksums=checksums)

    def assemble(key: str) -> None:
        export = plan.export(key)
        jobs = [plan.jobs[k] for k in export.plane_jobs]
        steps.assemble_export(
            _as_params(export), [job.output for job in jobs], [_as_params(job).metadata for job in jobs], checksums
        )

    def prepare(store: str) -> None:
        steps.prepare_export(_as_params(plan.stores()[f"{plan.work}/{store}"]))

    return {
        "index_source": lambda _: steps.index_source(plan.source.to_json(), source_json, index),
        "scan_phase": scan_phase,
        "axial_shifts": lambda record: steps.axial_shifts(
            plan.axial_tasks[f"{plan.work}/{record}"], source_json, index, f"{plan.work}/{record}", threads
        ),
        **{rule: prepare for rule in ("prepare_store", "prepare_store_file")},
        **{f"write_plane_{output}": write_plane for output in OUTPUT_TYPES},
        "assemble_file": assemble,
        "assemble_folder": assemble,
    }


def imwrite(
    lazy_array,
    outpath: str | Path,
    ext: str = ".tiff",
    planes=None,
    frames=None,
    channels=None,
    num_frames: int | None = None,
    register_z: bool = False,
    roi_mode: str = "concat_y",
    roi=None,
    metadata: dict | None = None,
    overwrite: bool = False,
    order=None,
    target_chunk_mb: int = 100,
    progress_callback: Callable | None = None,
    debug: bool = False,
    show_progress: bool = True,
    output_name: str | None = None,
    output_suffix: str | None = None,
    dataset_name: str | None = None,
    dim_order: str | None = None,
    config_out: str | Path | None = None,
    **kwargs,
) -> Path:
    """Export a recording; the parameters mean what they mean in ``mbo_utilities.imwrite``.

    ``lazy_array``: a path (file, folder, glob), an ``imread`` result, or a numpy array
    (saved to ``outpath/.imexport/input.npy`` and read with ``dim_order``). Selections are
    1-based. Format options (``sharded``, ``compressor``, ``pyramid``, …), axial knobs
    (``max_frames``, ``chunk_frames``, ``max_reg_xy``, ``gpu``) and scan-phase options
    (``fix_phase``, ``phasecorr_method``, ``use_fft``, ``border``, ``max_offset``) go in
    ``**kwargs``. ``show_progress`` draws a progress bar on stderr (:mod:`imexport.progress`);
    ``progress_callback(fraction, current_plane)`` is called after every plane job, whatever
    ``show_progress`` says. Returns ``outpath``.
    """
    outpath = Path(outpath)
    if isinstance(lazy_array, np.ndarray):
        lazy_array = _save_array(lazy_array, outpath)
    config = build_config(
        lazy_array,
        outpath,
        ext=ext,
        planes=planes,
        frames=frames,
        channels=channels,
        num_frames=num_frames,
        register_z=register_z,
        roi_mode=roi_mode,
        roi=roi,
        metadata=metadata,
        overwrite=overwrite,
        order=order,
        target_chunk_mb=target_chunk_mb,
        debug=debug,
        show_progress=show_progress,
        output_name=output_name,
        output_suffix=output_suffix,
        dataset_name=dataset_name,
        dim_order=dim_order,
        **kwargs,
    )
    log.setLevel(logging.DEBUG if debug else logging.INFO if show_progress else logging.WARNING)
    # the workflow's planning, its checks included (an outdir inside the input folder is refused)
    _, plan = plan_for_config(config, lazy_array.info if isinstance(lazy_array, LazyArray) else None)
    if config_out is not None:
        text = yaml.safe_dump(_session_config(config), sort_keys=False)
        write_atomic(Path(config_out), lambda fh: fh.write(text.encode()))
    bar = ProgressBar(len(plan.jobs)) if show_progress else None
    try:
        run_plan(plan, config, _each(progress_callback, bar))
    finally:
        if bar is not None:
            bar.end()
    return outpath


def _each(*callbacks: Callable | None) -> Callable | None:
    """One progress callback calling every one of ``callbacks`` given (None if none is)."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None

    def progress(fraction: float, plane: Any) -> None:
        for callback in given:
            callback(fraction, plane)

    return progress


def run_config(config: dict[str, Any], progress: Callable[[float, Any], None] | None = None) -> Plan:
    """Run a workflow config (the keys of ``config/config.yaml``) in this process: the
    plan, checks and steps of ``snakemake --configfile``, the same files. Returns the plan."""
    resolved, plan = plan_for_config(config)
    run_plan(plan, resolved, progress)
    return plan


def _save_array(array: np.ndarray, outpath: Path) -> Path:
    target = outpath / ".imexport" / "input.npy"
    write_atomic(target, lambda fh: np.save(fh, array))
    return target


def _session_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config minus its defaults: what a session YAML needs to say.

    ``metadata`` is always written in full (its physical keys too, null when unset):
    Snakemake merges a session file into the default config key by key, and the
    default config's ``metadata.dz`` must not leak into a reproduced API call.
    """
    defaults = validate({})
    kept = {k: v for k, v in config.items() if k != "demo" and v != defaults.get(k)}
    return {**kept, "metadata": config["metadata"]}
