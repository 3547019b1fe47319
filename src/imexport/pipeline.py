"""The steps of an export and what each needs and makes: one description, two runners.

The Snakemake rules (``workflow/rules/*.smk``) take their inputs from here (``unpack``
of :meth:`Pipeline.inputs`), and the in-process runner (``api.run_plan``) runs the same
steps in the same dependency order, checks that every input a step needs exists before
it runs, and removes each temporary output once no later step needs it (what
Snakemake's ``temp()`` does).

The step functions themselves are in :mod:`imexport.steps`; each Snakemake script calls
one of them, and so does the in-process runner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .jobs import TEMPORARY_OUTPUTS, Export, store_ready
from .plan import Plan


@dataclass(frozen=True)
class Step:
    rule: str  # the Snakemake rule that runs it
    key: str  # which of the rule's jobs (its wildcard value; "" for a one-off step)
    inputs: dict[str, str | list[str]]  # named inputs (one file, or a list): must exist before it runs
    outputs: tuple[str, ...]
    temporary: tuple[str, ...] = ()  # outputs removed once every step needing them ran

    def input_files(self) -> list[str]:
        return [p for value in self.inputs.values() for p in ([value] if isinstance(value, str) else value)]


@dataclass
class Pipeline:
    """Every step of a plan, in an order that respects their inputs."""

    plan: Plan
    records: dict[str, str]  # output key -> its record file (guard.planned_records)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        plan = self.plan
        source = {"source": plan.source_json, "index": plan.page_index}
        self._add("index_source", "", {"files": list(plan.source.files)}, [plan.source_json, plan.page_index])
        for view, paths in plan.phase_views().items():
            self._add("scan_phase", view, source, paths)
        for path, task in plan.axial_tasks.items():
            self._add("axial_shifts", self._in_work(path), {**source, "phase": [p for p in task["phase_records"] if p]}, [path])
        for export in plan.exports:
            record = self.records[export.key]
            if export.store:
                # the store becomes the product: a folder (Zarr) or a file (single HDF5)
                self._add(
                    "prepare_store" if export.is_folder else "prepare_store_file",
                    self._in_work(export.store),
                    {"corrections": _corrections(export), "record": record},
                    [export.store, store_ready(export.store)],
                    temporary=True,
                )
            for key in export.plane_jobs:
                job = plan.jobs[key]
                inputs = {
                    **source,
                    **({"store": store_ready(job.store)} if job.store else {}),
                    "corrections": [p for p in (job.phase_record, job.axial_record) if p],
                    "record": record,
                }
                self._add(
                    f"write_plane_{job.output_type}", key, inputs, [job.output], temporary=job.output_type in TEMPORARY_OUTPUTS
                )
            if export.assembled:
                self._add(
                    "assemble_folder" if export.is_folder else "assemble_file",
                    export.key,
                    {
                        "planes": plan.plane_outputs(export.key),
                        "store": [export.store] if export.store else [],
                        "corrections": _corrections(export),
                        "record": record,
                    },
                    [export.path],
                )

    def _add(self, rule: str, key: str, inputs: dict[str, str | list[str]], outputs: list[str], temporary: bool = False) -> None:
        self.steps.append(Step(rule, key, inputs, tuple(outputs), tuple(outputs) if temporary else ()))

    def _in_work(self, path: str) -> str:
        return str(Path(path).relative_to(self.plan.work))

    def step(self, rule: str, key: str = "") -> Step:
        return next(s for s in self.steps if s.rule == rule and s.key == key)

    def keys(self, rule: str) -> list[str]:
        """The keys of a rule's jobs (its wildcard constraint)."""
        return [s.key for s in self.steps if s.rule == rule]

    def inputs(self, rule: str, key: str) -> dict[str, str | list[str]]:
        return self.step(rule, key).inputs

    def last_use(self) -> dict[str, int]:
        """Temporary output -> index of the last step needing it (it can go after that one)."""
        last: dict[str, int] = {}
        temporary = {p for s in self.steps for p in s.temporary}
        for i, s in enumerate(self.steps):
            for path in s.input_files():
                if path in temporary:
                    last[path] = i
        return last


def _corrections(export: Export) -> list[str]:
    return [*export.phase_records, *([export.axial_record] if export.axial_record else [])]
