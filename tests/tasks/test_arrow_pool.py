"""Arrow's memory pool: jemalloc where the ingest's work runs (Dask workers too); a site's choice is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.tasks.dicom.conftest import KEY, write_series

REPO = Path(__file__).resolve().parents[2]
EXPECTED = "jemalloc" if "jemalloc" in pa.supported_memory_backends() else "system"
PROBE = (
    "import pyarrow as pa\n"
    "from tasks.arrow_pool import use_arrow_pool\n"
    "name = use_arrow_pool()\n"
    "before = pa.jemalloc_memory_pool().bytes_allocated() if 'jemalloc' in pa.supported_memory_backends() else 0\n"
    "arr = pa.array(range(200_000), pa.int64())\n"
    "after = pa.jemalloc_memory_pool().bytes_allocated() if 'jemalloc' in pa.supported_memory_backends() else 0\n"
    "print(name, pa.default_memory_pool().backend_name, after - before)\n"
)


def _probe(pool_env: str | None) -> tuple[str, str, int]:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if pool_env:
        env["ARROW_DEFAULT_MEMORY_POOL"] = pool_env
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], out[1], int(out[2])


def test_new_buffers_come_from_jemalloc() -> None:
    name, default, grew = _probe(None)
    assert name == default == EXPECTED
    if EXPECTED == "jemalloc":
        assert grew >= 200_000 * 8  # the array's buffer was allocated from jemalloc


def test_a_site_that_chose_a_pool_keeps_it() -> None:
    name, default, grew = _probe("system")
    assert name == default == "system"
    assert grew == 0


def test_dask_workers_switch_when_they_run_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client

    from flows.dask_cluster import dask_cluster
    from flows.ingest_batches import Batch, index_one
    from tasks.dicom.sources import FolderSource

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)  # the workers inherit the environment
    files = write_series(tmp_path / "ct", 3)
    src = FolderSource(str(tmp_path))
    with dask_cluster(None, 1) as address, Client(address) as client:
        result = client.submit(index_one, src, Batch([str(f) for f in files]), {"key": KEY}).result()
        after = set(client.run(lambda: pa.default_memory_pool().backend_name).values())
    assert result.parsed.num_rows == 3
    assert after == {EXPECTED}
