"""What a plan is made of: the plane jobs and the exports, frozen once planned.

Both are built once from the validated config (``plan.build_plan``). Snakemake params
must be plain data (it tracks them to decide reruns), so each record converts to and
from a plain dict (``to_dict`` / ``from_dict``): the Snakemake scripts rebuild the
record from the params, the in-process API passes it as it is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

# What a plane job writes:
OUTPUT_TYPES = (
    "file",  # the product itself, a file (a TIFF plane, an HDF5 plane file)
    "folder",  # the product itself, a folder (a Suite2p plane folder)
    "intermediate",  # a temporary file an assemble step joins into the product, then removed
    "slab",  # its slab of a temporary store the export prepared; the job leaves a marker file
)
# outputs removed once the product is made (Snakemake temp(); the API removes them itself)
TEMPORARY_OUTPUTS = ("intermediate", "slab")


def store_ready(store: str) -> str:
    """The marker a prepare step leaves once its store is complete: the plane jobs depend on
    it, not on the store they write into. Snakemake checks right after each job that its
    outputs are newer than its inputs, and a single-file store (HDF5, NWB) another plane job
    writes at that moment failed the check (seen on 1000-volume NWB exports)."""
    return f"{store}.ready"


class _PlainRecord:
    """``to_dict`` / ``from_dict`` for a frozen dataclass whose sequences are tuples."""

    _TUPLES: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON types only (tuples become lists): Snakemake params, fingerprints."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
        return cls(**{k: tuple(_frozen(v) for v in values[k]) if k in cls._TUPLES else values[k] for k in values})


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class PlaneJob(_PlainRecord):
    """One plane (of one ROI view) streamed from the source into one output."""

    _TUPLES: ClassVar[tuple[str, ...]] = ("colors", "frames")

    format: str
    output_type: str  # one of OUTPUT_TYPES
    output: str  # what the job writes (see output_type)
    plane: int  # 0-based source plane
    z_index: int  # 0-based position in the written Z order
    n_planes_out: int  # planes of the whole export
    colors: tuple[int, ...]  # 0-based colour channels written
    frames: tuple[tuple[int, int, int], ...]  # 0-based frames as [start, stop, step) runs
    roi: int | None  # None: the stitched view
    target_chunk_mb: float
    options: dict[str, Any]  # the format's config block
    store: str | None  # the temporary store a slab job fills
    phase_record: str | None  # the scan-phase record applied, if any
    axial_record: str | None  # the axial record copied into the metadata, if any
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Export(_PlainRecord):
    """One output of one format for one ROI view: the product the user opens."""

    _TUPLES: ClassVar[tuple[str, ...]] = ("plane_jobs", "phase_records", "shape")

    format: str
    roi: int | None
    key: str  # path relative to outdir
    path: str
    metadata: dict[str, Any]
    options: dict[str, Any]
    plane_jobs: tuple[str, ...]  # keys into Plan.jobs, in written Z order
    assembled: bool  # an assemble step makes the product from the plane jobs' outputs
    is_folder: bool  # the product is a folder (a Suite2p plane folder, a Zarr store)
    store: str | None  # a temporary store a prepare step creates for the plane jobs to fill
    phase_records: tuple[str, ...]  # per written plane, Z order
    axial_record: str | None
    shape: tuple[int, ...]  # written (T, C, Z, Y, X)
    dtype: str
    target_chunk_mb: float
