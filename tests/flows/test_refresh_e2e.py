"""`refresh` end to end on a tiny synthetic hospital, under ``prefect_test_harness``.

One module-scoped hospital and one refresh feed several assertions (the refresh is the expensive part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.flows.helpers import refresh_settings

pytestmark = pytest.mark.integration

def test_refresh_publishes_a_queryable_snapshot(refreshed: dict[str, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    summary = refreshed["summary"]
    assert summary.published_snapshot, f"publish blocked: {summary.blocked_by}"
    for stage in ("ingest", "extract", "clinical", "cohort", "models", "quality", "publish"):
        assert stage in summary.stages
    assert Path(summary.report_path).is_file()
    monkeypatch.chdir(tmp_path)  # the catalog must work from any working directory
    con = duckdb.connect(str(refreshed["wh"] / "osteolake.duckdb"), read_only=True)
    n_series = con.execute("select count(*) from series").fetchone()[0]
    assert n_series > 0
    assert con.execute("select count(*) from vertebra_measurements").fetchone()[0] > 0
    assert con.execute("select count(*) from cohort").fetchone()[0] > 0
    assert con.execute("select count(*) from predictions").fetchone()[0] > 0
    assert con.execute("select count(*) from dq_results").fetchone()[0] > 0


def test_every_archive_file_is_accounted_for(refreshed: dict[str, Any], hospital: Path) -> None:
    con = duckdb.connect(str(refreshed["wh"] / "osteolake.duckdb"), read_only=True)
    seen = sum(1 for p in (hospital / "archive").rglob("*") if p.is_file())
    indexed = con.execute("select count(*) from instances").fetchone()[0]
    dupes = con.execute("select count(*) from duplicates").fetchone()[0]
    quarantined = con.execute("select count(*) from quarantine").fetchone()[0]
    assert indexed + dupes + quarantined == seen


def test_no_raw_identifiers_reach_the_lake(refreshed: dict[str, Any], hospital: Path) -> None:
    persons = pq.read_table(hospital / "truth" / "persons.parquet").to_pylist()
    needles = set()
    for p in persons:
        needles.add(p["patient_id"].encode())
        needles.add(p["birth_date"].strftime("%Y%m%d").encode())
        needles.add(p["birth_date"].isoformat().encode())
    import pydicom

    for f in (hospital / "archive").rglob("*"):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if ds.get("PatientName"):
                needles.add(str(ds.PatientName).encode())
        except Exception:  # noqa: BLE001 - the dirty files
            continue
    written = [p for p in refreshed["wh"].rglob("*") if p.is_file() and p.suffix in (".parquet", ".json", ".html")]
    assert written
    for path in written:
        if path.suffix == ".parquet":
            text = pq.read_table(path).to_pandas().to_csv().encode()
        else:
            text = path.read_bytes()
        hits = [n.decode() for n in needles if n in text]
        assert not hits, f"{path} contains raw identifiers {hits[:3]}"


def test_rerun_is_idempotent(refreshed: dict[str, Any], hospital: Path) -> None:
    from flows.nightly_refresh import run_refresh

    wh = refreshed["wh"]
    con = duckdb.connect(str(wh / "osteolake.duckdb"), read_only=True)
    before = {t: con.execute(f"select count(*) from {t}").fetchone()[0]
              for t in ("instances", "series", "vertebra_measurements", "cohort", "extraction_runs")}
    con.close()
    summary = run_refresh(refresh_settings(hospital, wh))
    assert summary.stages["ingest"].get("new", 0) == 0
    assert summary.stages["extract"]["planned"] == 0
    con = duckdb.connect(str(wh / "osteolake.duckdb"), read_only=True)
    after = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in before}
    assert after == before
