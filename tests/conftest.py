"""Session fixtures shared by the whole suite.

- ``prefect_harness``: one ``prefect_test_harness()`` per session, only for tests that run flows.
- ``postgres_url``: a real PostgreSQL on loopback (tests/services/postgres.py), started once per session.
- ``real_dicom_dir``: ``../shared/real-dicom`` beside the repository (real files the project did not make).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_dicom_dir() -> Path:
    path = (REPO / ".." / "shared" / "real-dicom").resolve()
    if not path.is_dir():
        pytest.skip(f"real DICOM files not found at {path} (shared/ is laid beside the repository)")
    return path


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.services.postgres import running_postgres

    with running_postgres(tmp_path_factory.mktemp("pg")) as url:
        yield url
