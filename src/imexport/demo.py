"""The embedded demo acquisition: generated from the config's ``demo:`` block.

The demo is used only when ``input`` is the demo folder, so a session config that
points ``input`` at real data can never trigger generation into it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tifffile

from .sources.info import SourceInfo
from .sources.scanimage import describe_planned, parse_header
from .synthetic import AcquisitionSpec, frame_data_text, roi_group_json

# keys of the demo block that are not the acquisition's own settings
DEMO_CONTROL_KEYS = ("generate", "folder", "metadata")


def demo_active(config: dict[str, Any]) -> bool:
    demo = config.get("demo") or {}
    return bool(demo.get("generate")) and Path(str(config["input"])) == Path(str(demo.get("folder")))


def demo_spec_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The demo block's ``AcquisitionSpec`` fields."""
    return {k: v for k, v in (config.get("demo") or {}).items() if k not in DEMO_CONTROL_KEYS}


def demo_spec(config: dict[str, Any]) -> AcquisitionSpec:
    return AcquisitionSpec(**demo_spec_settings(config))


def with_demo_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """The config with ``demo.metadata`` (physical values the demo's header lacks, e.g. its
    plane spacing ``dz``) filling the unset keys of ``metadata`` when the demo is the
    input; any other input gets no value it did not state."""
    demo_values = (config.get("demo") or {}).get("metadata") or {}
    if not demo_active(config) or not demo_values:
        return config
    stated = config.get("metadata") or {}
    filled = {key: value for key, value in demo_values.items() if value is not None and stated.get(key) is None}
    return {**config, "metadata": {**stated, **filled}}


def demo_files(config: dict[str, Any]) -> list[Path]:
    folder = Path(str(config["demo"]["folder"]))
    return [folder / name for name in demo_spec(config).file_names()]


def planned_demo_info(config: dict[str, Any]) -> SourceInfo:
    """What inspecting the demo files will report, before they exist."""
    spec = demo_spec(config)
    header = parse_header(
        tifffile.matlabstr2py(frame_data_text(spec)),
        json.loads(roi_group_json(spec)),
        "demo",
    )
    pages = []
    for i in range(len(spec.file_names())):
        frames = min(spec.frames_per_file, spec.n_frames - i * spec.frames_per_file)
        pages.append(frames * spec.n_saved)
    pages[-1] += spec.trailing_pages
    return describe_planned(demo_files(config), pages, (spec.page_height, spec.width), header)
