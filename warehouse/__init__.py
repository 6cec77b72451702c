"""The only code that reads or writes the lake: Parquet files, snapshots, the DuckDB catalog, SQL models.

See :mod:`warehouse.lake` (:class:`~warehouse.lake.Warehouse`, :class:`~warehouse.lake.SnapshotBuilder`) and
:mod:`warehouse.catalog`.
"""

from warehouse.lake import SnapshotBuilder, SnapshotInfo, Warehouse, record_run

__all__ = ["SnapshotBuilder", "SnapshotInfo", "Warehouse", "record_run"]
