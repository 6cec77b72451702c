"""Low-level file helpers of the lake: atomic writes, Parquet writing and reading, schema fingerprints."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.core import Table

__all__ = ["schema_fingerprint", "now", "atomic_write", "tmp_path", "write_parquet", "read_files"]


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short hash of a schema's field names, types and nullability (metadata ignored)."""
    text = ";".join(f"{f.name}:{f.type}:{f.nullable}" for f in schema)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def now() -> datetime:
    return datetime.now(UTC)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tmp_path(path: Path) -> Path:
    """Where a data file is written before it is renamed into place (hidden: views list files explicitly)."""
    return path.with_name(f".{path.name}.tmp")


def write_parquet(root: Path, relpath: str, table: pa.Table) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    os.replace(tmp, path)


def read_files(decl: Table, paths: list[Path]) -> pa.Table:
    if not paths:
        return decl.empty()
    parts = []
    for p in paths:
        t = pq.read_table(p)
        keep = [n for n in t.column_names if n in decl.column_names]
        parts.append(decl.conform(t.select(keep)))
    return pa.concat_tables(parts)


