"""Tables the warehouse itself owns: the run log."""

from __future__ import annotations

import pyarrow as pa

from schemas.core import Column, Layer, Table

RUN_SUMMARIES = Table(
    name="run_summaries",
    layer=Layer.MARTS,
    grain="one row per recorded pipeline run (append-only run log, kept outside the snapshots)",
    description=(
        "What each run did and whether it published: one row per Warehouse.record_run call, including runs "
        "whose publish was blocked by a critical data-quality failure."
    ),
    key=("run_id", "recorded_at"),
    columns=(
        Column("run_id", pa.string(), "run identifier", nullable=False),
        Column("recorded_at", pa.timestamp("us", tz="UTC"), "when the run was recorded (UTC)", nullable=False),
        Column("snapshot_id", pa.string(), "snapshot the run published, or the current one when it did not"),
        Column("status", pa.string(), "run status as reported by the flow (e.g. published, blocked, failed)"),
        Column("is_published", pa.bool_(), "whether the run published a new snapshot"),
        Column("n_dq_results", pa.int64(), "number of data-quality results recorded", min=0),
        Column("n_dq_failures", pa.int64(), "number of data-quality results that failed", min=0),
        Column("summary_json", pa.string(), "the run's full summary as JSON"),
    ),
)

TABLES = [RUN_SUMMARIES]
