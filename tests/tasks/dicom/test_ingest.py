"""Batch functions: every file accounted for, bad files quarantined, duplicates resolved by path order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tasks.dicom.ingest import index_batch, resolve_batch
from tasks.dicom.sources import FolderSource, SourceFile
from tests.tasks.dicom.conftest import damaged_copies, real_files, shipped_files, write_series


def _accounting(folder: Path, key: bytes) -> tuple[int, dict[str, int]]:
    src = FolderSource(str(folder))
    listed = list(src.list_files())
    known: dict[str, tuple[str, str]] = {}
    totals = {"indexed": 0, "duplicate": 0, "quarantined": 0}
    for i in range(0, len(listed), 64):
        batch = index_batch(src, sorted(listed)[i : i + 64], key=key)
        res = resolve_batch(batch, known, "r1")
        assert res.manifest.num_rows == len(batch.listed)
        for st in res.manifest.column("status").to_pylist():
            totals[st] += 1
    return len(listed), totals


def test_every_shipped_real_and_damaged_file_is_accounted_for(tmp_path: Path, key: bytes) -> None:
    arch = tmp_path / "arch"
    arch.mkdir()
    srcs = shipped_files() + real_files()
    for i, f in enumerate(srcs):
        shutil.copy(f, arch / f"{i:04d}_{f.name}")
    damaged_copies(real_files()[::4] + [p for p in shipped_files() if p.suffix == ".dcm"][::8], arch / "bad", seed=5)
    seen, totals = _accounting(arch, key)
    assert seen == sum(totals.values())
    assert totals["indexed"] >= 150 and totals["quarantined"] >= 80 and totals["duplicate"] >= 20, totals


def test_unreadable_file_is_quarantined(tmp_path: Path, key: bytes) -> None:
    f = write_series(tmp_path, 1)[0]
    src = FolderSource(str(tmp_path))
    res = index_batch(src, [SourceFile(str(f), 1, 1.0), SourceFile(str(tmp_path / "gone"), 1, 1.0)], key=key)
    assert res.parsed.num_rows == 1
    q = res.quarantined.to_pylist()
    assert q[0]["reason"] == "unreadable" and "gone" in q[0]["path"]


def test_duplicates_first_path_wins_across_batches(tmp_path: Path, key: bytes) -> None:
    files = write_series(tmp_path / "a", 3)
    (tmp_path / "b").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "b" / f.name)
    os.utime(tmp_path / "b" / files[0].name, (1, 1))
    src = FolderSource(str(tmp_path))
    listed = sorted(src.list_files())
    known: dict[str, tuple[str, str]] = {}
    res1 = resolve_batch(index_batch(src, listed[3:], key=key), known, "r1")  # b/ first ...
    res2 = resolve_batch(index_batch(src, listed[:3], key=key), known, "r1")  # ... then a/
    assert res1.instances.num_rows == 3 and res2.instances.num_rows == 0
    dups = res2.duplicates.to_pylist()
    assert len(dups) == 3 and all(d["is_identical"] and "/b/" in d["indexed_path"] for d in dups)
    # Within one batch, the lower path wins.
    res = resolve_batch(index_batch(src, listed, key=key), {}, "r2")
    assert all("/a/" in p for p in res.instances.column("path").to_pylist())
