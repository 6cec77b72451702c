"""Ground-truth tables of the synthetic archive (the imaging part of ``DIR/truth``), as Arrow schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMAS: dict[str, pa.Schema] = {
    "series": pa.schema([
        ("patient_id", pa.string()), ("study_instance_uid", pa.string()), ("series_instance_uid", pa.string()),
        ("kind", pa.string()), ("modality", pa.string()), ("folder", pa.string()), ("n_files", pa.int32()),
        ("kvp", pa.int32()), ("contrast_phase", pa.string()), ("pixel_mm", pa.float64()),
        ("slice_mm", pa.float64()), ("manufacturer", pa.string()), ("kernel", pa.string()),
        ("study_date", pa.date32()),
    ]),
    "vertebrae": pa.schema([
        ("series_instance_uid", pa.string()), ("level", pa.string()), ("z_mm", pa.float64()),
        ("trabecular_hu", pa.float64()), ("trabecular_hu_120", pa.float64()),
        ("height_anterior_mm", pa.float64()), ("height_middle_mm", pa.float64()),
        ("height_posterior_mm", pa.float64()), ("genant_grade", pa.int8()), ("fracture_type", pa.string()),
    ]),
    "body_composition": pa.schema([
        ("series_instance_uid", pa.string()), ("level", pa.string()), ("muscle_area_cm2", pa.float64()),
        ("muscle_hu_mean", pa.float64()), ("imat_area_cm2", pa.float64()), ("vat_area_cm2", pa.float64()),
        ("sat_area_cm2", pa.float64()),
    ]),
    "hip_geometry": pa.schema([
        ("series_instance_uid", pa.string()), ("femoral_neck_width_mm", pa.float64()),
        ("hip_axis_length_mm", pa.float64()), ("neck_shaft_angle_deg", pa.float64()),
    ]),
    "texture": pa.schema([
        ("series_instance_uid", pa.string()), ("microarchitecture", pa.string()), ("tbs_true", pa.float64()),
    ]),
    "dirty_files": pa.schema([("path", pa.string()), ("defect", pa.string()), ("detail", pa.string())]),
}


class TruthRows:
    """Accumulates truth rows per table and writes them as Parquet with the declared schemas."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}

    def add(self, table: str, row: dict[str, Any]) -> None:
        if table not in SCHEMAS:
            raise ValueError(f"unknown truth table {table!r}; expected one of {sorted(SCHEMAS)}")
        missing = set(SCHEMAS[table].names) - set(row)
        if missing:
            raise ValueError(f"truth table {table!r}: row lacks columns {sorted(missing)}")
        self.rows[table].append({k: row[k] for k in SCHEMAS[table].names})

    def table(self, name: str) -> pa.Table:
        return pa.Table.from_pylist(self.rows[name], schema=SCHEMAS[name])

    def write(self, truth_dir: Path) -> dict[str, int]:
        truth_dir.mkdir(parents=True, exist_ok=True)
        counts = {}
        for name in SCHEMAS:
            pq.write_table(self.table(name), truth_dir / f"{name}.parquet")
            counts[name] = len(self.rows[name])
        return counts
