"""Manifest diff: new, changed and unchanged files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas import get_table
from tasks.dicom.manifest import ManifestDiff, diff_manifest, iter_diff
from tasks.dicom.sources import SourceFile


def _manifest(rows: list[tuple[str, int | None, float | None]]) -> pa.Table:
    return get_table("manifest").conform(pa.table({
        "path": [r[0] for r in rows], "size_bytes": pa.array([r[1] for r in rows], pa.int64()),
        "mtime": pa.array([r[2] for r in rows], pa.float64()), "status": ["indexed"] * len(rows),
        "run_id": ["r1"] * len(rows),
    }))


def test_diff_new_changed_unchanged() -> None:
    prev = _manifest([("/a", 10, 1.0), ("/b", 20, 2.0), ("/c", 30, 3.0), ("web/x", None, None)])
    listing = [SourceFile("/b", 20, 2.0), SourceFile("/a", 11, 1.0), SourceFile("/d", 5, 9.0),
               SourceFile("/c", 30, 3.5), SourceFile("web/x"), SourceFile("/d", 5, 9.0)]
    d = diff_manifest(listing, prev)
    assert [f.path for f in d.to_read] == ["/a", "/c", "/d"]
    assert (d.new, d.changed, d.unchanged, d.seen) == (1, 2, 2, 5)
    assert d.changed_paths == {"/a", "/c"}


def test_diff_against_empty_manifest() -> None:
    d = diff_manifest([SourceFile("/z", 1, 1.0), SourceFile("/y", 1, 1.0)], get_table("manifest").empty())
    assert [f.path for f in d.to_read] == ["/y", "/z"] and d.new == 2 and d.unchanged == 0


def test_streamed_diff_equals_collected_diff() -> None:
    prev = _manifest([("/a", 10, 1.0), ("/b", 20, 2.0), ("/c", 30, 3.0), ("/e", 1, 1.0), ("/b", 21, 2.0)])
    listing = [SourceFile("/a", 10, 1.0), SourceFile("/b", 21, 2.0), SourceFile("/b", 21, 2.0),
               SourceFile("/c", 31, 3.0), SourceFile("/d", 5, 9.0)]
    out = ManifestDiff()
    got = list(iter_diff(iter(listing), prev, out, in_order=True))
    assert [f.path for f in got] == ["/c", "/d"]  # /b: the later manifest row (21 bytes) counts
    assert (out.new, out.changed, out.unchanged, out.removed) == (1, 1, 2, ["/e"])
    d = diff_manifest(reversed(listing), prev)
    assert [f.path for f in d.to_read] == ["/c", "/d"] and d.removed == ["/e"] and d.changed_paths == {"/c"}
    with pytest.raises(ValueError, match="not in path order"):
        list(iter_diff(reversed(listing), prev, ManifestDiff(), in_order=True))
