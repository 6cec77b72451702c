"""changed_tables, abort, leases and the collection of unreferenced files, put_file pruning, compaction."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import TABLES, Column, Layer, Table
from warehouse.lake import Warehouse

REPO = Path(__file__).resolve().parents[2]


def scans(n: int, version: int, start: int = 0) -> pa.Table:
    return pa.table({"uid": [f"u{i:04d}" for i in range(start, start + n)], "version": [version] * n})


def data_files(root: Path, table: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "data" / table).glob("*.parquet")}


def test_changed_tables_in_write_order(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    b = Warehouse(tmp_path).begin("r")
    assert b.changed_tables() == []
    b.append("t_levels", pa.table({"uid": ["a"], "level": ["L1"]}))
    b.replace("t_scans", scans(0, 1))  # emptying a table is a change
    b.append("t_levels", pa.table({"uid": ["b"], "level": ["L2"]}))
    assert b.changed_tables() == ["t_levels", "t_scans"]
    b.put_file("qc/x.png", b"x")  # files are not tables
    assert b.changed_tables() == ["t_levels", "t_scans"]


def test_abort_deletes_only_the_runs_unreferenced_files(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path)
    seed = wh.begin("seed")
    seed.append("t_scans", scans(3, 0))
    shared = seed.put_file("models/m1.bin", b"weights")
    s0 = seed.publish()
    kept = data_files(tmp_path, "t_scans")

    other = wh.begin("other")  # a concurrent run that uses a file the aborted run also writes
    other.put_file("cards/m2.html", b"card")

    b = wh.begin("blocked")
    b.append("t_scans", scans(2, 1, start=10))
    b.replace("t_levels", pa.table({"uid": ["a"], "level": ["L1"]}))
    b.replace("t_levels", pa.table({"uid": ["b"], "level": ["L1"]}))  # superseded within the run
    mine = b.put_file("qc/1.2.3.png", b"png")
    b.put_file("models/m1.bin", b"weights")  # already referenced by the current snapshot
    b.put_file("cards/m2.html", b"card")      # also written by the running 'other'
    written = data_files(tmp_path, "t_scans") - kept
    levels = data_files(tmp_path, "t_levels")
    assert len(written) == 1 and len(levels) == 2

    deleted = b.abort()
    assert {p.relative_to(tmp_path).as_posix() for p in deleted} == written | levels | {"files/qc/1.2.3.png"}
    assert not mine.exists() and shared.exists() and (tmp_path / "files/cards/m2.html").exists()
    assert data_files(tmp_path, "t_scans") == kept and data_files(tmp_path, "t_levels") == set()
    assert wh.current_id() == s0.id and wh.read("t_scans").num_rows == 3
    assert b.abort() == []  # idempotent
    with pytest.raises(RuntimeError, match="aborted"):
        b.append("t_scans", scans(1, 2))
    with pytest.raises(RuntimeError, match="aborted"):
        b.publish()
    other.publish()  # the file the aborted run shared with it is still there
    assert [p.name for p in wh.put_files() or []] == ["m2.html", "m1.bin"]
    with pytest.raises(RuntimeError, match="already published"):
        other.abort()


CRASHING_RUN = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from tests.warehouse.conftest import TEST_TABLES, register
    from warehouse.lake import Warehouse

    register(*TEST_TABLES)
    b = Warehouse(sys.argv[1]).begin("crashed")
    b.append("t_scans", pa.table({"uid": ["c1", "c2"], "version": [9, 9]}))
    b.put_file("qc/crashed.png", b"png")
    # the process ends without publish or abort, as a killed run would
    """
)


def test_publish_collects_files_of_dead_runs_not_of_live_ones(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, keep=1)
    b = wh.begin("seed")
    b.append("t_scans", scans(2, 0))
    b.publish()
    before = data_files(tmp_path, "t_scans")
    subprocess.run([sys.executable, "-c", CRASHING_RUN, str(tmp_path)], cwd=REPO, check=True)
    crashed = data_files(tmp_path, "t_scans") - before
    assert len(crashed) == 1 and (tmp_path / "files/qc/crashed.png").exists()
    assert len(list((tmp_path / "pending").glob("*.lease"))) == 1

    live = wh.begin("live")  # running in this (living) process while another run publishes
    live.append("t_scans", scans(1, 5, start=50))
    live_files = data_files(tmp_path, "t_scans") - before - crashed
    nxt = wh.begin("next")
    nxt.append("t_levels", pa.table({"uid": ["a"], "level": ["L1"]}))
    nxt.publish()
    assert data_files(tmp_path, "t_scans") == before | live_files  # the dead run's file is gone
    assert not (tmp_path / "files/qc/crashed.png").exists()
    assert len(list((tmp_path / "pending").glob("*.lease"))) == 1  # the live run's lease only
    assert live.publish().tables == {"t_scans": 3, "t_levels": 1}
    assert list((tmp_path / "pending").glob("*.lease")) == []


def test_put_files_recorded_and_pruned_with_their_snapshots(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, keep=1)
    b = wh.begin("r1")
    b.put_file("model_cards/m1.html", b"m1")
    b.put_file("qc/s1/l1.png", b"qc")
    b.publish()
    b = wh.begin("r2")
    b.drop_file("model_cards/m1.html")
    b.put_file("model_cards/m2.html", b"m2")
    s2 = b.publish()
    manifest = json.loads((tmp_path / "snapshots" / f"{s2.id}.json").read_text())
    assert manifest["files"] == ["files/model_cards/m2.html", "files/qc/s1/l1.png"]
    assert not (tmp_path / "files/model_cards/m1.html").exists()  # its only snapshot was pruned (keep=1)
    assert (tmp_path / "files/qc/s1/l1.png").read_bytes() == b"qc"  # inherited from r1
    # a snapshot written before files were recorded: the next publish adopts every file on disk
    manifest.pop("files")
    (tmp_path / "snapshots" / f"{s2.id}.json").write_text(json.dumps(manifest))
    (tmp_path / "files" / "legacy.txt").write_text("old")
    assert wh.put_files() is None
    b = wh.begin("r3")
    b.append("t_scans", scans(1, 3))
    b.publish()
    assert sorted(p.name for p in wh.put_files() or []) == ["l1.png", "legacy.txt", "m2.html"]


def test_compaction_merges_small_files_partitioned_and_keeps_old_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a table partitioned like bronze.series, registered under the name the layout knows
    decl = Table("series", Layer.BRONZE, "one row per series (test)", "test", key=("series_instance_uid",),
                 columns=(Column("series_instance_uid", pa.string(), "uid", nullable=False),
                          Column("study_date", pa.date32(), "date"), Column("n", pa.int64(), "run")))
    monkeypatch.setitem(TABLES, "series", decl)
    wh = Warehouse(tmp_path, keep=2, compact_at=3, target_rows=100)
    ids = []
    for run in range(4):  # 4 small files: the 4th publish compacts them
        b = wh.begin(f"night-{run}")
        b.append("series", pa.table({
            "series_instance_uid": [f"s{run}-{i}" for i in (2, 1)] + [f"s{run}-n"],
            "study_date": [dt.date(2019 + run % 2, 5, 1), dt.date(2020, 1, 1), None], "n": [run] * 3}))
        ids.append(b.publish().id)
    entries = json.loads((tmp_path / "snapshots" / f"{ids[-1]}.json").read_text())["tables"]["series"]["files"]
    assert len(entries) == 3 and sum(e["rows"] for e in entries) == 12
    assert sorted(e["partition"] for e in entries) == ["study_year=2019", "study_year=2020", "study_year=null"]
    for e in entries:
        t = pq.read_table(tmp_path / e["path"])
        years = {d.year if d else None for d in t.column("study_date").to_pylist()}
        assert years == {None if e["partition"].endswith("null") else int(e["partition"][-4:])}
        uids = t.column("series_instance_uid").to_pylist()
        assert uids == sorted(uids) and e["compacted_from"] == 4
    assert sorted(wh.read("series").column("series_instance_uid").to_pylist()) == sorted(
        f"s{r}-{i}" for r in range(4) for i in ("1", "2", "n"))
    assert wh.read("series", snapshot=ids[-2]).num_rows == 9  # the older kept snapshot reads its own files
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("select count(*), count(distinct series_instance_uid) from series").fetchone() == (12, 12)
    b = wh.begin("night-4")  # one more publish prunes the snapshot that held the small files
    b.append("series", pa.table({"series_instance_uid": ["x"], "study_date": [dt.date(2021, 1, 1)], "n": [5]}))
    b.publish()
    b = wh.begin("night-5")
    b.append("series", pa.table({"series_instance_uid": ["y"], "study_date": [dt.date(2021, 1, 1)], "n": [6]}))
    b.publish()
    assert len(data_files(tmp_path, "series")) == 5 and wh.read("series").num_rows == 14


def dq(run: str, n: int) -> pa.Table:
    return pa.table({"run_time": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * n, "stage": ["ingest"] * n,
                     "table_name": ["series"] * n, "check_name": [f"c{i}" for i in range(n)],
                     "check_kind": ["schema"] * n, "severity": ["warning"] * n, "success": [i > 0 for i in range(n)]})


def test_run_log_folds_and_lives_in_the_catalog(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path, run_log_compact_at=3)
    b = wh.begin("r")
    b.append("t_scans", scans(1, 1))
    b.publish()
    for r in range(7):
        wh.record_run(f"run-{r}", dq(f"run-{r}", 2), {"status": "published"})
        n_files = len(list((tmp_path / "runs" / "dq_results").glob("*.parquet")))
        assert n_files <= 3
    assert wh.read("dq_results").num_rows == 14 and wh.read("run_summaries").num_rows == 7
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        kinds = dict(con.execute("select table_name, schema_name from duckdb_tables()").fetchall())
        assert kinds["dq_results"] == "marts" and kinds["run_summaries"] == "marts"  # tables, not views
        assert con.execute("select count(*), count(distinct run_id) from dq_results").fetchone() == (14, 7)
        assert con.execute("select list(run_id order by recorded_at) from run_summaries").fetchone() == (
            [f"run-{r}" for r in range(7)],)
        assert con.execute("select n_runs_failed from dq_failures_recent").fetchall() == [(7,)]
    b = wh.begin("r2")  # a publish rebuilds the catalog with the log in it
    b.append("t_scans", scans(1, 2, start=5))
    b.publish()
    with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
        assert con.execute("select count(*) from marts.dq_results").fetchone() == (14,)
