"""The cohort against the synthetic truth: index, events, follow-up, features, attrition."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from synthetic.population import ISSUER, Patient
from tasks.clinical.phenotypes import ConceptSet, load_fracture_phenotype
from tasks.clinical.staging import StagedOmop
from tasks.cohort.build import CohortResult, build_cohort
from tasks.cohort.definition import load_definition
from tasks.cohort.imaging import ImagingInputs
from tasks.privacy import person_key

KEY = b"cohort-test-key-0123456789"


@pytest.fixture(scope="module")
def result(staged: StagedOmop, imaging: ImagingInputs) -> CohortResult:
    return build_cohort(staged, imaging)


def _by_key(population: list[Patient]) -> dict[str, Patient]:
    return {person_key(KEY, p.patient_id, ISSUER): p for p in population}


def test_events_and_followup_equal_the_truth(result: CohortResult, omop_dir: Path,
                                             population: list[Patient]) -> None:
    cohort = pl.from_arrow(result.cohort)
    assert isinstance(cohort, pl.DataFrame)
    truth = pl.read_parquet(omop_dir / "truth" / "outcomes.parquet")
    persons = pl.read_parquet(omop_dir / "truth" / "persons.parquet")
    keys = {p.patient_id: k for k, p in _by_key(population).items()}
    imaged = persons.filter(pl.col("n_studies") > 0)
    assert cohort.height == imaged.height  # every imaged person is eligible under the default definition
    t = (truth.with_columns(pl.col("patient_id").replace_strict(keys).alias("person_key"))
         .pivot(on="outcome", index="person_key", values=["event", "time_years"]))
    j = cohort.join(t, on="person_key", how="inner")
    assert j.height == cohort.height
    assert j["is_event_mof"].to_list() == j["event_mof"].to_list()
    assert j["is_event_hip"].to_list() == j["event_hip"].to_list()
    # Same day count (followup_end_date is compared exactly below); floats agree to rounding.
    assert (j["time_mof_years"] - j["time_years_mof"]).abs().max() < 1e-9
    assert (j["time_hip_years"] - j["time_years_hip"]).abs().max() < 1e-9
    assert int(j["is_event_mof"].sum()) == int(imaged["mof_date"].is_not_null().sum()) >= 10
    assert int(j["is_event_hip"].sum()) == int((imaged["mof_site"] == "hip").sum()) >= 2
    by_key = _by_key(population)
    for row in cohort.iter_rows(named=True):
        p = by_key[row["person_key"]]
        assert p.outcome is not None
        assert row["index_date"] == p.baseline
        assert row["followup_end_date"] == p.outcome.end_date
        assert row["is_death"] == (p.outcome.death_date == p.outcome.end_date and p.outcome.mof_date is None)
        assert row["age_at_index_years"] == pytest.approx(p.age_at(p.baseline), abs=0.06)
        assert row["mof_site"] == (p.outcome.mof_site if p.outcome.mof_date else None)


def test_high_trauma_exclusion_matters(staged: StagedOmop, imaging: ImagingInputs, result: CohortResult) -> None:
    pheno = load_fracture_phenotype()
    no_exclusion = replace(pheno, high_trauma=ConceptSet())
    other = build_cohort(staged, imaging, fracture_phenotype=no_exclusion)
    n_ok = sum(result.cohort.column("is_event_mof").to_pylist())
    n_bad = sum(other.cohort.column("is_event_mof").to_pylist())
    assert n_bad > n_ok  # the synthetic record holds high-trauma fractures in follow-up


def test_same_inputs_same_cohort(staged: StagedOmop, imaging: ImagingInputs, result: CohortResult) -> None:
    again = build_cohort(staged, imaging)
    assert again.cohort.equals(result.cohort)
    assert again.features.equals(result.features)
    assert again.attrition.equals(result.attrition)


def test_features_at_index(result: CohortResult, population: list[Patient]) -> None:
    f = pl.from_arrow(result.features)
    assert isinstance(f, pl.DataFrame)
    by_key = _by_key(population)
    assert f["person_key"].to_list() == result.cohort.column("person_key").to_pylist()
    for row in f.iter_rows(named=True):
        p = by_key[row["person_key"]]
        expected = {
            "is_current_smoker": p.smoker, "has_alcohol_3u": p.alcohol_3u, "has_falls": p.falls,
            "has_parental_hip_fracture": p.parental_hip_fracture, "has_glucocorticoids": p.glucocorticoids,
            "has_rheumatoid_arthritis": p.rheumatoid_arthritis, "is_treated": p.treated,
            "has_secondary_osteoporosis": p.secondary_osteoporosis, "is_female": p.female,
            "has_recorded_vf": any(v.recorded for v in p.fractures),
            "has_prior_fracture": p.prior_fracture_date is not None or any(v.recorded for v in p.fractures),
        }
        assert {k: row[k] for k in expected} == expected, p.patient_id
        assert row["bmi_kg_m2"] == pytest.approx(p.bmi, abs=0.1)
        if p.studies[0].kind == "ct_abdomen":  # the index series measures L1 (thin axial CT)
            assert row["l1_trabecular_hu"] == pytest.approx(p.hu_l1_120(p.baseline), abs=1e-6)
            assert row["max_genant_grade"] == max([v.grade for v in p.fractures if v.level in
                                                   ("T12", "L1", "L2", "L3")], default=0)
        if row["fn_tscore"] is not None:
            assert abs(row["fn_tscore"] - p.dxa_tscore(p.baseline)) < 1.5  # noise 0.3 T, up to 3 years old


def test_attrition_counts_each_step(staged: StagedOmop, imaging: ImagingInputs, result: CohortResult,
                                    population: list[Patient]) -> None:
    a = pl.from_arrow(result.attrition)
    assert isinstance(a, pl.DataFrame)
    assert a["n_persons"][0] == sum(1 for p in population if p.studies)
    assert a["n_persons"][-1] == result.cohort.num_rows
    assert (a["n_persons"].shift(1) - a["n_persons"]).fill_null(0).to_list() == a["n_excluded"].to_list()
    older = replace(load_definition(), age_min=70.0)
    r = build_cohort(staged, imaging, older)
    n_old = sum(1 for p in population if p.studies and round(p.age_at(p.baseline), 1) >= 70.0)
    assert r.cohort.num_rows == n_old < result.cohort.num_rows
    ar = pl.from_arrow(r.attrition)
    assert isinstance(ar, pl.DataFrame)
    age_row = ar.filter(pl.col("rule").str.starts_with("age"))
    assert age_row["n_excluded"][0] == result.cohort.num_rows - n_old
