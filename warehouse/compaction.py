"""Small-file compaction at publish, and the partitioned layout of the compacted files.

Tables appended every night gain one file per run; left alone, every query opens every file ever
written. At publish, a table with more than ``compact_at`` small files (fewer than ``target_rows`` rows each)
that no compaction wrote has all its small files merged into new ones; large files are left as they are,
so each compaction rewrites a bounded amount of data (bin-packing, as Delta Lake's OPTIMIZE and Iceberg's rewrite_data_files do).
Files stay immutable: the compacted files are new files that the new manifest lists in place of the
inputs; the inputs stay on disk while an older kept snapshot references them and are deleted when the
last such snapshot is pruned.

Partitioning: the compacted rows of the large bronze tables are split by study year (:data:`PARTITIONS`)
and every compacted file is sorted by the table's key. Views list files explicitly, so the year is not a
Hive path column; what a reader gains is that each file (and each 1M-row group) covers one year and a
sorted key range, so DuckDB, Spark or Trino skip row groups by their min/max statistics on
``study_date`` and on the key (point look-ups of a series). The partition value is recorded in the
manifest entry (``"partition": "study_year=2020"``) for engines that read the manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import get_table

__all__ = ["Partition", "PARTITIONS", "COMPACT_AT", "TARGET_ROWS", "compact_files"]

#: Compact a table at publish once it has more than this many small files.
COMPACT_AT = 16
#: Files with fewer rows are "small"; compacted files hold at most this many rows.
TARGET_ROWS = 4_000_000


@dataclass(frozen=True)
class Partition:
    """Split compacted rows by the year of a date column (``None`` years form their own partition)."""

    column: str
    name: str

    def values(self, table: pa.Table) -> pa.Array:
        return pc.year(table.column(self.column)).combine_chunks()


#: Tables whose compacted files are partitioned (the large bronze tables, by study year).
PARTITIONS: dict[str, Partition] = {
    "instances": Partition("study_date", "study_year"),
    "series": Partition("study_date", "study_year"),
    "studies": Partition("study_date", "study_year"),
}


def _groups(name: str, table: pa.Table) -> list[tuple[str | None, pa.Table]]:
    part = PARTITIONS.get(name)
    if part is None or part.column not in table.column_names:
        return [(None, table)]
    years = part.values(table)
    out: list[tuple[str | None, pa.Table]] = []
    for year in sorted(pc.unique(years).to_pylist(), key=lambda y: (y is None, y)):
        mask = pc.is_null(years) if year is None else pc.fill_null(pc.equal(years, year), False)
        out.append((f"{part.name}={'null' if year is None else year}", table.filter(mask)))
    return out


def compact_files(
    root: Path,
    name: str,
    files: list[dict[str, Any]],
    *,
    run_id: str,
    write: Callable[[str, pa.Table], None],
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
    write
        Writes a conformed Arrow table at a path relative to ``root`` (the builder's writer, which leases
        the path first).
    compact_at, target_rows
        See :data:`COMPACT_AT` and :data:`TARGET_ROWS`.

    Notes
    -----
    Row order across files is not kept (it is not part of any table's contract); rows are sorted by the
    table's key within each new file. Duplicate keys are not removed.
    """
    if compact_at < 1 or target_rows < 1:
        raise ValueError(f"table {name}: compact_at={compact_at} and target_rows={target_rows} must be >= 1")
    small = [f for f in files if int(f["rows"]) < target_rows]
    if sum(1 for f in small if "compacted_from" not in f) <= compact_at:
        return None  # count only files never compacted: a small partition's file must not retrigger it
    decl = get_table(name)
    merged = pa.concat_tables([decl.conform(pq.read_table(root / f["path"])) for f in small])
    sort = [(k, "ascending") for k in decl.key]
    out = [f for f in files if int(f["rows"]) >= target_rows]
    schema = small[0].get("schema")
    for partition, rows in _groups(name, merged):
        if sort:
            rows = rows.sort_by(sort)
        for start in range(0, rows.num_rows, target_rows):
            chunk = rows.slice(start, target_rows)
            rel = f"data/{name}/{uuid.uuid4().hex}.parquet"
            write(rel, chunk)
            entry: dict[str, Any] = {"path": rel, "rows": chunk.num_rows, "schema": schema, "run_id": run_id,
                                     "compacted_from": len(small)}
            if partition is not None:
                entry["partition"] = partition
            out.append(entry)
    return out
