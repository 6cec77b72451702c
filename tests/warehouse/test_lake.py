"""Snapshots, publish, prune, rollback, the run log and the catalog's views."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from schemas import TABLES, Column, Layer, Table
from warehouse.catalog import catalog_state
from warehouse.lake import SnapshotInfo, Warehouse, record_run


def scans(n: int, version: int, start: int = 0) -> pa.Table:
    return pa.table({
        "uid": [f"1.2.{i}" for i in range(start, start + n)],
        "version": [version] * n,
        "hu": [100.0 + i for i in range(n)],
    })


def dq_rows(run_id: str, n_fail: int, n_ok: int) -> pa.Table:
    n = n_fail + n_ok
    return pa.table({
        "run_id": [run_id] * n,
        "run_time": [dt.datetime(2026, 12, 1, tzinfo=dt.UTC)] * n,
        "stage": ["ingest"] * n,
        "table_name": ["series"] * n,
        "check_name": [f"c{i}" for i in range(n)],
        "check_kind": ["schema"] * n,
        "severity": ["critical"] * n,
        "success": [False] * n_fail + [True] * n_ok,
    })


def test_append_replace_publish_read(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path / "wh", keep=5)
    assert wh.current() is None and wh.snapshots() == []
    assert wh.read("t_scans").num_rows == 0
    b = wh.begin("run-1")
    b.append("t_scans", scans(3, 1))
    b.append("t_scans", scans(2, 1, start=3))
    assert b.read("t_scans").num_rows == 5
    assert wh.read("t_scans").num_rows == 0  # nothing visible before publish
    s1 = b.publish({"note": "first"})
    assert isinstance(s1, SnapshotInfo) and s1.is_current and s1.tables == {"t_scans": 5}
    assert s1.meta == {"note": "first"} and s1.parent is None and s1.run_id == "run-1"
    got = wh.read("t_scans")
    assert got.schema.field("hu").type == pa.float32()  # conformed to the declaration
    assert sorted(got.column("uid").to_pylist()) == [f"1.2.{i}" for i in range(5)]

    b = wh.begin("run-2")
    b.replace("t_scans", scans(1, 2))
    b.append("t_levels", pa.table({"uid": ["1.2.0", "1.2.0"], "level": ["L1", "L2"], "version": [2, 2]}))
    s2 = b.publish()
    assert s2.parent == s1.id and s2.tables == {"t_scans": 1, "t_levels": 2}
    assert wh.read("t_scans").column("version").to_pylist() == [2]
    assert wh.read("t_scans", snapshot=s1.id).num_rows == 5  # time travel
    assert [s.id for s in wh.snapshots()] == [s1.id, s2.id]
    with pytest.raises(RuntimeError, match="already published"):
        b.publish()


def test_conform_errors_name_table_and_column(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    b = Warehouse(tmp_path).begin("r")
    with pytest.raises(ValueError, match="undeclared columns \\['patient_name'\\]"):
        b.append("t_scans", pa.table({"uid": ["1"], "patient_name": ["x"]}))
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        b.append("nope", pa.table({"a": [1]}))
    with pytest.raises(ValueError, match="run log"):
        b.append("dq_results", dq_rows("r", 1, 0))


def test_keep_prunes_manifests_and_unreferenced_files(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, keep=2)
    ids = []
    for v in range(5):
        b = wh.begin(f"r{v}")
        b.replace("t_scans", scans(2, v))
        ids.append(b.publish().id)
    assert [s.id for s in wh.snapshots()] == ids[-2:]
    live = {p.name for p in (tmp_path / "data" / "t_scans").glob("*.parquet")}
    assert len(live) == 2  # one file per kept snapshot; the three older ones deleted
    assert {p.name for s in ids[-2:] for p in wh.files("t_scans", s)} == live
    # appended files shared by kept snapshots survive pruning
    b = wh.begin("append")
    b.append("t_scans", scans(1, 9, start=10))
    b.publish()
    assert wh.read("t_scans").num_rows == 3
    b = wh.begin("append2")
    b.append("t_scans", scans(1, 10, start=11))
    b.publish()
    assert wh.read("t_scans").num_rows == 4


def test_rollback_makes_older_snapshot_current(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, keep=3)
    ids = []
    for v in range(3):
        b = wh.begin(f"r{v}")
        b.replace("t_scans", scans(v + 1, v))
        ids.append(b.publish().id)
    info = wh.rollback(ids[0])
    assert info.id == ids[0] and wh.current_id() == ids[0]
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("select count(*), max(version) from t_scans").fetchone() == (1, 0)
        assert con.execute("select snapshot_id from meta.snapshot").fetchone() == (ids[0],)
    # next run builds on the rolled-back snapshot, and pruning never drops the current one
    b = wh.begin("after")
    b.append("t_scans", scans(1, 7, start=50))
    s = b.publish()
    assert s.parent == ids[0] and s.tables["t_scans"] == 2
    with pytest.raises(KeyError, match="not found"):
        wh.rollback("no-such-snapshot")


def test_catalog_views_from_another_directory_and_after_move(
    tmp_path: Path, test_tables: tuple[Table, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = Warehouse(tmp_path / "a" / "wh")
    b = wh.begin("r")
    b.append("t_scans", scans(4, 1))
    b.publish()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("select count(*) from t_scans").fetchone() == (4,)
        assert con.execute("select count(*) from bronze.t_scans").fetchone() == (4,)
        # declared but empty tables are typed, empty views
        assert con.execute("select count(*) from silver.t_levels").fetchone() == (0,)
        types = dict(con.execute("select column_name, data_type from information_schema.columns "
                             "where table_schema='silver' and table_name='t_levels'").fetchall())
        assert types == {"uid": "VARCHAR", "level": "VARCHAR", "version": "BIGINT"}
        assert con.execute("select data_type from information_schema.columns where table_schema='bronze' "
                       "and table_name='t_scans' and column_name='hu'").fetchone() == ("FLOAT",)
    sid = wh.current_id()
    moved = tmp_path / "b" / "wh"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "a" / "wh"), str(moved))
    shutil.rmtree(tmp_path / "a")
    assert catalog_state(moved / "osteolake.duckdb") == (str((tmp_path / "a" / "wh").resolve()), sid)
    wh2 = Warehouse(moved)  # detects the move and re-points the views
    assert catalog_state(wh2.catalog_path) == (str(moved.resolve()), sid)
    with duckdb.connect(str(wh2.catalog_path), read_only=True) as con:
        assert con.execute("select count(*) from t_scans").fetchone() == (4,)


def test_record_run_is_append_only_and_outside_snapshots(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, keep=1)
    wh.record_run("blocked-1", dq_rows("blocked-1", 2, 3), {"status": "blocked", "is_published": False})
    assert wh.current() is None  # a blocked run publishes nothing
    b = wh.begin("ok-2")
    b.append("t_scans", scans(1, 1))
    sid = b.publish().id
    record_run(tmp_path, "ok-2", dq_rows("ok-2", 0, 4).drop_columns(["run_id"]), {"status": "published", "is_published": True})
    for v in range(3):  # snapshots pruned; the run log is not
        b = wh.begin(f"r{v}")
        b.replace("t_scans", scans(1, v))
        b.publish()
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        rows = con.execute("select run_id, count(*), sum(case when success then 0 else 1 end) from dq_results "
                       "group by run_id order by run_id").fetchall()
        assert rows == [("blocked-1", 5, 2), ("ok-2", 4, 0)]
        summ = con.execute("select run_id, status, is_published, snapshot_id, n_dq_failures from run_summaries "
                       "order by recorded_at").fetchall()
        assert summ == [("blocked-1", "blocked", False, None, 2), ("ok-2", "published", True, sid, 0)]
        assert json.loads(con.execute("select summary_json from marts.run_summaries limit 1").fetchone()[0])["status"] == "blocked"
    assert wh.read("dq_results").num_rows == 9


def test_concurrent_builders_merge(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path)
    b0 = wh.begin("seed")
    b0.append("t_scans", scans(2, 0))
    b0.publish()
    a = wh.begin("a")
    c = wh.begin("c")
    a.append("t_scans", scans(1, 1, start=10))
    c.append("t_scans", scans(1, 2, start=20))
    c.replace("t_levels", pa.table({"uid": ["x"], "level": ["L1"]}))
    a.publish()
    sc = c.publish()
    assert sc.tables == {"t_scans": 4, "t_levels": 1}  # c's append landed on top of a's, nothing lost


def test_put_file_is_immutable(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    b = Warehouse(tmp_path).begin("r")
    p = b.put_file("qc/1.2.3.png", b"png-bytes")
    assert p == (tmp_path / "files" / "qc" / "1.2.3.png").resolve() and p.read_bytes() == b"png-bytes"
    assert b.put_file("qc/1.2.3.png", b"png-bytes") == p
    with pytest.raises(ValueError, match="immutable"):
        b.put_file("qc/1.2.3.png", b"other")
    with pytest.raises(ValueError, match="relative path"):
        b.put_file("../escape.png", b"x")


def test_declaration_change_migrates_old_files(tmp_path: Path, test_tables: tuple[Table, ...],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(tmp_path)
    b = wh.begin("v1")
    b.append("t_levels", pa.table({"uid": ["a"], "level": ["L1"], "version": [1]}))
    b.publish()
    old = TABLES["t_levels"]
    new = Table(old.name, old.layer, old.grain, old.description,
                old.columns + (Column("height_mm", pa.float64(), "height", unit="mm"),), key=old.key)
    monkeypatch.setitem(TABLES, "t_levels", new)
    b = wh.begin("v2")
    b.append("t_levels", pa.table({"uid": ["b"], "level": ["L2"], "height_mm": [25.0]}))
    b.publish()
    got = wh.read("t_levels").sort_by("uid")
    assert got.column("height_mm").to_pylist() == [None, 25.0]
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("select count(height_mm), count(*) from t_levels").fetchone() == (1, 2)


def test_missing_model_inputs_are_reported_not_fatal(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    from warehouse.catalog import build_catalog

    sql = tmp_path / "sql"
    (sql / "staging").mkdir(parents=True)
    (sql / "marts").mkdir()
    (sql / "staging" / "stg_test__scans.sql").write_text(
        "-- grain: one row per scan\nwith final as (select uid as series_instance_uid, hu as l1_hu from bronze.t_scans)\n"
        "select * from final\n")
    (sql / "marts" / "scan_summary.sql").write_text(
        "-- grain: one row\nwith final as (select count(*) as n_scans from staging.stg_test__scans)\nselect * from final;\n")
    (sql / "marts" / "needs_missing.sql").write_text(
        "with final as (select * from silver.no_such_table)\nselect * from final\n")
    out = tmp_path / "cat.duckdb"
    status = build_catalog(tmp_path, None, out, tables={t.name: t for t in test_tables}, sql_dir=sql)
    by = {m.name: m for m in status}
    assert by["stg_test__scans"].is_built and by["scan_summary"].is_built
    assert not by["needs_missing"].is_built and "no_such_table" in (by["needs_missing"].error or "")
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("select n_scans from scan_summary").fetchone() == (0,)
        assert con.execute("select count(*) from meta.models where not is_built").fetchone() == (1,)


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep=0"):
        Warehouse(tmp_path, keep=0)


def test_run_summaries_declared() -> None:
    assert TABLES["run_summaries"].layer is Layer.MARTS
