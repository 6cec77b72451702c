"""The synthetic OMOP extract: layout, determinism, and agreement with the latent patients."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from schemas.tables.clinical import OMOP_CDM
from synthetic import concepts as C
from synthetic.omop import TRUTH_OUTCOMES_COLUMNS, TRUTH_PERSONS_COLUMNS, write_omop
from synthetic.population import DATA_CUTOFF, Patient, make_population


@pytest.fixture(scope="module")
def patients() -> list[Patient]:
    return make_population(20, 7)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, patients: list[Patient]) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("omop")
    counts = write_omop(patients, root / "omop", root / "truth")
    return root, counts


def _read(root: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(root / "omop" / f"{table}.csv", try_parse_dates=True, infer_schema_length=None)


def test_every_table_has_the_v54_columns(written: tuple[Path, dict[str, int]]) -> None:
    root, counts = written
    for table, cols in OMOP_CDM.items():
        header = (root / "omop" / f"{table}.csv").read_text().splitlines()[0].split(",")
        assert header == [c.name for c in cols], table
        assert counts[table] == _read(root, table).height
    assert counts["person"] == 20 and counts["observation_period"] == 20


def test_deterministic(tmp_path: Path, patients: list[Patient], written: tuple[Path, dict[str, int]]) -> None:
    root, _ = written
    write_omop(patients, tmp_path / "omop", tmp_path / "truth")
    for table in OMOP_CDM:
        assert (tmp_path / "omop" / f"{table}.csv").read_bytes() == (root / "omop" / f"{table}.csv").read_bytes()
    for name in ("persons", "outcomes"):
        a = pl.read_parquet(tmp_path / "truth" / f"{name}.parquet")
        assert a.equals(pl.read_parquet(root / "truth" / f"{name}.parquet"))


def test_person_source_value_is_the_patient_id(written: tuple[Path, dict[str, int]],
                                               patients: list[Patient]) -> None:
    root, _ = written
    person = _read(root, "person").sort("person_id")
    assert person["person_source_value"].to_list() == [p.patient_id for p in patients]
    assert person["gender_concept_id"].to_list() == [8532 if p.female else 8507 for p in patients]


def test_observation_periods_cover_every_record(written: tuple[Path, dict[str, int]],
                                                patients: list[Patient]) -> None:
    root, _ = written
    op = _read(root, "observation_period")
    checked = 0
    for table, col in [("condition_occurrence", "condition_start_date"), ("measurement", "measurement_date"),
                       ("observation", "observation_date"), ("drug_exposure", "drug_exposure_start_date"),
                       ("procedure_occurrence", "procedure_date"), ("visit_occurrence", "visit_start_date")]:
        j = _read(root, table).join(op, on="person_id")
        bad = j.filter((pl.col(col) < pl.col("observation_period_start_date"))
                       | (pl.col(col) > pl.col("observation_period_end_date")))
        assert bad.height == 0, f"{table}: {bad.head(3)}"
        checked += j.height
    assert checked > 200
    for p, row in zip(patients, op.sort("person_id").iter_rows(named=True), strict=True):
        assert p.outcome is not None
        assert row["observation_period_end_date"] == (p.outcome.death_date or DATA_CUTOFF)
        assert (p.baseline - row["observation_period_start_date"]).days >= 730


def test_fractures_agree_with_the_latent_patients(written: tuple[Path, dict[str, int]],
                                                  patients: list[Patient]) -> None:
    root, _ = written
    co = _read(root, "condition_occurrence")
    obs = _read(root, "observation")
    high = obs.filter(pl.col("observation_source_value").is_in([c.code for c in C.HIGH_TRAUMA_CAUSES]))
    initial = co.filter(pl.col("condition_source_value").str.contains(r"^(S72|S22|S32|M48\.5|M80|S52|S42|S82)")
                        & pl.col("condition_source_value").str.ends_with("A"))
    fragility = initial.join(high.select("person_id", pl.col("observation_date").alias("condition_start_date")),
                             on=["person_id", "condition_start_date"], how="anti")
    n_high = initial.height - fragility.height
    assert n_high == high.height and n_high >= 1  # the exclusion trap is present at this size
    expected = 0
    for p in patients:
        assert p.outcome is not None
        dates = {p.prior_fracture_date, p.outcome.mof_date} - {None}
        mine = fragility.filter(pl.col("person_id") == p.index + 1)
        assert set(mine["condition_start_date"].to_list()) >= dates
        after = mine.filter(pl.col("condition_start_date") > p.baseline)
        assert after["condition_start_date"].to_list() == ([p.outcome.mof_date] if p.outcome.mof_date else [])
        expected += (p.prior_fracture_date is not None) + sum(f.recorded for f in p.fractures) + bool(
            p.outcome.mof_date)
    assert fragility.height == expected


def test_truth_files(written: tuple[Path, dict[str, int]], patients: list[Patient]) -> None:
    root, _ = written
    persons = pl.read_parquet(root / "truth" / "persons.parquet")
    outcomes = pl.read_parquet(root / "truth" / "outcomes.parquet")
    assert tuple(persons.columns) == TRUTH_PERSONS_COLUMNS
    assert tuple(outcomes.columns) == TRUTH_OUTCOMES_COLUMNS
    assert outcomes.height == 2 * len(patients)
    mof = outcomes.filter(pl.col("outcome") == "mof")
    assert mof["event"].sum() == sum(p.outcome is not None and p.outcome.mof_date is not None for p in patients)
    hip = outcomes.filter(pl.col("outcome") == "hip")
    assert hip["event"].sum() == sum(p.outcome is not None and p.outcome.mof_site == "hip" for p in patients)
    p0 = patients[0]
    assert p0.outcome is not None
    row = persons.row(0, named=True)
    assert row["end_date"] == p0.outcome.end_date and row["baseline_date"] == p0.baseline
    t = mof.row(0, named=True)["time_years"]
    assert t == pytest.approx((p0.outcome.end_date - p0.baseline).days / 365.25)
    assert persons["birth_date"].min() > date(1900, 1, 1)


def test_dxa_tscores_follow_latent_density(written: tuple[Path, dict[str, int]], patients: list[Patient]) -> None:
    root, _ = written
    m = _read(root, "measurement").filter(pl.col("measurement_concept_id") == C.FN_TSCORE.concept_id)
    assert m.height >= 3
    errors = []
    for row in m.iter_rows(named=True):
        p = patients[row["person_id"] - 1]
        errors.append(row["value_as_number"] - p.dxa_tscore(row["measurement_date"]))
    assert max(abs(e) for e in errors) < 1.2  # noise SD 0.3 T plus rounding


def test_phenotypes_know_every_concept_the_extract_uses() -> None:
    from tasks.clinical.phenotypes import load_fracture_phenotype, load_risk_factor_phenotype

    fx = {s.name: s.codes for s in load_fracture_phenotype().sites}
    expect = {"hip": [C.HIP_FX], "forearm": [C.FOREARM_FX], "humerus": [C.HUMERUS_FX], "other": [C.ANKLE_FX],
              "vertebral": [C.VERT_FX_THORACIC, C.VERT_FX_LUMBAR, C.VERT_FX_OSTEOPOROTIC, C.VERT_COLLAPSE]}
    for site, cs in expect.items():
        for c in cs:
            assert c.concept_id in fx[site].concept_ids and any(c.code.startswith(p) for p in fx[site].prefixes)
    rf = load_risk_factor_phenotype()
    pairs = {"height_cm": [C.HEIGHT], "weight_kg": [C.WEIGHT], "fn_bmd_g_cm2": [C.FN_BMD],
             "fn_tscore": [C.FN_TSCORE], "smoking_current": [C.SMOKING_STATUS], "alcohol_units_day": [C.ALCOHOL_UNITS],
             "parental_hip_fracture": [C.PARENTAL_HIP], "falls": [C.HISTORY_OF_FALLING],
             "secondary_osteoporosis": list(C.SECONDARY_CAUSES), "glucocorticoids": list(C.GLUCOCORTICOIDS),
             "osteoporosis_treatment": list(C.OSTEOPOROSIS_DRUGS)}
    for name, cs in pairs.items():
        f = rf.factor(name)
        for c in cs:
            assert c.concept_id in f.codes.concept_ids, (name, c)
    assert C.TYPE2_DIABETES.concept_id not in rf.factor("secondary_osteoporosis").codes.concept_ids
