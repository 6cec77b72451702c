"""Test-only tables for the lake tests (registered into the schema registry for one test)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas import TABLES, Column, Layer, Table

T_SCANS = Table(
    name="t_scans",
    layer=Layer.BRONZE,
    grain="one row per scan (test table)",
    description="test-only table",
    key=("uid",),
    columns=(
        Column("uid", pa.string(), "scan uid", nullable=False),
        Column("version", pa.int64(), "refresh that wrote the row"),
        Column("hu", pa.float32(), "attenuation", unit="HU"),
    ),
)
T_LEVELS = Table(
    name="t_levels",
    layer=Layer.SILVER,
    grain="one row per scan and level (test table)",
    description="test-only table",
    key=("uid", "level"),
    columns=(
        Column("uid", pa.string(), "scan uid", nullable=False),
        Column("level", pa.string(), "vertebral level", nullable=False),
        Column("version", pa.int64(), "refresh that wrote the row"),
    ),
)
TEST_TABLES = (T_SCANS, T_LEVELS)


def register(*tables: Table) -> None:
    for t in tables:
        TABLES[t.name] = t


@pytest.fixture
def test_tables(monkeypatch: pytest.MonkeyPatch) -> tuple[Table, ...]:
    for t in TEST_TABLES:
        monkeypatch.setitem(TABLES, t.name, t)
    return TEST_TABLES
