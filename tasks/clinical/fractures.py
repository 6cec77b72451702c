"""Fracture events from the staged record: site, MOF, high-trauma exclusion, episodes."""

from __future__ import annotations

import polars as pl

from schemas.tables.clinical import FRACTURE_EVENTS
from tasks.clinical.phenotypes import FracturePhenotype, load_fracture_phenotype
from tasks.clinical.staging import StagedOmop


def _site_expr(pheno: FracturePhenotype) -> pl.Expr:
    expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    for site in reversed(pheno.sites):  # the first listed site wins
        expr = pl.when(site.codes.matches()).then(pl.lit(site.name)).otherwise(expr)
    return expr


def fracture_events(staged: StagedOmop, pheno: FracturePhenotype | None = None) -> pl.LazyFrame:
    """One row per fracture episode (``fracture_events`` columns), high-trauma ones flagged.

    Parameters
    ----------
    staged
        The staged record (:func:`tasks.clinical.staging.stage_omop`).
    pheno
        Fracture phenotype; default ``phenotypes/fractures.yaml``.

    Notes
    -----
    Later-encounter records (ICD-10-CM 7th character D, G, K, P, S) are dropped before episodes are
    formed; a record without a source value cannot be checked for this and counts as initial. An episode
    is high-trauma when any of its records has a high-trauma cause within the window.
    """
    pheno = pheno or load_fracture_phenotype()
    mof_sites = [s.name for s in pheno.sites if s.is_mof]
    conditions = staged.events.filter(pl.col("domain") == "condition")
    code = pl.col("source_value").str.replace_all(".", "", literal=True)
    later = (code.str.len_chars() >= 7) & code.str.slice(6, 1).is_in(list(pheno.later_encounter_chars))
    fx = (conditions.with_columns(_site_expr(pheno).alias("site"))
          .filter(pl.col("site").is_not_null() & ~later.fill_null(False)))
    causes = (staged.events.filter(pl.col("domain").is_in(["observation", "condition"])
                                   & pheno.high_trauma.matches())
              .select("person_key", pl.col("event_date").alias("cause_date")).unique())
    w = pheno.high_trauma_window_days
    fx = fx.with_row_index("_rid")
    high = (fx.select("_rid", "person_key", "event_date").join(causes, on="person_key", how="inner")
            .filter((pl.col("cause_date") - pl.col("event_date")).dt.total_days().abs() <= w)
            .select("_rid").unique().with_columns(pl.lit(True).alias("_high")))
    fx = (fx.join(high, on="_rid", how="left")
          .with_columns(pl.col("_high").fill_null(False))
          .sort("person_key", "site", "event_date", "source_value", "concept_id", nulls_last=True))
    gap = (pl.col("event_date") - pl.col("event_date").shift(1).over("person_key", "site")).dt.total_days()
    fx = fx.with_columns((gap.is_null() | (gap > pheno.episode_gap_days)).alias("_start"))
    fx = fx.with_columns(pl.col("_start").cast(pl.Int32).cum_sum().over("person_key", "site").alias("_episode"))
    out = (fx.group_by("person_key", "site", "_episode", maintain_order=True)
           .agg(pl.col("event_date").first(), pl.col("_high").any().alias("is_high_trauma"),
                pl.col("source_value").first().alias("source_code"), pl.col("concept_id").first()))
    return (out.with_columns(pl.col("site").is_in(mof_sites).alias("is_mof"),
                             (~pl.col("is_high_trauma")).alias("is_fragility"),
                             pl.lit(pheno.label).alias("phenotype"))
            .select(FRACTURE_EVENTS.column_names)
            .sort("person_key", "event_date", "site"))
