"""Several exports into one folder: the manifest keeps every export's outputs, so
``imexport verify`` checks all of them, each naming the step that wrote it."""

from __future__ import annotations

import hashlib
import json

import imexport
from imexport.history import MANIFEST_NAME, read_history
from imexport.verify import verify

SPEC = dict(n_frames=6, n_planes=2, roi_heights=[16, 12], width=16, fly_to_lines=3, frames_per_file=3, n_cells=4)
TIFFS = [f"zplane0{z}_tp00001-00006.tif" for z in (1, 2)]
FOLDERS = [f"zplane0{z}_tp00001-00006" for z in (1, 2)]


def test_a_second_export_in_another_format_keeps_the_first_one_verifiable(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    imexport.imwrite(raw[0].parent, out, ext=".tiff", show_progress=False)
    first = json.loads((out / MANIFEST_NAME).read_text())
    imexport.imwrite(raw[0].parent, out, ext=".bin", show_progress=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())

    tiff_step, bin_step = read_history(out / TIFFS[0])[-1]["id"], read_history(out / FOLDERS[0])[-1]["id"]
    assert tiff_step != bin_step
    steps = {o["path"]: o["step"] for o in manifest["outputs"]}
    assert steps == {**dict.fromkeys(TIFFS, tiff_step), **dict.fromkeys(FOLDERS, bin_step)}
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and ".imexport" not in p.relative_to(out).parts and p.name != MANIFEST_NAME
    }
    assert set(listed) == on_disk  # the TIFFs and their sidecars, and the Suite2p folders
    for rel, entry in listed.items():
        assert entry == {
            "path": rel,
            "size": (out / rel).stat().st_size,
            "sha256": hashlib.sha256((out / rel).read_bytes()).hexdigest(),
        }
    assert [f for f in first["files"] if f["path"].startswith(TIFFS[0])] == [
        f for f in manifest["files"] if f["path"].startswith(TIFFS[0])
    ]
    assert verify(out) == []

    # so a damaged file of the first export is still found
    tif = out / TIFFS[1]
    data = bytearray(tif.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tif.write_bytes(bytes(data))
    assert verify(out) == [f"{TIFFS[1]}: sha256 differs from the manifest"]


def test_an_output_exported_again_is_listed_once(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    imexport.imwrite(raw[0].parent, out, ext=".tiff", show_progress=False)
    imexport.imwrite(raw[0].parent, out, ext=".tiff", show_progress=False, overwrite=True)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(o["path"] for o in manifest["outputs"]) == TIFFS
    assert {o["step"] for o in manifest["outputs"]} == {read_history(out / TIFFS[0])[-1]["id"]}
    assert verify(out) == []
