"""Build the cohort, its features at index and its attrition from the staged record and imaging tables."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from schemas.tables.clinical import ATTRITION, COHORT, FEATURES
from tasks.clinical.fractures import fracture_events
from tasks.clinical.phenotypes import FracturePhenotype, RiskFactorPhenotype, load_risk_factor_phenotype
from tasks.clinical.risk_factors import clinical_features, risk_factor_records
from tasks.clinical.staging import StagedOmop
from tasks.cohort.definition import CohortDefinition, load_definition
from tasks.cohort.imaging import ImagingInputs, first_eligible_study, imaging_features

DAYS_PER_YEAR = 365.25


@dataclass
class CohortResult:
    """The three tables (Arrow, conformed to their declarations) and the definition that made them."""

    cohort: pa.Table
    features: pa.Table
    attrition: pa.Table
    definition: CohortDefinition


def _years(a: str, b: str) -> pl.Expr:
    return (pl.col(b) - pl.col(a)).dt.total_days() / DAYS_PER_YEAR


def build_cohort(staged: StagedOmop, imaging: ImagingInputs, definition: CohortDefinition | None = None, *,
                 fractures: pl.LazyFrame | None = None, risk_records: pl.LazyFrame | None = None,
                 fracture_phenotype: FracturePhenotype | None = None,
                 risk_phenotype: RiskFactorPhenotype | None = None) -> CohortResult:
    """Apply a cohort definition.

    Parameters
    ----------
    staged
        The staged clinical record (:func:`tasks.clinical.staging.stage_omop`).
    imaging
        Imaging tables (``series`` required; biomarker tables optional).
    definition
        Cohort definition; default ``tasks/cohort/default.yaml``.
    fractures, risk_records
        Precomputed ``fracture_events`` / ``risk_factors`` frames; computed from ``staged`` when absent.

    Returns
    -------
    CohortResult
        ``cohort``, ``features`` (one row per cohort person) and ``attrition`` (one row per step).

    Notes
    -----
    Deterministic: the same inputs give the same rows in the same order (sorted by person_key). Follow-up
    ends at the first of: fragility MOF after index, death, end of the observation period holding the index
    date, data cut-off (default: the latest observation end). An outcome on the same day as death counts.
    """
    d = definition or load_definition()
    risk_phenotype = risk_phenotype or load_risk_factor_phenotype()
    fx = fractures if fractures is not None else fracture_events(staged, fracture_phenotype)
    rr = risk_records if risk_records is not None else risk_factor_records(staged, risk_phenotype)
    steps: list[tuple[str, int]] = []

    def step(rule: str, frame: pl.DataFrame) -> pl.DataFrame:
        steps.append((rule, frame.height))
        return frame

    s = imaging.series_lf().filter(pl.col("person_key").is_not_null())
    step("persons with imaging (series with a person_key)", s.select("person_key").unique().collect())
    idx = step("with an eligible imaging series (entry: the first such study is the index)",
               first_eligible_study(imaging, d).collect())
    persons = staged.persons.collect()
    idx = step("linked to the clinical record (OMOP person with a valid observation period)",
               idx.join(persons, on="person_key", how="inner"))
    per = staged.periods.collect()
    cutoff = d.data_cutoff or per["observation_end_date"].max()
    inper = (idx.join(per, on="person_key", how="inner")
             .filter((pl.col("observation_start_date") <= pl.col("index_date"))
                     & (pl.col("index_date") <= pl.col("observation_end_date")))
             .sort("person_key", "observation_start_date").unique("person_key", keep="first", maintain_order=True))
    idx = step(f"index inside an observation period with >= {d.lookback_days} days before it",
               inper.filter((pl.col("index_date") - pl.col("observation_start_date")).dt.total_days()
                            >= d.lookback_days))
    idx = idx.with_columns(
        ((pl.col("index_date") - pl.col("birth_date")).dt.total_days() / DAYS_PER_YEAR).round(1)
        .alias("age_at_index_years"))
    idx = step(f"age at index {d.age_min:g}-{d.age_max:g} years",
               idx.filter(pl.col("age_at_index_years").is_between(d.age_min, d.age_max)))
    mof = fx.filter(pl.col("is_fragility") & pl.col("site").is_in(list(d.mof_sites))).collect()
    recent = (mof.join(idx.select("person_key", "index_date"), on="person_key", how="inner")
              .filter((pl.col("event_date") <= pl.col("index_date"))
                      & ((pl.col("index_date") - pl.col("event_date")).dt.total_days() < d.washout_days)))
    idx = step(f"no fragility MOF in the {d.washout_days} days up to index",
               idx.join(recent.select("person_key").unique(), on="person_key", how="anti"))
    # Follow-up: first fragility MOF after index (hip preferred on a tie of sites).
    first = (mof.join(idx.select("person_key", "index_date"), on="person_key", how="inner")
             .filter(pl.col("event_date") > pl.col("index_date"))
             .with_columns((pl.col("site") != d.hip_site).alias("_nothip"))
             .sort("person_key", "event_date", "_nothip", "site")
             .unique("person_key", keep="first", maintain_order=True)
             .select("person_key", pl.col("event_date").alias("mof_date"), pl.col("site").alias("mof_site")))
    c = idx.join(first, on="person_key", how="left").with_columns(pl.lit(cutoff).alias("_cutoff"))
    censor = pl.min_horizontal("death_date", "observation_end_date", "_cutoff")
    c = c.with_columns(censor.alias("_censor")).with_columns(
        (pl.col("mof_date").is_not_null() & (pl.col("mof_date") <= pl.col("_censor"))).alias("is_event_mof"))
    c = c.with_columns(
        pl.when(pl.col("is_event_mof")).then(pl.col("mof_date")).otherwise(pl.col("_censor"))
        .alias("followup_end_date"),
        pl.when(pl.col("is_event_mof")).then(pl.col("mof_site")).otherwise(None).alias("mof_site"))
    reason = (pl.when(pl.col("is_event_mof")).then(pl.lit("mof"))
              .when(pl.col("death_date") == pl.col("followup_end_date")).then(pl.lit("death"))
              .when(pl.col("_cutoff") == pl.col("followup_end_date")).then(pl.lit("data_cutoff"))
              .otherwise(pl.lit("end_of_observation")))
    c = c.with_columns(reason.alias("censor_reason"))
    c = step("positive follow-up (index before death, end of observation and cut-off)",
             c.filter(pl.col("followup_end_date") > pl.col("index_date")))
    c = c.with_columns(
        _years("index_date", "followup_end_date").alias("time_mof_years"),
        _years("index_date", "followup_end_date").alias("time_hip_years"),
        (pl.col("is_event_mof") & (pl.col("mof_site") == d.hip_site)).alias("is_event_hip"),
        (pl.col("censor_reason") == "death").alias("is_death"),
        pl.lit(d.label).alias("cohort_definition"),
    ).sort("person_key")
    cohort = COHORT.conform(c.select(COHORT.column_names).to_arrow())

    index = c.select("person_key", "index_date", "index_study_instance_uid", "index_series_instance_uid").lazy()
    clin = clinical_features(rr, index, risk_phenotype, d.measurement_lookback_days)
    prior = (fx.filter(pl.col("is_fragility")).join(index, on="person_key", how="inner")
             .filter(pl.col("event_date") <= pl.col("index_date"))
             .group_by("person_key").agg(pl.len().alias("_n"),
                                         (pl.col("site") == "vertebral").any().alias("has_recorded_vf")))
    img = imaging_features(imaging, index)
    f = (c.lazy().select("person_key", pl.col("age_at_index_years").alias("age_years"), "is_female")
         .join(clin, on="person_key", how="left").join(prior, on="person_key", how="left")
         .join(img, on="person_key", how="left")
         .with_columns(pl.col("_n").fill_null(0).gt(0).alias("has_prior_fracture"),
                       pl.col("has_recorded_vf").fill_null(False))
         .collect())
    if "muscle_area_l3_cm2" in f.columns:
        f = f.with_columns((pl.col("muscle_area_l3_cm2") / (pl.col("height_cm") / 100.0) ** 2).alias("smi_cm2_m2"))
    f = f.select([n for n in FEATURES.column_names if n in f.columns]).sort("person_key")
    features = FEATURES.conform(f.to_arrow())
    n0 = steps[0][1]
    rows = [{"cohort_definition": d.label, "step": i, "rule": r, "n_persons": n,
             "n_excluded": (steps[i - 1][1] - n) if i else 0} for i, (r, n) in enumerate(steps)]
    attrition = ATTRITION.conform(pa.Table.from_pylist(rows))
    assert n0 >= steps[-1][1]
    return CohortResult(cohort=cohort, features=features, attrition=attrition, definition=d)
