"""DDL and the data dictionary come from the declarations; the committed dictionary is current."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from schemas import TABLES, Column, Layer, Table
from schemas.ddl import create_table_sql, duckdb_type, empty_select_sql, postgres_type
from schemas.dictionary import DEFAULT_PATH, render_markdown

DEMO = Table(
    name="demo_levels",
    layer=Layer.SILVER,
    grain="one row per series and level",
    description="demo | with a pipe",
    key=("series_instance_uid", "level"),
    columns=(
        Column("series_instance_uid", pa.string(), "series", nullable=False),
        Column("level", pa.string(), "level", nullable=False, allowed=("L1", "L2")),
        Column("trabecular_hu", pa.float32(), "mean HU", unit="HU", min=-200, max=1500),
        Column("is_fractured", pa.bool_(), "fracture"),
        Column("study_date", pa.date32(), "date"),
        Column("measured_at", pa.timestamp("us", tz="UTC"), "time"),
        Column("n", pa.int32(), "count"),
        Column("tags", pa.list_(pa.string()), "tags"),
    ),
)


def test_types_round_trip_through_duckdb() -> None:
    con = duckdb.connect()
    con.execute(create_table_sql(DEMO))
    con.execute("insert into demo_levels values ('1', 'L1', 90.5, true, date '2020-01-02', "
                "timestamptz '2020-01-02 03:04:05+00', 3, ['a'])")
    got = con.sql("select * from demo_levels").to_arrow_table()
    assert DEMO.conform(got).num_rows == 1
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into demo_levels values ('1', 'L1', 1, false, null, null, null, null)")
    empty = con.sql(empty_select_sql(DEMO)).to_arrow_table()
    assert empty.num_rows == 0 and empty.column_names == DEMO.column_names
    assert [duckdb_type(f.type) for f in empty.schema] == [duckdb_type(c.type) for c in DEMO.columns]


def test_postgres_types() -> None:
    assert postgres_type(pa.float64()) == "double precision"
    assert postgres_type(pa.timestamp("us", tz="UTC")) == "timestamptz"
    assert postgres_type(pa.list_(pa.int64())) == "bigint[]"
    sql = create_table_sql(DEMO, schema="osteolake", dialect="postgres")
    assert sql.startswith('CREATE TABLE "osteolake"."demo_levels"') and "PRIMARY KEY" in sql
    with pytest.raises(ValueError, match="dialect"):
        create_table_sql(DEMO, dialect="oracle")


def test_every_declared_table_has_ddl() -> None:
    con = duckdb.connect()
    for t in TABLES.values():
        con.execute(create_table_sql(t, schema=None))
        con.execute(empty_select_sql(t))


def test_dictionary_renders_grain_units_ranges_phi() -> None:
    md = render_markdown([DEMO])
    assert "### `silver.demo_levels`" in md
    assert "**Grain:** one row per series and level." in md
    assert "| `trabecular_hu` | FLOAT | HU | -200 .. 1500 | yes | none | mean HU |" in md
    assert "`L1`, `L2`" in md and "demo \\| with a pipe" in md


def test_committed_dictionary_is_current() -> None:
    """docs/data_dictionary.md must equal a fresh render; regenerate with `python -m schemas.dictionary`."""
    assert Path(DEFAULT_PATH).is_file(), "docs/data_dictionary.md missing: run python -m schemas.dictionary"
    assert Path(DEFAULT_PATH).read_text() == render_markdown(), (
        "docs/data_dictionary.md is stale: run `python -m schemas.dictionary`"
    )
