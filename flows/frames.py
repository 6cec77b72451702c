"""Reading a table of the snapshot being built as a Polars frame (the flows' one way to do it)."""

from __future__ import annotations

from typing import Protocol

import polars as pl
import pyarrow as pa


class TableReader(Protocol):
    def read(self, table: str) -> pa.Table: ...


def read_frame(reader: TableReader, table: str) -> pl.DataFrame:
    """``table`` from a :class:`warehouse.lake.SnapshotBuilder` (or ``Warehouse``) as a Polars frame; the
    declared empty table when the snapshot has none."""
    df = pl.from_arrow(reader.read(table))
    assert isinstance(df, pl.DataFrame)
    return df
