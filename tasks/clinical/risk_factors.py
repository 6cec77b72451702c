"""Risk-factor records from the staged record, and the clinical features at an index date."""

from __future__ import annotations

import polars as pl

from schemas.tables.clinical import RISK_FACTOR_RECORDS
from tasks.clinical.phenotypes import RiskFactor, RiskFactorPhenotype, load_risk_factor_phenotype
from tasks.clinical.staging import StagedOmop

_TABLE = {"condition": "condition_occurrence", "measurement": "measurement", "observation": "observation",
          "drug": "drug_exposure", "procedure": "procedure_occurrence"}
#: feature column -> (factor, how); how: latest | flag | status | exposure | threshold
CLINICAL_FEATURES: dict[str, tuple[str, str]] = {
    "height_cm": ("height_cm", "latest"),
    "weight_kg": ("weight_kg", "latest"),
    "fn_bmd_g_cm2": ("fn_bmd_g_cm2", "latest"),
    "fn_tscore": ("fn_tscore", "latest"),
    "is_current_smoker": ("smoking_current", "status"),
    "has_alcohol_3u": ("alcohol_units_day", "threshold"),
    "has_parental_hip_fracture": ("parental_hip_fracture", "flag"),
    "has_falls": ("falls", "flag"),
    "has_rheumatoid_arthritis": ("rheumatoid_arthritis", "flag"),
    "has_secondary_osteoporosis": ("secondary_osteoporosis", "flag"),
    "has_glucocorticoids": ("glucocorticoids", "exposure"),
    "is_treated": ("osteoporosis_treatment", "exposure"),
}


def _records(staged: StagedOmop, f: RiskFactor, label: str) -> pl.LazyFrame:
    ev = staged.events.filter((pl.col("domain") == f.domain) & f.codes.matches())
    if f.kind == "status":
        assert f.current is not None
        flag = f.current.matches("value_concept_id", "value_source_value")
        value = pl.lit(None, pl.Float64)
    elif f.kind == "exposure":
        flag, value = pl.lit(True), ((pl.col("end_date") - pl.col("event_date")).dt.total_days() + 1).cast(
            pl.Float64)
    elif f.kind == "number":
        value = pl.col("value_number")
        flag = (value >= f.threshold) if f.threshold is not None else pl.lit(None, pl.Boolean)
        ev = ev.filter(value.is_not_null())
    else:
        flag, value = pl.lit(True), pl.lit(None, pl.Float64)
    return ev.select(
        "person_key", pl.lit(f.name).alias("factor"), pl.col("event_date").alias("start_date"), "end_date",
        value.alias("value_number"), flag.alias("value_flag"), pl.lit(_TABLE[f.domain]).alias("source_table"),
        pl.lit(label).alias("phenotype"),
    )


def risk_factor_records(staged: StagedOmop, pheno: RiskFactorPhenotype | None = None) -> pl.LazyFrame:
    """Every record that a risk-factor concept set matches (``risk_factors`` columns).

    Parameters
    ----------
    staged
        The staged record.
    pheno
        Risk-factor phenotype; default ``phenotypes/risk_factors.yaml``.
    """
    pheno = pheno or load_risk_factor_phenotype()
    parts = [_records(staged, f, pheno.label) for f in pheno.factors]
    return (pl.concat(parts).select(RISK_FACTOR_RECORDS.column_names)
            .sort("person_key", "factor", "start_date", "value_number", "value_flag", nulls_last=True))


def clinical_features(records: pl.LazyFrame, index: pl.LazyFrame, pheno: RiskFactorPhenotype | None = None,
                      measurement_lookback_days: int | None = None) -> pl.LazyFrame:
    """Clinical risk factors at each person's index date, from :func:`risk_factor_records`.

    Parameters
    ----------
    records
        Risk-factor records.
    index
        ``person_key, index_date`` (one row per person).
    pheno
        The phenotype the records came from (for thresholds and exposure days).
    measurement_lookback_days
        Numbers (BMD, T-score, height, weight) older than this before index are ignored; ``None``: no limit.

    Returns
    -------
    pl.LazyFrame
        ``person_key``, the columns of :data:`CLINICAL_FEATURES` and ``bmi_kg_m2``. Only records dated on or
        before the index date are used. Flags are False without a record (absence of a code is read as
        absence of the factor, as in the usual risk calculators); numbers are null without a record.
    """
    pheno = pheno or load_risk_factor_phenotype()
    base = index.select("person_key", "index_date")
    j = records.join(base, on="person_key", how="inner").filter(pl.col("start_date") <= pl.col("index_date"))
    out = base
    for col, (factor, how) in CLINICAL_FEATURES.items():
        f = pheno.factor(factor)
        r = j.filter(pl.col("factor") == factor)
        if how in ("latest", "status", "threshold"):
            if how == "latest" and measurement_lookback_days is not None:
                r = r.filter((pl.col("index_date") - pl.col("start_date")).dt.total_days()
                             <= measurement_lookback_days)
            r = r.sort("person_key", "start_date", "value_number", "value_flag", nulls_last=True)
            last = r.group_by("person_key", maintain_order=True).agg(
                pl.col("value_number").last(), pl.col("value_flag").last())
            expr = pl.col("value_number") if how == "latest" else pl.col("value_flag").fill_null(False)
            feat = last.select("person_key", expr.alias(col))
        elif how == "flag":
            feat = r.select("person_key").unique().with_columns(pl.lit(True).alias(col))
        else:  # exposure: days before (and including) index, summed over records
            upto = pl.min_horizontal("end_date", "index_date")
            days = ((upto - pl.col("start_date")).dt.total_days() + 1).clip(lower_bound=0)
            feat = (r.group_by("person_key").agg(days.sum().alias("_days"))
                    .select("person_key", (pl.col("_days") >= (f.min_days or 1)).alias(col)))
        out = out.join(feat, on="person_key", how="left")
        if how in ("flag", "exposure"):
            out = out.with_columns(pl.col(col).fill_null(False))
        elif how in ("status", "threshold"):
            out = out.with_columns(pl.col(col).fill_null(False))
    bmi = pl.col("weight_kg") / (pl.col("height_cm") / 100.0) ** 2
    return out.with_columns(bmi.alias("bmi_kg_m2")).drop("index_date")
