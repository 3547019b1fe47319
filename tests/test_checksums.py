"""File digests and their cache (imexport.checksums), on real files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from conftest import sha256

from imexport.checksums import (
    adopt_touch,
    cached_digest,
    checksum_files,
    entry_path,
    forget,
    remember,
    sha256_file,
    written_digest,
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_digest_equals_hashlib_whatever_the_chunk(tmp_path):
    path = write(tmp_path / "blob", os.urandom(5 * 4096 + 3))
    for chunk in (1, 4096, 2**20):
        assert sha256_file(path, chunk_bytes=chunk) == sha256(path)
    empty = write(tmp_path / "empty", b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    # one path listed twice is one file, hashed once
    assert checksum_files([path, path], workers=2) == {path: {"size": 5 * 4096 + 3, "sha256": sha256(path)}}


def test_remember_stores_one_entry_named_after_the_resolved_path(tmp_path):
    cache = tmp_path / "cache"
    path = write(tmp_path / "a.bin", os.urandom(1000))
    entry = remember(path, cache)
    stat = path.stat()
    assert entry == {
        "path": str(path.resolve()),
        "size": 1000,
        "mtime_ns": stat.st_mtime_ns,
        "ino": stat.st_ino,
        "ctime_ns": stat.st_ctime_ns,
        "sha256": sha256(path),
    }
    name = hashlib.sha1(str(path.resolve()).encode()).hexdigest() + ".json"
    assert [p.name for p in cache.glob("*.json")] == [name] == [entry_path(path, cache).name]
    assert json.loads((cache / name).read_text()) == entry
    # and, under the same name, the file as its writer left it
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) == sorted([name, f"written/{name}"])
    assert written_digest(path, cache) == {"size": 1000, "sha256": sha256(path)}
    # the same file spelled another way (relative, through a symlink) has the same entry
    link = tmp_path / "link.bin"
    link.symlink_to(path)
    assert entry_path(link, cache) == entry_path(path, cache)
    assert cached_digest(link, cache) == {"size": 1000, "sha256": sha256(path)}
    # a given digest is stored as it is, without reading the file
    assert remember(path, cache, sha256="0" * 64)["sha256"] == "0" * 64
    assert cached_digest(path, cache) == {"size": 1000, "sha256": "0" * 64}


def test_a_cached_digest_holds_only_while_size_mtime_and_inode_do(tmp_path):
    cache = tmp_path / "cache"
    path = write(tmp_path / "a.bin", b"a" * 4096)
    assert cached_digest(path, cache) is None  # never remembered
    remember(path, cache)
    assert cached_digest(path, cache) == {"size": 4096, "sha256": sha256(path)}

    # rewritten in place: same size, same inode, other content; its mtime moves
    ino = path.stat().st_ino
    with open(path, "r+b") as fh:
        fh.write(b"b" * 4096)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # what touch does
    assert path.stat().st_ino == ino and path.stat().st_size == 4096
    assert cached_digest(path, cache) is None
    assert checksum_files([path], cache_dir=cache) == {path: {"size": 4096, "sha256": sha256(path)}}  # recomputed
    assert cached_digest(path, cache) == {"size": 4096, "sha256": sha256(path)}  # and remembered

    # replaced (a writer's atomic rename) by a file of the same size and mtime: a new inode
    replacement = write(tmp_path / ".a.bin.new", b"c" * 4096)
    os.utime(replacement, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    os.replace(replacement, path)
    assert path.stat().st_mtime_ns == json.loads(entry_path(path, cache).read_text())["mtime_ns"]
    assert cached_digest(path, cache) is None
    assert checksum_files([path], cache_dir=cache)[path]["sha256"] == sha256(path) == hashlib.sha256(b"c" * 4096).hexdigest()

    # a size change, a removed file, a damaged or forgotten entry: no digest
    remember(path, cache)
    with open(path, "ab") as fh:
        fh.write(b"d")
    assert cached_digest(path, cache) is None
    remember(path, cache)
    entry_path(path, cache).write_text("{")
    assert cached_digest(path, cache) is None
    remember(path, cache)
    forget(path, cache)
    assert cached_digest(path, cache) is None
    remember(path, cache)
    path.unlink()
    assert cached_digest(path, cache) is None


def test_checksum_files_with_a_cache_returns_what_it_returns_without(tmp_path):
    cache = tmp_path / "cache"
    folder = tmp_path / "files"
    folder.mkdir()
    paths = [write(folder / f"f{i}", os.urandom(size)) for i, size in enumerate((0, 1, 4096, 2**20 + 5, 300))]
    plain = checksum_files([*paths, paths[0]], workers=3)
    assert list(plain) == sorted(paths, key=lambda p: -p.stat().st_size)  # largest first, each once
    assert plain == {p: {"size": p.stat().st_size, "sha256": sha256(p)} for p in paths}

    assert checksum_files(paths, workers=3, cache_dir=cache) == plain  # cold: every file hashed, remembered
    assert len(list(cache.glob("*.json"))) == len(paths)
    assert all(cached_digest(p, cache) == plain[p] for p in paths)
    assert checksum_files(paths, workers=3, cache_dir=cache) == plain  # warm: every digest from the cache
    # one file under two names (a symlink): hashed once, the same digest for both
    link = tmp_path / "link"
    link.symlink_to(paths[2])
    forget(paths[2], cache)
    both = checksum_files([paths[2], link], workers=2, cache_dir=cache)
    assert both == {paths[2]: plain[paths[2]], link: plain[paths[2]]}
    # a cached digest is really used: a (wrong) digest given to remember comes back
    remember(paths[3], cache, sha256="f" * 64)
    assert checksum_files(paths, cache_dir=cache)[paths[3]]["sha256"] == "f" * 64
    # partly valid: a changed file is hashed again, the rest comes from the cache
    write(paths[4], os.urandom(300))
    os.utime(paths[4], ns=(0, paths[4].stat().st_mtime_ns + 10**9))  # whatever the clock's tick
    remember(paths[3], cache)
    assert checksum_files(paths, workers=2, cache_dir=cache) == checksum_files(paths, workers=2)


def test_a_touch_by_snakemake_keeps_the_digest_a_later_change_does_not(tmp_path):
    """Snakemake touches a job's output files, then its benchmark, after the job hashed them."""
    cache = tmp_path / "cache"
    path = write(tmp_path / "plane.tif", os.urandom(2048))
    benchmark = write(tmp_path / "plane.tsv", b"s\n0.1\n")
    hashed_at = remember(path, cache)["mtime_ns"]

    def touch(target: Path, ns: int) -> None:
        os.utime(target, ns=(ns, ns))

    touch(path, hashed_at + 10**9)
    touch(benchmark, hashed_at + 10**9 + 1000)
    assert cached_digest(path, cache) is None  # strictly, the file moved
    assert adopt_touch(path, cache, benchmark.stat().st_mtime_ns)
    assert cached_digest(path, cache) == {"size": 2048, "sha256": sha256(path)}
    assert adopt_touch(path, cache, benchmark.stat().st_mtime_ns)  # valid already: nothing to do

    # changed after the touch (an edit of the same size, in place): not adopted
    with open(path, "r+b") as fh:
        fh.write(b"x" * 16)
    touch(path, benchmark.stat().st_mtime_ns + 10**9)
    assert not adopt_touch(path, cache, benchmark.stat().st_mtime_ns)
    assert cached_digest(path, cache) is None
    assert checksum_files([path], cache_dir=cache)[path]["sha256"] == sha256(path)  # hashed again

    # another size, or another file (inode) at the path, however early its mtime: not adopted
    hashed_at = remember(path, cache)["mtime_ns"]
    with open(path, "ab") as fh:
        fh.write(b"y")
    touch(path, hashed_at + 1)
    assert not adopt_touch(path, cache, hashed_at + 10**9)
    hashed_at = remember(path, cache)["mtime_ns"]
    os.replace(write(tmp_path / ".plane.tif.new", path.read_bytes()), path)
    touch(path, hashed_at + 1)
    assert not adopt_touch(path, cache, hashed_at + 10**9)
    assert not adopt_touch(tmp_path / "never-remembered", cache, hashed_at)


def test_only_a_writer_sets_the_as_written_digest(tmp_path):
    cache = tmp_path / "cache"
    path = write(tmp_path / "ops.npy", b"as the job wrote it")
    job_digest = {"size": 19, "sha256": hashlib.sha256(b"as the job wrote it").hexdigest()}
    remember(path, cache)  # the writing job
    write(tmp_path / "ops.npy", b"rewritten to carry a history")  # the history step rewrites it
    checksum_files([path], 1, cache)  # a reader hashes it again: its current state is cached ...
    assert cached_digest(path, cache) == {"size": 28, "sha256": sha256(path)}
    assert written_digest(path, cache) == job_digest  # ... the job's stays
    remember(path, cache)  # the job ran again
    assert written_digest(path, cache) == {"size": 28, "sha256": sha256(path)}
    forget(path, cache)
    assert written_digest(path, cache) is None
