"""Injected defects in the input: the refresh names them in its report and the published snapshot is unchanged."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.flows.helpers import refresh_settings

pytestmark = pytest.mark.integration


def _drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = [c for c in rows[0] if c != column]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_missing_omop_column_blocks_publish(hospital: Path, refreshed: dict[str, Any], tmp_path: Path) -> None:
    from flows.nightly_refresh import run_refresh
    from warehouse.lake import Warehouse

    wh = tmp_path / "wh"
    shutil.copytree(refreshed["wh"], wh)
    wh_obj = Warehouse(wh)
    before = wh_obj.current()
    assert before is not None
    omop = tmp_path / "omop"
    shutil.copytree(hospital / "omop", omop)
    _drop_column(omop / "measurement.csv", "measurement_date")

    summary = run_refresh(refresh_settings(hospital, wh, omop=omop))

    assert summary.published_snapshot is None
    assert any("measurement_date" in b for b in summary.blocked_by), summary.blocked_by
    after = Warehouse(wh).current()
    assert after is not None and after.id == before.id  # the previous snapshot stays current
    report = Path(summary.report_path).read_text()
    assert "measurement_date" in report
    con = duckdb.connect(str(wh / "osteolake.duckdb"), read_only=True)
    failed = con.execute(
        "select count(*) from dq_results where run_id = ? and not success and severity = 'critical'",
        [summary.run_id],
    ).fetchone()[0]
    assert failed >= 1
