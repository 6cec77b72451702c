"""A refresh killed part-way (SIGKILL of a real process) and run again yields the warehouse of a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.flows.helpers import KEY

pytestmark = pytest.mark.integration

# Columns that legitimately differ between runs (timing, run identity, file names).
VOLATILE = {"seconds", "run_id", "ingest_run_id", "first_seen_run_id", "recorded_at", "indexed_at", "mtime",
            "trained_at"}
COMPARED = ("instances", "series", "studies", "quarantine", "duplicates", "vertebra_measurements",
            "body_composition", "omop_persons", "fracture_events", "cohort", "features", "attrition")


def _canonical(table: pa.Table) -> list[tuple[Any, ...]]:
    keep = [c for c in table.column_names if c not in VOLATILE]
    rows = table.select(keep).to_pylist()
    return sorted(tuple((k, repr(v)) for k, v in sorted(r.items())) for r in rows)


def _refresh_cmd(hospital: Path, wh: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "osteolake"), "refresh",
        "--archive", str(hospital / "archive"), "--omop", str(hospital / "omop"), "--warehouse", str(wh),
    ]


def _env(tmp: Path) -> dict[str, str]:
    from synthetic.population import ISSUER

    env = dict(os.environ)
    env.update(OSTEOLAKE_PSEUDONYM_KEY=KEY, OSTEOLAKE_ISSUER=ISSUER, OSTEOLAKE_CONFIG=str(tmp / "none.toml"),
               PREFECT_HOME=str(tmp / "prefect"), PREFECT_LOGGING_LEVEL="WARNING")
    env.pop("PREFECT_API_URL", None)
    return env


def _kill_when(proc: subprocess.Popen[bytes], wh: Path, table: str, timeout: float = 600) -> bool:
    """SIGKILL ``proc`` (and its children) as soon as a data file of ``table`` appears in ``wh``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if any((wh / "data" / table).rglob("*.parquet")):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    return False


@pytest.mark.parametrize("kill_at", ["instances", "vertebra_measurements"])
def test_killed_refresh_then_rerun_equals_clean_run(
    kill_at: str, hospital: Path, refreshed: dict[str, Any], tmp_path: Path
) -> None:
    from warehouse.lake import Warehouse

    wh = tmp_path / "wh"
    env = _env(tmp_path)
    proc = subprocess.Popen(_refresh_cmd(hospital, wh), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    killed = _kill_when(proc, wh, kill_at)
    assert killed, f"the refresh ended before it wrote {kill_at}; nothing was interrupted"
    assert Warehouse(wh).current() is None, "a killed run must not have published"
    done = subprocess.run(_refresh_cmd(hospital, wh), env=env, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    resumed, clean = Warehouse(wh), Warehouse(refreshed["wh"])
    assert resumed.current() is not None
    for table in COMPARED:
        assert _canonical(resumed.read(table)) == _canonical(clean.read(table)), f"{table} differs"
