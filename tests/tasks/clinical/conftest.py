"""Fixtures: a small synthetic OMOP extract, and a real PostgreSQL on loopback (session scope)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synthetic.omop import write_omop
from synthetic.population import make_population
from tests.services.postgres import running_postgres


@pytest.fixture(scope="session")
def omop_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("omop-clinical")
    write_omop(make_population(30, 5), root / "omop", root / "truth")
    return root / "omop"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_postgres(tmp_path_factory.mktemp("pg")) as url:
        yield url
