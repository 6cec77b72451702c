"""The one place where the cohort meets the imaging tables (``series``, ``vertebra_measurements``,
``vertebral_fractures``, ``body_composition``, ``deep_risk``; schemas/tables/imaging.py, biomarkers.py,
fragility.py, deep.py). Adjust column names here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import polars as pl
import pyarrow as pa

from tasks.cohort.definition import CohortDefinition
from tasks.privacy import person_key

FrameLike: TypeAlias = pl.DataFrame | pl.LazyFrame | pa.Table
SERIES_COLUMNS = ("series_instance_uid", "study_instance_uid", "person_key", "modality", "study_date",
                  "slice_thickness_mm", "is_localizer")


def _lazy(frame: FrameLike | None, name: str, columns: tuple[str, ...]) -> pl.LazyFrame | None:
    if frame is None:
        return None
    lf = (pl.from_arrow(frame) if isinstance(frame, pa.Table) else frame)
    lf = lf.lazy() if isinstance(lf, pl.DataFrame) else lf
    if not isinstance(lf, pl.LazyFrame):
        raise TypeError(f"imaging table {name!r}: expected a Polars or Arrow table, got {type(frame).__name__}")
    have = set(lf.collect_schema().names())
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"imaging table {name!r}: missing column(s) {missing}")
    return lf


@dataclass
class ImagingInputs:
    """Imaging tables handed to the cohort by the flow (read from the warehouse) or built from truth."""

    series: FrameLike
    vertebra_measurements: FrameLike | None = None
    vertebral_fractures: FrameLike | None = None
    body_composition: FrameLike | None = None
    deep_risk: FrameLike | None = None

    def series_lf(self) -> pl.LazyFrame:
        lf = _lazy(self.series, "series", SERIES_COLUMNS)
        assert lf is not None
        return lf.select(
            pl.col("series_instance_uid").cast(pl.Utf8), pl.col("study_instance_uid").cast(pl.Utf8),
            pl.col("person_key").cast(pl.Utf8), pl.col("modality").cast(pl.Utf8).str.to_uppercase(),
            pl.col("study_date").cast(pl.Date), pl.col("slice_thickness_mm").cast(pl.Float64),
            pl.col("is_localizer").cast(pl.Boolean).fill_null(False),
        )


def eligible_series(inputs: ImagingInputs, definition: CohortDefinition) -> pl.LazyFrame:
    """Series that satisfy a rule of ``definition``, with ``rule`` (its position: lower is preferred)."""
    s = inputs.series_lf().filter(pl.col("person_key").is_not_null() & pl.col("study_date").is_not_null())
    rule = pl.lit(None, pl.Int32)
    for i, r in reversed(list(enumerate(definition.series_rules))):
        ok = pl.col("modality").is_in(list(r.modality))
        if "LOCALIZER" in r.exclude_image_type:
            ok = ok & ~pl.col("is_localizer")
        if r.max_slice_thickness_mm is not None:
            ok = ok & (pl.col("slice_thickness_mm").is_null()
                       | (pl.col("slice_thickness_mm") <= r.max_slice_thickness_mm))
        rule = pl.when(ok).then(pl.lit(i, pl.Int32)).otherwise(rule)
    return s.with_columns(rule.alias("rule")).filter(pl.col("rule").is_not_null())


def first_eligible_study(inputs: ImagingInputs, definition: CohortDefinition) -> pl.LazyFrame:
    """``person_key, index_date, index_study_instance_uid, index_series_instance_uid``: each person's
    first study with an eligible series; the series preferred by rule order, then thinner slices."""
    e = eligible_series(inputs, definition).sort(
        "person_key", "study_date", "study_instance_uid", "rule", "slice_thickness_mm", "series_instance_uid",
        nulls_last=True)
    return e.group_by("person_key", maintain_order=True).agg(
        pl.col("study_date").first().alias("index_date"),
        pl.col("study_instance_uid").first().alias("index_study_instance_uid"),
        pl.col("series_instance_uid").first().alias("index_series_instance_uid"),
    )


def _per_study(frame: pl.LazyFrame, series: pl.LazyFrame, index: pl.LazyFrame) -> pl.LazyFrame:
    """Rows of ``frame`` on series of each person's index study; the index series sorts first."""
    s = series.select("series_instance_uid", "study_instance_uid")
    return (frame.join(s, on="series_instance_uid", how="inner")
            .join(index.select("person_key", "index_study_instance_uid", "index_series_instance_uid"),
                  left_on="study_instance_uid", right_on="index_study_instance_uid", how="inner")
            .with_columns((pl.col("series_instance_uid") != pl.col("index_series_instance_uid")).alias("_other"))
            .sort("person_key", "_other", "series_instance_uid"))


def imaging_features(inputs: ImagingInputs, index: pl.LazyFrame) -> pl.LazyFrame:
    """Imaging biomarkers of each person's index study.

    Returns ``person_key, l1_trabecular_hu, l1_vbmd_mg_cm3, has_prevalent_vf, max_genant_grade,
    muscle_hu_l3, muscle_area_l3_cm2, deep_risk_score`` (nulls where the study has no measurement).
    Measurements from the index series are preferred; other series of the index study fill in.
    """
    series = inputs.series_lf()
    out = index.select("person_key")
    vm = _lazy(inputs.vertebra_measurements, "vertebra_measurements",
               ("series_instance_uid", "level", "trabecular_hu_mean"))
    if vm is not None:
        has_vbmd = "vbmd_mg_cm3" in vm.collect_schema().names()
        vm = vm.filter(pl.col("level") == "L1").select(
            "series_instance_uid", pl.col("trabecular_hu_mean").cast(pl.Float64),
            (pl.col("vbmd_mg_cm3") if has_vbmd else pl.lit(None)).cast(pl.Float64).alias("vbmd_mg_cm3"))
        vm = _per_study(vm.filter(pl.col("trabecular_hu_mean").is_not_null()), series, index)
        out = out.join(vm.group_by("person_key", maintain_order=True).agg(
            pl.col("trabecular_hu_mean").first().alias("l1_trabecular_hu"),
            pl.col("vbmd_mg_cm3").first().alias("l1_vbmd_mg_cm3")), on="person_key", how="left")
    vf = _lazy(inputs.vertebral_fractures, "vertebral_fractures", ("series_instance_uid", "genant_grade"))
    if vf is not None:
        vf = _per_study(vf.select("series_instance_uid", pl.col("genant_grade").cast(pl.Int32)), series, index)
        out = out.join(vf.group_by("person_key").agg(pl.col("genant_grade").max().alias("max_genant_grade")),
                       on="person_key", how="left").with_columns(
            (pl.col("max_genant_grade") >= 1).alias("has_prevalent_vf"))
    bc = _lazy(inputs.body_composition, "body_composition",
               ("series_instance_uid", "level", "muscle_area_cm2", "muscle_hu_mean"))
    if bc is not None:
        bc = _per_study(bc.filter(pl.col("level") == "L3").select(
            "series_instance_uid", pl.col("muscle_area_cm2").cast(pl.Float64),
            pl.col("muscle_hu_mean").cast(pl.Float64)), series, index)
        out = out.join(bc.group_by("person_key", maintain_order=True).agg(
            pl.col("muscle_hu_mean").first().alias("muscle_hu_l3"),
            pl.col("muscle_area_cm2").first().alias("muscle_area_l3_cm2")), on="person_key", how="left")
    dr = _lazy(inputs.deep_risk, "deep_risk", ("series_instance_uid", "deep_risk_score"))
    if dr is not None:
        if "outcome" in dr.collect_schema().names():
            dr = dr.filter(pl.col("outcome").is_null() | (pl.col("outcome") == "mof"))
        dr = _per_study(dr.select("series_instance_uid", pl.col("deep_risk_score").cast(pl.Float64)), series,
                        index)
        out = out.join(dr.group_by("person_key", maintain_order=True).agg(pl.col("deep_risk_score").first()),
                       on="person_key", how="left")
    return out


_KIND_MODALITY = {"ct_axial_thin": "CT", "ct_axial_thick": "CT", "ct_localizer": "CT", "ct_sagittal": "CT",
                  "ct_dose_sr": "SR", "dx_lateral_spine": "DX", "dxa_hip": "OT", "dxa_spine": "OT", "mr": "MR"}


def inputs_from_truth(series: pl.DataFrame, key: bytes, issuer: str | None,
                      vertebrae: pl.DataFrame | None = None,
                      body_composition: pl.DataFrame | None = None) -> ImagingInputs:
    """Imaging inputs made from the synthetic ground truth (``truth/series.parquet`` and friends), for tests
    and demos when the extractor tables are not there. ``patient_id`` goes through ``person_key``."""
    keys = {p: person_key(key, p, issuer) for p in series["patient_id"].unique().to_list()}
    modality = (pl.col("modality") if "modality" in series.columns
                else pl.col("kind").replace_strict(_KIND_MODALITY, default="OT"))
    s = series.select(
        "series_instance_uid", "study_instance_uid",
        pl.col("patient_id").replace_strict(keys).alias("person_key"), modality.alias("modality"),
        pl.col("study_date").cast(pl.Date), pl.col("slice_mm").cast(pl.Float64).alias("slice_thickness_mm"),
        (pl.col("kind") == "ct_localizer").alias("is_localizer"))
    vm = vf = bc = None
    if vertebrae is not None:
        vm = vertebrae.select("series_instance_uid", "level",
                              pl.col("trabecular_hu").alias("trabecular_hu_mean"),
                              pl.lit(None, pl.Float64).alias("vbmd_mg_cm3"))
        vf = vertebrae.select("series_instance_uid", "level", "genant_grade")
    if body_composition is not None:
        bc = body_composition.select("series_instance_uid", "level", "muscle_area_cm2", "muscle_hu_mean")
    return ImagingInputs(series=s, vertebra_measurements=vm, vertebral_fractures=vf, body_composition=bc)
