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


def demo_active(config: dict[str, Any]) -> bool:
    demo = config.get("demo") or {}
    return bool(demo.get("generate")) and Path(str(config["input"])) == Path(str(demo.get("folder")))


def demo_spec(config: dict[str, Any]) -> AcquisitionSpec:
    settings = {k: v for k, v in (config.get("demo") or {}).items() if k not in ("generate", "folder")}
    return AcquisitionSpec(**settings)


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
