"""OmopSource: folders of CSV or Parquet and PostgreSQL give the same validated tables; bad input fails
with a message naming the table, the column and the row."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from schemas.tables.clinical import OMOP_CDM
from tasks.clinical.source import OmopValidationError, omop_source, read_all
from tests.services.postgres import load_omop_csv


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_csv_and_parquet_read_the_same(omop_csv: Path, tmp_path: Path) -> None:
    csv = read_all(omop_source(omop_csv))
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for name, lf in csv.items():
        lf.collect().write_parquet(pq_dir / f"{name}.parquet")
    pq = read_all(omop_source(str(pq_dir)))
    assert set(pq) == set(csv) == set(OMOP_CDM)
    for name in csv:
        assert pq[name].collect().equals(csv[name].collect()), name
    person = csv["person"].collect()
    assert person.schema["person_id"] == pl.Int64 and person.height == 30
    assert csv["observation_period"].collect().schema["observation_period_start_date"] == pl.Date


def test_missing_table_is_named(omop_csv: Path, tmp_path: Path) -> None:
    d = _copy(omop_csv, tmp_path / "o")
    (d / "observation_period.csv").unlink()
    with pytest.raises(OmopValidationError, match=r"observation_period"):
        read_all(omop_source(d))


def test_wrong_type_names_table_column_and_row(omop_csv: Path, tmp_path: Path) -> None:
    d = _copy(omop_csv, tmp_path / "o")
    df = pl.read_csv(d / "measurement.csv", infer_schema=False)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("12,5 cm"))
                         .otherwise(pl.col("value_as_number")).alias("value_as_number"))
    df.write_csv(d / "measurement.csv")
    with pytest.raises(OmopValidationError, match=r"'measurement'.*'value_as_number': row 4 has '12,5 cm'"):
        omop_source(d).read("measurement")
    df = pl.read_csv(d / "person.csv", infer_schema=False)
    df.with_columns(pl.lit("1950-13-45").alias("birth_datetime")).write_csv(d / "person.csv")
    with pytest.raises(OmopValidationError, match=r"'person'.*'birth_datetime': row 0"):
        omop_source(d).read("person")


def test_missing_required_column_and_empty_required_value(omop_csv: Path, tmp_path: Path) -> None:
    d = _copy(omop_csv, tmp_path / "o")
    pl.read_csv(d / "death.csv", infer_schema=False).drop("death_date").write_csv(d / "death.csv")
    with pytest.raises(OmopValidationError, match=r"'death'.*required column 'death_date'"):
        omop_source(d).read("death")
    df = pl.read_csv(d / "person.csv", infer_schema=False)
    df.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("year_of_birth"))
                    .alias("year_of_birth")).write_csv(d / "person.csv")
    with pytest.raises(OmopValidationError, match=r"'year_of_birth': row 2 is empty"):
        omop_source(d).read("person")


@pytest.mark.integration
def test_postgres_reads_what_csv_reads(omop_csv: Path, postgres_url: str) -> None:
    counts = load_omop_csv(postgres_url, omop_csv, schema="cdm")
    src = omop_source(f"{postgres_url}?schema=cdm")
    assert "schema cdm" in src.description and "@" not in src.description
    assert src.tables() == sorted(counts)
    csv = read_all(omop_source(omop_csv))
    pg = read_all(src)
    for name in csv:
        key = OMOP_CDM[name][0].name
        assert pg[name].collect().sort(key).equals(csv[name].collect().sort(key)), name
    with pytest.raises(OmopValidationError, match="visit_detail"):
        src.read("visit_detail")
