"""``osteolake sql``, ``snapshots`` and ``rollback`` through the real Typer app (no Prefect)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from schemas import Table
from warehouse.lake import Warehouse


@pytest.fixture
def app() -> typer.Typer:
    from flows.cli import snapshots, sql

    app = typer.Typer()
    sql.register(app)
    snapshots.register(app)
    return app


@pytest.fixture
def wh(tmp_path: Path, test_tables: tuple[Table, ...]) -> Warehouse:
    wh = Warehouse(tmp_path / "wh", keep=4)
    for v in (1, 2):
        b = wh.begin(f"run-{v}")
        b.replace("t_scans", pa.table({"uid": [f"u{i}" for i in range(3 * v)], "version": [v] * (3 * v),
                                       "hu": [float(i) for i in range(3 * v)]}))
        b.publish()
    return wh


def run(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_sql_formats(app: typer.Typer, wh: Warehouse, tmp_path: Path) -> None:
    code, out = run(app, "sql", "select count(*) as n, max(version) as v from series_like",
                    "--warehouse", str(wh.root))
    assert code == 1 and "series_like" in out  # DuckDB's error, cleanly reported
    code, out = run(app, "sql", "select count(*) as n_scans, max(version) as v from t_scans", "--warehouse", str(wh.root))
    assert code == 0, out
    assert "n_scans" in out and "6" in out and "1 row" in out
    code, out = run(app, "sql", "select uid, hu from t_scans order by hu", "--warehouse", str(wh.root), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and rows[-1] == {"uid": "u5", "hu": "5"}
    code, out = run(app, "sql", "select uid, hu from t_scans order by hu limit 2", "--warehouse", str(wh.root),
                    "--format", "json")
    assert code == 0 and json.loads(out) == [{"uid": "u0", "hu": 0.0}, {"uid": "u1", "hu": 1.0}]
    target = tmp_path / "r.parquet"
    code, out = run(app, "sql", "select * from bronze.t_scans", "--warehouse", str(wh.root),
                    "--format", "parquet", "--out", str(target))
    assert code == 0 and pq.read_table(target).num_rows == 6
    code, out = run(app, "sql", "select 1", "--warehouse", str(wh.root), "--format", "parquet")
    assert code == 2 and "--out" in out
    code, out = run(app, "sql", "select 1", "--warehouse", str(wh.root), "--format", "xml")
    assert code == 2 and "xml" in out
    code, out = run(app, "sql", "select 1", "--warehouse", str(wh.root / "nope"))
    assert code == 2 and "no osteolake.duckdb" in " ".join(out.split())


def test_sql_does_not_import_prefect(app: typer.Typer, wh: Warehouse) -> None:
    before = "prefect" in sys.modules
    code, _ = run(app, "sql", "select 1", "--warehouse", str(wh.root))
    assert code == 0
    if not before:
        assert "prefect" not in sys.modules


def test_snapshots_and_rollback(app: typer.Typer, wh: Warehouse) -> None:
    code, out = run(app, "snapshots", "--warehouse", str(wh.root), "--json")
    assert code == 0, out
    snaps = json.loads(out)
    assert [s["run_id"] for s in snaps] == ["run-1", "run-2"]
    assert [s["is_current"] for s in snaps] == [False, True]
    assert snaps[0]["tables"] == {"t_scans": 3}
    code, out = run(app, "snapshots", "--warehouse", str(wh.root))
    assert code == 0 and snaps[0]["id"] in out and "run-2" in out
    code, out = run(app, "rollback", snaps[0]["id"], "--warehouse", str(wh.root))
    assert code == 0 and snaps[0]["id"] in out
    code, out = run(app, "sql", "select count(*) as n from t_scans", "--warehouse", str(wh.root), "--format", "csv")
    assert out.splitlines() == ["\"n\"", "3"]
    code, out = run(app, "rollback", "bogus", "--warehouse", str(wh.root))
    assert code == 2 and "bogus" in out
