"""Small-file compaction at publish, and the partitioned layout of the compacted files.

Tables appended every night gain one file per run; left alone, every query opens every file ever
written. At publish, a table with more than ``compact_at`` small files (fewer than ``target_rows`` rows each)
that no compaction wrote has all its small files merged into new ones; large files are left as they are,
so each compaction rewrites a bounded amount of data (bin-packing, as Delta Lake's OPTIMIZE and Iceberg's rewrite_data_files do).
Files stay immutable: the compacted files are new files that the new manifest lists in place of the
inputs; the inputs stay on disk while an older kept snapshot references them and are deleted when the
last such snapshot is pruned.

Partitioning: the compacted rows of the large bronze tables are split by study year (:data:`PARTITIONS`)
and every row group of a compacted file is sorted by the table's key. Views list files explicitly, so the
year is not a Hive path column; what a reader gains is that each file covers one year and each row group
a sorted key range, so DuckDB, Spark or Trino skip row groups by their min/max statistics on
``study_date`` and on the key (point look-ups of a series). The merge streams (bounded memory whatever
the table's size), so the files are not sorted as a whole: a key range can recur in several row groups. The partition value is recorded in the
manifest entry (``"partition": "study_year=2020"``) for engines that read the manifest.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import get_table
from warehouse.parquet_io import tmp_path

__all__ = ["Partition", "PARTITIONS", "COMPACT_AT", "TARGET_ROWS", "compact_files"]

#: Compact a table at publish once it has more than this many small files.
COMPACT_AT = 16
#: Files with fewer rows are "small"; compacted files hold at most this many rows.
TARGET_ROWS = 4_000_000
#: Compacted rows are written in row groups of about this many bytes, or :data:`ROW_GROUP_ROWS` rows...
ROW_GROUP_BYTES = 16 << 20
ROW_GROUP_ROWS = 1 << 20
#: ... and the rows buffered for all partitions together stay under this many bytes.
BUFFER_BYTES = 64 << 20
#: Rows read from an input file at a time.
READ_ROWS = 8192


@dataclass(frozen=True)
class Partition:
    """Split compacted rows by the year of a date column (``None`` years form their own partition)."""

    column: str
    name: str


#: Tables whose compacted files are partitioned (the large bronze tables, by study year).
PARTITIONS: dict[str, Partition] = {
    "instances": Partition("study_date", "study_year"),
    "series": Partition("study_date", "study_year"),
    "studies": Partition("study_date", "study_year"),
}


class _Out:
    """The compacted files of one table: one open file per partition, a new one every ``target_rows``.

    Rows are buffered per partition and written as row groups sorted by the table's key once a buffer
    holds :data:`ROW_GROUP_BYTES` (or 1M rows); when all buffers together exceed :data:`BUFFER_BYTES`
    the largest is written early. Memory is bounded by those two numbers, not by the table.
    """

    def __init__(self, root: Path, name: str, lease: Callable[[str], None], target_rows: int,
                 entry: dict[str, Any]) -> None:
        self.root, self.name, self.lease, self.target_rows, self.entry = root, name, lease, target_rows, entry
        self.decl = get_table(name)
        self.sort = [(k, "ascending") for k in self.decl.key]
        self.partition = PARTITIONS.get(name)
        if self.partition is not None and self.partition.column not in self.decl.column_names:
            self.partition = None
        self.entries: list[dict[str, Any]] = []
        self._open: dict[Any, tuple[pq.ParquetWriter, Path, dict[str, Any]]] = {}
        self._buf: dict[Any, list[pa.Table]] = {}
        self._bytes: dict[Any, int] = {}

    def add(self, rows: pa.Table) -> None:
        """Add conformed rows (any partitions)."""
        if self.partition is None:
            self._add(None, rows)
            return
        years = pc.year(rows.column(self.partition.column)).combine_chunks()
        for year in pc.unique(years).to_pylist():
            mask = pc.is_null(years) if year is None else pc.fill_null(pc.equal(years, year), False)
            self._add(year, rows.filter(mask))

    def _add(self, part: Any, rows: pa.Table) -> None:
        self._buf.setdefault(part, []).append(rows)
        self._bytes[part] = self._bytes.get(part, 0) + rows.nbytes
        n = sum(t.num_rows for t in self._buf[part])
        if self._bytes[part] >= ROW_GROUP_BYTES or n >= ROW_GROUP_ROWS:
            self._flush(part)
        while sum(self._bytes.values()) > BUFFER_BYTES:
            self._flush(max(self._bytes, key=self._bytes.__getitem__))

    def _flush(self, part: Any) -> None:
        rows = pa.concat_tables(self._buf.pop(part, []))
        self._bytes.pop(part, None)
        while rows.num_rows:
            writer, _, entry = self._writer(part)
            take = rows.slice(0, self.target_rows - entry["rows"])
            writer.write_table(take.sort_by(self.sort) if self.sort else take, row_group_size=ROW_GROUP_ROWS)
            entry["rows"] += take.num_rows
            rows = rows.slice(take.num_rows)
            if entry["rows"] >= self.target_rows:
                self._close(part)

    def _writer(self, part: Any) -> tuple[pq.ParquetWriter, Path, dict[str, Any]]:
        if part not in self._open:
            rel = f"data/{self.name}/{uuid.uuid4().hex}.parquet"
            self.lease(rel)  # before the file exists
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            entry = {**self.entry, "path": rel, "rows": 0}
            if self.partition is not None:
                entry["partition"] = f"{self.partition.name}={'null' if part is None else part}"
            writer = pq.ParquetWriter(tmp_path(path), self.decl.arrow_schema(), compression="zstd")
            self._open[part] = (writer, path, entry)
        return self._open[part]

    def _close(self, part: Any) -> None:
        writer, path, entry = self._open.pop(part)
        writer.close()
        os.replace(tmp_path(path), path)
        self.entries.append(entry)

    def close(self) -> list[dict[str, Any]]:
        """Write what is buffered, close every file; returns the new manifest entries."""
        for part in list(self._buf):
            self._flush(part)
        for part in list(self._open):
            self._close(part)
        return self.entries


def compact_files(
    root: Path,
    name: str,
    files: list[dict[str, Any]],
    *,
    run_id: str,
    lease: Callable[[str], None],
    compact_at: int = COMPACT_AT,
    target_rows: int = TARGET_ROWS,
) -> list[dict[str, Any]] | None:
    """Merge the small files of table ``name``; return its new file list, or ``None`` if nothing to do.

    Parameters
    ----------
    root
        The warehouse folder.
    name
        The declared table (its files all match its current declaration: publish migrates them first).
    files
        Manifest entries of the table (``path``, ``rows``, ``schema``, ...).
    run_id
        Stamped on the new entries.
    lease
        Names a new file (path relative to ``root``) in the run's lease before it is written.
    compact_at, target_rows
        See :data:`COMPACT_AT` and :data:`TARGET_ROWS`.

    Notes
    -----
    Row order across files is not kept (it is not part of any table's contract). Duplicate keys are not
    removed. Memory stays bounded whatever the table's size: input files are read a record batch at a
    time and each partition's rows are written as row groups of about :data:`ROW_GROUP_BYTES`, each
    sorted by the table's key (see :class:`_Out`).
    """
    if compact_at < 1 or target_rows < 1:
        raise ValueError(f"table {name}: compact_at={compact_at} and target_rows={target_rows} must be >= 1")
    small = [f for f in files if int(f["rows"]) < target_rows]
    if sum(1 for f in small if "compacted_from" not in f) <= compact_at:
        return None  # count only files never compacted: a small partition's file must not retrigger it
    decl = get_table(name)
    out = _Out(root, name, lease, target_rows,
               {"schema": small[0].get("schema"), "run_id": run_id, "compacted_from": len(small)})
    for f in small:  # one record batch in memory at a time
        for batch in pq.ParquetFile(root / f["path"], pre_buffer=False).iter_batches(batch_size=READ_ROWS,
                                                                                  use_threads=False):
            out.add(decl.conform(pa.Table.from_batches([batch])))
    return [f for f in files if int(f["rows"]) >= target_rows] + out.close()
