"""What tifffile warns of while reading a damaged plain TIFF never reaches the screen raw:
planning says it once, as imexport's note naming the file; the plane jobs that open the
file again keep it in their job logs."""

from __future__ import annotations

import numpy as np
import tifffile

DAMAGE = b'"axes": "TYX"'  # in the shaped description tifffile writes: a space becomes a non-ASCII byte


def damaged_plain_tiff(folder) -> tuple:
    folder.mkdir()
    path = folder / "stack.tif"
    data = (np.arange(6 * 8 * 10) % 4000).astype(np.uint16).reshape(6, 8, 10)
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "TYX"})
    raw = path.read_bytes()
    at = raw.index(DAMAGE) + len(b'"axes":')
    path.write_bytes(raw[:at] + b"\x81" + raw[at + 1 :])
    return path, data


def test_a_damaged_plain_tiff_is_named_once_by_imexport_and_its_pixels_exported(tmp_path, run_snakemake):
    path, data = damaged_plain_tiff(tmp_path / "plain")
    out = tmp_path / "out"
    config = {"input": str(path), "outdir": str(out), "format": "tiff", "scan_phase": {"fix_phase": False}}
    result = run_snakemake(tmp_path / "work", config)
    lines = [line for line in result.output.splitlines() if "invalid ASCII" in line]
    assert len(lines) == 1, result.output  # said once, at planning
    assert lines[0].startswith(f"imexport: note: {path}: damaged TIFF structure that tifffile read past")
    assert "WARNING" not in result.output and "<tifffile.TiffTag 270" not in lines[0].split("(", 1)[0]
    # the plane job opened the file again: what tifffile said there is in its log
    job_logs = "".join(p.read_text() for p in (out / ".imexport" / "logs" / "write").rglob("*.log"))
    assert f"{path}: tifffile read past damage: <tifffile.TiffTag 270" in job_logs
    (written,) = out.glob("*.tif")
    assert np.array_equal(tifffile.imread(written), data)
