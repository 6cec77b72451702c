"""Files a Dask worker writes for a run: staged, adopted or discarded, never lost or leaked."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import Table
from warehouse.builder import write_staged
from warehouse.lake import Warehouse


def scans(n: int, version: int, start: int = 0) -> pa.Table:
    return pa.table({"uid": [f"s{i:04d}" for i in range(start, start + n)], "version": [version] * n,
                     "hu": pa.array([float(i) for i in range(n)], pa.float32())})


def _write_in_child(path: str, n: int) -> None:  # another process, as a Dask worker is
    from tests.warehouse.conftest import TEST_TABLES, register

    register(*TEST_TABLES)
    write_staged("t_scans", path, scans(n, 7, start=100))


def test_staged_file_written_elsewhere_is_adopted(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path)
    b = wh.begin("r1")
    b.append("t_scans", scans(3, 1))
    rel, path = b.stage("t_scans")
    assert not path.exists() and rel.startswith("data/t_scans/")
    child = mp.get_context("spawn").Process(target=_write_in_child, args=(str(path), 5))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert b.adopt("t_scans", rel) == 5
    assert b.read("t_scans").num_rows == 8
    info = b.publish()
    assert info.tables["t_scans"] == 8
    assert sorted(wh.read("t_scans").column("uid").to_pylist())[-1] == "s0104"


def test_adopt_checks_what_it_is_given(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path)
    b = wh.begin("r1")
    with pytest.raises(ValueError, match="was not staged"):
        b.adopt("t_scans", "data/t_scans/x.parquet")
    rel, path = b.stage("t_scans")
    with pytest.raises(FileNotFoundError):
        b.adopt("t_scans", rel)
    with pytest.raises(FileNotFoundError, match="was not written"):
        b.adopt("t_scans", rel, rows=3)  # the writer's row count: the footer is not read, the file must exist
    with pytest.raises(ValueError, match="was not staged by run r1 for this table"):
        b.adopt("t_levels", rel)
    pq.write_table(scans(2, 1), path)  # not through write_staged: no declaration stamp
    with pytest.raises(ValueError, match="does not match the table's declaration"):
        b.adopt("t_scans", rel)
    with pytest.raises(KeyError):
        b.stage("no_such_table")


def test_discarded_and_abandoned_staged_files_are_deleted(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path)
    b = wh.begin("r1")
    rel1, p1 = b.stage("t_scans")
    rel2, p2 = b.stage("t_scans")
    write_staged("t_scans", p1, scans(2, 1))
    write_staged("t_scans", p2, scans(2, 1, start=10))
    b.discard(rel1)
    assert not p1.exists()
    with pytest.raises(ValueError, match="was not staged"):
        b.adopt("t_scans", rel1)
    b.publish()  # rel2 neither adopted nor discarded: not in the snapshot
    assert wh.read("t_scans").num_rows == 0
    b2 = wh.begin("r2")
    b2.append("t_scans", scans(1, 2))
    b2.publish()  # the next publish collects what no snapshot or live lease references
    assert not p2.exists()
    b3 = wh.begin("r3")
    rel3, p3 = b3.stage("t_scans")
    write_staged("t_scans", p3, scans(1, 3))
    assert p3 in b3.abort()
