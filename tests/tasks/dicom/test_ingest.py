"""Batch functions: every file accounted for, bad files quarantined, duplicates resolved by path order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

from tasks.dicom.ingest import (
    KnownInstances,
    index_batch,
    resolve_batch,
    sop_keys,
    spill_records,
    summarise_batch,
)
from tasks.dicom.series import series_partials, study_descriptions
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


def test_known_instances_exact_and_compact(tmp_path: Path) -> None:
    """The compact duplicate map answers exactly like a dict, colliding keys included."""
    sops = [f"1.2.3.{i}" for i in range(3000)]
    with KnownInstances() as known:
        for i in range(0, 3000, 700):  # several runs, merged as they grow
            part = sops[i : i + 700]
            known.update({s: (f"/a/{s}", f"h{s}") for s in part})
        assert len(known) == 3000 and len(known._runs) <= 4
        assert known.lookup(["1.2.3.5", "9.9", "1.2.3.2999"]) == {"1.2.3.5": ("/a/1.2.3.5", "h1.2.3.5"),
                                                                   "1.2.3.2999": ("/a/1.2.3.2999", "h1.2.3.2999")}
        known.update({"1.2.3.5": ("/b/x", None)})  # re-pointed
        assert known.lookup(["1.2.3.5"]) == {"1.2.3.5": ("/b/x", None)} and len(known) == 3000
        assert known.drop_paths({"/b/x", "/a/1.2.3.7"}) == {"1.2.3.5": "/b/x", "1.2.3.7": "/a/1.2.3.7"}
        assert known.lookup(["1.2.3.5", "1.2.3.7", "1.2.3.8"]) == {"1.2.3.8": ("/a/1.2.3.8", "h1.2.3.8")}
        # A key collision (forced) is settled by the exact UID in the spill file.
        keys = sop_keys(["other"])
        known.add(keys, spill_records(["other"], ["/c"], ["h"]))
        blob, off = spill_records(["1.2.3.9-collides"], ["/d"], ["h"])
        known.add(sop_keys(["1.2.3.9"]), (blob, off))  # stored under 1.2.3.9's key
        assert known.lookup(["1.2.3.9"]) == {"1.2.3.9": ("/a/1.2.3.9", "h1.2.3.9")}
        assert known.maybe_known(sop_keys(["1.2.3.9", "nope"])).tolist() == [True, False]


def test_compact_resolution_equals_dict_resolution(tmp_path: Path, key: bytes) -> None:
    """Summarised batches resolved against the compact map give the dict path's tables exactly,
    with duplicates within a batch, across batches and against earlier runs."""
    files = write_series(tmp_path / "a", 6) + write_series(tmp_path / "c", 4)
    (tmp_path / "b").mkdir()
    for f in files[:3] + files[7:]:
        shutil.copy(f, tmp_path / "b" / f.name)
    shutil.copy(files[1], tmp_path / "a" / "zz_copy")  # same batch as its original
    src = FolderSource(str(tmp_path))
    listed = sorted(src.list_files())
    earlier = {"sop-not-here": ("/x", "h")}
    first = index_batch(src, listed[:1], key=key)
    earlier[first.parsed.column("sop_instance_uid")[0].as_py()] = ("/elsewhere/earlier-run", "h0")
    ref: dict[str, tuple[str, str]] = dict(earlier)
    with KnownInstances() as known:
        known.update(earlier)
        for size in (4, 5, 100):
            n_dups = 0
            for i in range(0, len(listed), size):
                batch = index_batch(src, listed[i : i + size], key=key)
                want = resolve_batch(batch, ref, "r")
                got = resolve_batch(summarise_batch(batch), known, "r")
                for name in ("instances", "duplicates", "quarantine", "manifest"):
                    assert getattr(got, name).equals(getattr(want, name)), (size, i, name)
                parts, desc = got.summaries(batch)
                assert _same_partials(parts, want.instances)
                assert desc == study_descriptions(want.instances)
                n_dups += got.duplicates.num_rows
            assert n_dups == 6  # 4 copies in b/ (names collide), 1 in a/, 1 indexed by an earlier run
            ref = dict(earlier)
            known.close()
            known = KnownInstances()
            known.update(earlier)


def _same_partials(parts: dict, instances: pa.Table) -> bool:
    want = series_partials(instances)
    return parts.keys() == want.keys() and all(
        (p.n, p.tallies, p.localizer, p.any_type, p.all_derived, p.iop, p.positions.tolist())
        == (w.n, w.tallies, w.localizer, w.any_type, w.all_derived, w.iop, w.positions.tolist())
        for p, w in ((parts[k], want[k]) for k in want))


def test_records_at_reads_back_what_spill_records_packed() -> None:
    from tasks.dicom.ingest import records_at, spill_records

    sops = ["1.2.3", "1.2.4", "1.2.5"]
    paths = ["/a/b c/im1", "/a/\udcff-odd/im2", "/x"]  # a path that is not valid UTF-8 survives
    hashes = ["ab" * 16, None, "cd" * 16]
    rec = spill_records(sops, paths, hashes)
    assert records_at(rec, [2, 0, 1]) == ([sops[2], sops[0], sops[1]], [paths[2], paths[0], paths[1]],
                                          [hashes[2], hashes[0], hashes[1]])


def test_batch_result_pickles_as_one_blob_and_round_trips(tmp_path: Path, key: bytes) -> None:
    """What a Dask worker sends back: one buffer-free pickle (no frame per NumPy array), the same partials."""
    import pickle

    write_series(tmp_path / "a", 9, spacing=2.5)
    write_series(tmp_path / "b", 4, iop=(0, 1, 0, 0, 0, -1))
    src = FolderSource(str(tmp_path))
    batch = summarise_batch(index_batch(src, sorted(src.list_files()), key=key))
    assert len(batch.series or {}) == 2
    buffers: list[pickle.PickleBuffer] = []
    blob = pickle.dumps(batch, protocol=5, buffer_callback=buffers.append)
    assert buffers == []  # everything in-band
    back = pickle.loads(blob)
    assert back.parsed.equals(batch.parsed) and back.keys.tolist() == batch.keys.tolist()
    assert back.records[0] == batch.records[0] and back.manifest.equals(batch.manifest)
    assert _same_partials(back.series, batch.parsed)
    for uid, p in batch.series.items():
        q = back.series[uid]
        assert p.z is not None and q.z is not None and p.z.tolist() == q.z.tolist()
        assert len(p.z) == len(p.positions)
