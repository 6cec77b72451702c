"""A reader querying in a loop while another process refreshes never errors and never sees two snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas import Table
from warehouse.lake import Warehouse

REPO = Path(__file__).resolve().parents[2]
ROWS = 200
REFRESHES = 12

REFRESHER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from tests.warehouse.conftest import TEST_TABLES, register
    from warehouse.lake import Warehouse

    register(*TEST_TABLES)
    wh = Warehouse(sys.argv[1], keep=3)
    rows, n = int(sys.argv[2]), int(sys.argv[3])
    for v in range(1, n + 1):
        b = wh.begin(f"refresh-{v}")
        b.replace("t_scans", pa.table({"uid": [f"s{i}" for i in range(rows)], "version": [v] * rows}))
        b.replace("t_levels", pa.table({"uid": [f"s{i}" for i in range(rows)], "level": ["L1"] * rows,
                                        "version": [v] * rows}))
        b.publish({"v": v})
    """
)

QUERY = """
select (select min(version) from t_scans), (select max(version) from t_scans), (select count(*) from t_scans),
       (select min(version) from silver.t_levels), (select max(version) from silver.t_levels),
       (select count(*) from t_levels), (select run_id from meta.snapshot)
"""


def test_reader_never_errors_or_mixes_snapshots(tmp_path: Path, test_tables: tuple[Table, ...]) -> None:
    wh = Warehouse(tmp_path / "wh", keep=3)
    b = wh.begin("refresh-0")
    b.replace("t_scans", pa.table({"uid": [f"s{i}" for i in range(ROWS)], "version": [0] * ROWS}))
    b.replace("t_levels", pa.table({"uid": [f"s{i}" for i in range(ROWS)], "level": ["L1"] * ROWS,
                                    "version": [0] * ROWS}))
    b.publish()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", REFRESHER, str(wh.root), str(ROWS), str(REFRESHES)],
                            cwd=str(tmp_path), env=env, stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    errors: list[str] = []
    queries = 0
    while True:
        done = proc.poll() is not None
        try:
            with duckdb.connect(str(wh.catalog_path), read_only=True) as con:
                row = con.execute(QUERY).fetchone()
        except duckdb.Error as e:  # pragma: no cover - this is what the test guards against
            errors.append(str(e))
            if len(errors) > 20 or done:
                break
            continue
        finally:
            queries += 1
        assert row is not None
        smin, smax, scount, lmin, lmax, lcount, run_id = row
        assert smin == smax == lmin == lmax, f"mixed snapshots seen: {row}"
        assert scount == lcount == ROWS
        assert run_id == f"refresh-{smin}"
        seen.append(int(smin))
        if done:
            break
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert errors == []
    print(f"{queries} queries, snapshots seen: {sorted(set(seen))}")
    assert seen[-1] == REFRESHES
    assert seen == sorted(seen)  # never goes back in time
    assert len(set(seen)) >= 3, f"reader saw too few snapshots to mean anything: {sorted(set(seen))}"
    assert len(wh.snapshots()) == 3
