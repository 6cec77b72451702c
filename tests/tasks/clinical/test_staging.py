"""Staging: pseudonymous keys that match the DICOM side, no raw identifiers, and data-quality records for
broken observation periods."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from synthetic.population import ISSUER, make_population
from tasks.clinical.fractures import fracture_events
from tasks.clinical.source import omop_source
from tasks.clinical.staging import stage_omop
from tasks.privacy import person_key

KEY = b"staging-test-key-0123456789"


def test_person_key_links_like_the_dicom_patient_id(omop_csv: Path) -> None:
    staged = stage_omop(omop_source(omop_csv), KEY, ISSUER)
    table = staged.persons_table()
    patients = make_population(30, 5)
    assert sorted(table.column("person_key").to_pylist()) == sorted(
        person_key(KEY, p.patient_id, ISSUER) for p in patients)
    other = stage_omop(omop_source(omop_csv), KEY, "ANOTHER-ISSUER").persons_table()
    assert set(other.column("person_key").to_pylist()).isdisjoint(table.column("person_key").to_pylist())
    text = " ".join(str(v) for col in table.columns for v in col.to_pylist())
    assert not any(p.patient_id in text for p in patients)
    assert "birth_date" not in table.column_names and "person_id" not in table.column_names
    assert all(i.success for i in staged.issues)


def test_broken_observation_periods_are_reported_and_dropped(omop_csv: Path, tmp_path: Path) -> None:
    d = tmp_path / "o"
    shutil.copytree(omop_csv, d)
    op = pl.read_csv(d / "observation_period.csv", try_parse_dates=True)
    # person 1: end before start; person 2: no observation period at all.
    op = op.with_columns(pl.when(pl.col("person_id") == 1).then(pl.col("observation_period_start_date"))
                         .otherwise(pl.col("observation_period_end_date")).alias("observation_period_end_date"),
                         pl.when(pl.col("person_id") == 1).then(pl.col("observation_period_end_date"))
                         .otherwise(pl.col("observation_period_start_date"))
                         .alias("observation_period_start_date"))
    op.filter(pl.col("person_id") != 2).write_csv(d / "observation_period.csv")
    staged = stage_omop(omop_source(d), KEY, ISSUER)
    issues = {i.check: i for i in staged.issues if i.table == "omop.observation_period"}
    assert not issues["plausibleStartBeforeEnd"].success
    assert issues["plausibleStartBeforeEnd"].failing_count == 1
    missing = issues["measurePersonCompleteness"]
    assert not missing.success and missing.failing_count == 2 and missing.element_count == 30
    assert missing.severity.value == "critical"
    assert staged.persons_table().num_rows == 28


def test_fracture_episodes_drop_later_encounters(omop_csv: Path) -> None:
    staged = stage_omop(omop_source(omop_csv), KEY, ISSUER)
    fx = fracture_events(staged).collect()
    assert fx["source_code"].str.ends_with("D").sum() == 0
    assert fx.filter(pl.col("is_high_trauma"))["is_fragility"].sum() == 0
    assert fx.select("person_key", "event_date", "site").is_duplicated().sum() == 0
