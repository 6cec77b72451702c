"""CSV and PostgreSQL sources give identical cohorts; bad OMOP input never gives a silently wrong cohort."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from synthetic.population import ISSUER
from tasks.clinical.source import OmopValidationError, omop_source
from tasks.clinical.staging import StagedOmop, stage_omop
from tasks.cohort.build import build_cohort
from tasks.cohort.imaging import ImagingInputs
from tests.services.postgres import load_omop_csv, running_postgres

KEY = b"cohort-test-key-0123456789"


@pytest.mark.integration
def test_postgres_and_csv_give_identical_cohorts(omop_dir: Path, staged: StagedOmop, imaging: ImagingInputs,
                                                 tmp_path: Path) -> None:
    with running_postgres(tmp_path) as url:
        load_omop_csv(url, omop_dir / "omop")
        from_pg = stage_omop(omop_source(url), KEY, ISSUER)
        a = build_cohort(from_pg, imaging)
    b = build_cohort(staged, imaging)
    assert a.cohort.num_rows > 0
    assert a.cohort.equals(b.cohort) and a.features.equals(b.features) and a.attrition.equals(b.attrition)


def test_person_without_observation_period_leaves_with_a_record(omop_dir: Path, imaging: ImagingInputs,
                                                                staged: StagedOmop, tmp_path: Path) -> None:
    d = tmp_path / "o"
    shutil.copytree(omop_dir / "omop", d)
    op = pl.read_csv(d / "observation_period.csv", infer_schema=False)
    op.filter(pl.col("person_id") != "1").write_csv(d / "observation_period.csv")
    broken = stage_omop(omop_source(d), KEY, ISSUER)
    assert any(i.check == "measurePersonCompleteness" and not i.success for i in broken.issues)
    r = build_cohort(broken, imaging)
    full = build_cohort(staged, imaging)
    linked = pl.from_arrow(r.attrition).filter(pl.col("rule").str.starts_with("linked"))
    assert r.cohort.num_rows == full.cohort.num_rows - 1 and linked["n_excluded"][0] == 1


def test_dates_out_of_order_in_events_are_recorded(omop_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "o"
    shutil.copytree(omop_dir / "omop", d)
    de = pl.read_csv(d / "drug_exposure.csv", try_parse_dates=True, infer_schema_length=None)
    de.with_columns(pl.col("drug_exposure_start_date").dt.offset_by("-400d").alias("drug_exposure_end_date")) \
        .write_csv(d / "drug_exposure.csv")
    staged = stage_omop(omop_source(d), KEY, ISSUER)
    bad = [i for i in staged.issues if i.table == "omop.events" and not i.success]
    assert bad and bad[0].failing_count == de.height


def test_missing_table_or_bad_type_stops_the_cohort(omop_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "o"
    shutil.copytree(omop_dir / "omop", d)
    (d / "death.csv").unlink()
    with pytest.raises(OmopValidationError, match=r"\['death'\] missing"):
        stage_omop(omop_source(d), KEY, ISSUER)
    shutil.copy(omop_dir / "omop" / "death.csv", d / "death.csv")
    op = pl.read_csv(d / "observation_period.csv", infer_schema=False)
    op.with_columns(pl.lit("31/12/2020").alias("observation_period_end_date")).write_csv(
        d / "observation_period.csv")
    with pytest.raises(OmopValidationError, match=r"'observation_period_end_date': row 0 has '31/12/2020'"):
        stage_omop(omop_source(d), KEY, ISSUER)
