"""OHDSI Data-Quality-Dashboard-style checks on the OMOP CDM input, before it is staged.

The check names follow the DQD (https://ohdsi.github.io/DataQualityDashboard/): conformance (``cdmField``,
``isRequired``, ``cdmDatatype``, ``isPrimaryKey``, ``isForeignKey``), completeness
(``measurePersonCompleteness``, ``standardConceptRecordCompleteness``) and plausibility
(``plausibleValueLow/High``, ``plausibleStartBeforeEnd``, ``plausibleAfterBirth``, ``plausibleBeforeDeath``).
DQD itself is an R package that runs SQL on a database; this is a re-implementation of the subset above on
Polars frames (no Python package does it), with the same meanings.

Severity: conformance failures are critical (the staging cannot be trusted); completeness and plausibility
are warnings unless the failing fraction exceeds their threshold, as in the DQD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TypeAlias

import polars as pl
import pyarrow as pa

from tasks.quality.results import CheckKind, CheckResult, Severity

Frame: TypeAlias = pa.Table | pl.DataFrame

#: Required (``is_required = Yes``) columns of the OMOP CDM v5.4 tables checked here; the first is the key.
REQUIRED: dict[str, tuple[str, ...]] = {
    "person": ("person_id", "gender_concept_id", "year_of_birth", "race_concept_id", "ethnicity_concept_id"),
    "observation_period": ("observation_period_id", "person_id", "observation_period_start_date",
                           "observation_period_end_date", "period_type_concept_id"),
    "visit_occurrence": ("visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date",
                         "visit_end_date", "visit_type_concept_id"),
    "condition_occurrence": ("condition_occurrence_id", "person_id", "condition_concept_id",
                             "condition_start_date", "condition_type_concept_id"),
    "drug_exposure": ("drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
                      "drug_exposure_end_date", "drug_type_concept_id"),
    "procedure_occurrence": ("procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date",
                             "procedure_type_concept_id"),
    "measurement": ("measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                    "measurement_type_concept_id"),
    "observation": ("observation_id", "person_id", "observation_concept_id", "observation_date",
                    "observation_type_concept_id"),
    "death": ("person_id", "death_date"),
}

#: (event date, end date or None) of each table, for the temporal plausibility checks.
EVENT_DATES: dict[str, tuple[str, str | None]] = {
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_date", None),
    "measurement": ("measurement_date", None),
    "observation": ("observation_date", None),
    "death": ("death_date", None),
}

#: Main concept column of each event table (standardConceptRecordCompleteness).
CONCEPTS: dict[str, str] = {
    "visit_occurrence": "visit_concept_id",
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
    "person": "gender_concept_id",
}


@dataclass(frozen=True)
class OmopThresholds:
    """Failing fractions tolerated before a warning-level check fails (DQD-style thresholds).

    ``plausibility`` defaults to 0: every implausible record is reported. ``critical_above`` escalates any
    plausibility or completeness failure above that fraction of rows to critical.
    """

    plausibility: float = 0.0
    concept_zero: float = 0.05
    person_completeness: float = 0.0
    death_grace_days: int = 60
    critical_above: float = 0.25
    min_birth_year: int = 1850


def _pl(frame: Frame) -> pl.DataFrame:
    return frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)  # type: ignore[return-value]


def _as_date(df: pl.DataFrame, col: str) -> pl.Expr:
    dtype = df.schema[col]
    c = pl.col(col)
    if dtype == pl.Date:
        return c
    if isinstance(dtype, pl.Datetime):
        return c.dt.date()
    if dtype == pl.String:
        return c.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    return c.cast(pl.Date, strict=False)


def _as_int(df: pl.DataFrame, col: str) -> pl.Expr:
    if df.schema[col] == pl.String:
        return pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)
    return pl.col(col).cast(pl.Int64, strict=False)


class _Checker:
    def __init__(self, frames: Mapping[str, pl.DataFrame], th: OmopThresholds, stage: str) -> None:
        self.frames = frames
        self.th = th
        self.stage = stage
        self.out: list[CheckResult] = []

    def add(self, table: str, check: str, severity: Severity, *, failing: int, total: int, expected: str,
            details: str, column: str | None = None, threshold: float = 0.0) -> None:
        frac = failing / total if total else 0.0
        ok = failing == 0 if threshold == 0 else frac <= threshold
        if not ok and severity is Severity.WARNING and frac > self.th.critical_above:
            severity = Severity.CRITICAL
        self.out.append(CheckResult(
            table=f"omop.{table}", check=check, severity=severity, success=ok, kind=CheckKind.OMOP,
            column=column, observed=f"{failing} of {total} ({frac:.1%})", expected=expected,
            details=None if ok else details, failing_count=failing, element_count=total, stage=self.stage,
        ))

    def birth_dates(self) -> pl.DataFrame | None:
        person = self.frames.get("person")
        if person is None or not {"person_id", "year_of_birth"} <= set(person.columns):
            return None
        month = _as_int(person, "month_of_birth") if "month_of_birth" in person.columns else pl.lit(1)
        day = _as_int(person, "day_of_birth") if "day_of_birth" in person.columns else pl.lit(1)
        return person.select(
            _as_int(person, "person_id").alias("person_id"),
            pl.date(_as_int(person, "year_of_birth"), month.fill_null(1), day.fill_null(1)).alias("_birth"),
        ).drop_nulls()

    def death_dates(self) -> pl.DataFrame | None:
        death = self.frames.get("death")
        if death is None or not {"person_id", "death_date"} <= set(death.columns):
            return None
        return death.select(
            _as_int(death, "person_id").alias("person_id"), _as_date(death, "death_date").alias("_death"),
        ).drop_nulls().group_by("person_id").agg(pl.col("_death").min())


def _conformance(ck: _Checker, name: str, df: pl.DataFrame, person_ids: pl.Series | None) -> None:
    req = REQUIRED[name]
    missing = [c for c in req if c not in df.columns]
    ck.add(name, "cdmField", Severity.CRITICAL, failing=len(missing), total=len(req),
           expected="required columns: " + ", ".join(req),
           details=f"missing required column(s) {', '.join(missing)}", column=",".join(missing) or None)
    n = df.height
    for col in req:
        if col not in df.columns:
            continue
        nulls = int(df[col].null_count())
        ck.add(name, f"isRequired({col})", Severity.CRITICAL, failing=nulls, total=n, expected="no nulls",
               details=f"{nulls} row(s) with {col} null", column=col)
        if col.endswith("_date"):
            bad = df.select((pl.col(col).is_not_null() & _as_date(df, col).is_null()).sum()).item()
            ck.add(name, f"cdmDatatype({col})", Severity.CRITICAL, failing=int(bad), total=n,
                   expected="a date", details=f"{bad} value(s) of {col} are not dates", column=col)
        elif col.endswith("_id") or col == "year_of_birth":
            bad = df.select((pl.col(col).is_not_null() & _as_int(df, col).is_null()).sum()).item()
            ck.add(name, f"cdmDatatype({col})", Severity.CRITICAL, failing=int(bad), total=n,
                   expected="an integer", details=f"{bad} value(s) of {col} are not integers", column=col)
    key = req[0]
    if key in df.columns:
        dup = int(df.select(pl.col(key).is_duplicated().sum()).item())
        ck.add(name, f"isPrimaryKey({key})", Severity.CRITICAL, failing=dup, total=n, expected="unique",
               details=f"{dup} row(s) share their {key} with another row", column=key)
    if name != "person" and person_ids is not None and "person_id" in df.columns:
        ids = df.select(_as_int(df, "person_id").alias("person_id")).drop_nulls()
        orphans = ids.join(pl.DataFrame({"person_id": person_ids}), on="person_id", how="anti").height
        ck.add(name, "isForeignKey(person_id)", Severity.CRITICAL, failing=orphans, total=n,
               expected="every person_id in person",
               details=f"{orphans} row(s) refer to a person_id missing from person", column="person_id")


def _temporal(ck: _Checker, name: str, df: pl.DataFrame, births: pl.DataFrame | None,
              deaths: pl.DataFrame | None) -> None:
    start, end = EVENT_DATES[name]
    if start not in df.columns or "person_id" not in df.columns:
        return
    ev = df.select(_as_int(df, "person_id").alias("person_id"), _as_date(df, start).alias("_start"),
                   (_as_date(df, end) if end and end in df.columns else pl.lit(None, pl.Date)).alias("_end"))
    n = ev.height
    th = ck.th.plausibility
    if end and end in df.columns:
        bad = ev.filter(pl.col("_end") < pl.col("_start")).height
        ck.add(name, f"plausibleStartBeforeEnd({start})", Severity.WARNING, failing=bad, total=n,
               expected=f"{start} <= {end}", details=f"{bad} record(s) end before they start", column=start,
               threshold=th)
    if births is not None:
        bad = ev.join(births, on="person_id").filter(pl.col("_start") < pl.col("_birth")).height
        ck.add(name, f"plausibleAfterBirth({start})", Severity.WARNING, failing=bad, total=n,
               expected=f"{start} on or after birth", details=f"{bad} record(s) dated before the person's birth",
               column=start, threshold=th)
    if deaths is not None and name != "death":
        grace = pl.duration(days=ck.th.death_grace_days)
        bad = ev.join(deaths, on="person_id").filter(pl.col("_start") > pl.col("_death") + grace).height
        ck.add(name, f"plausibleBeforeDeath({start})", Severity.WARNING, failing=bad, total=n,
               expected=f"{start} no later than {ck.th.death_grace_days} days after death",
               details=f"{bad} record(s) dated after the person's death", column=start, threshold=th)


def _completeness(ck: _Checker, name: str, df: pl.DataFrame) -> None:
    concept = CONCEPTS.get(name)
    if concept and concept in df.columns:
        zero = int(df.select((_as_int(df, concept) == 0).sum()).item() or 0)
        ck.add(name, f"standardConceptRecordCompleteness({concept})", Severity.WARNING, failing=zero,
               total=df.height, expected=f"<= {ck.th.concept_zero:.0%} unmapped (concept 0)",
               details=f"{zero} record(s) with {concept} = 0 (no standard concept)", column=concept,
               threshold=ck.th.concept_zero)


def check_omop(
    frames: Mapping[str, Frame],
    thresholds: OmopThresholds | None = None,
    stage: str = "clinical",
    today: date | None = None,
) -> list[CheckResult]:
    """DQD-style checks of OMOP CDM tables.

    Parameters
    ----------
    frames
        OMOP tables by name (``person``, ``observation_period``, ``condition_occurrence``, ``measurement``,
        ``death``, ...), as read from the source: Arrow or Polars; dates may still be strings. Tables
        other than those in :data:`REQUIRED` are ignored.
    thresholds
        Tolerated failing fractions; :class:`OmopThresholds` defaults.
    stage
        Stage name stamped on the results.
    today
        Upper bound of plausible birth years (default: today).

    Returns
    -------
    list of CheckResult
        Results on tables named ``omop.<table>``; details hold counts only, never identifiers.

    Notes
    -----
    Concept ids are not checked against the vocabulary (no vocabulary tables are read), so a wrong but
    existing concept id passes; ``plausibleAfterBirth`` uses year/month/day of birth with missing parts
    taken as January / the 1st.
    """
    th = thresholds or OmopThresholds()
    pl_frames = {k: _pl(v) for k, v in frames.items() if k in REQUIRED}
    ck = _Checker(pl_frames, th, stage)
    if "person" not in pl_frames:
        ck.add("person", "cdmTable", Severity.CRITICAL, failing=1, total=1, expected="a person table",
               details="the OMOP input has no person table")
    person = pl_frames.get("person")
    person_ids = None
    if person is not None and "person_id" in person.columns:
        person_ids = person.select(_as_int(person, "person_id")).to_series().drop_nulls()
    births, deaths = ck.birth_dates(), ck.death_dates()
    for name, df in pl_frames.items():
        _conformance(ck, name, df, person_ids)
        if name in EVENT_DATES:
            _temporal(ck, name, df, births, deaths)
        _completeness(ck, name, df)
    if person is not None and "year_of_birth" in person.columns:
        year = (today or date.today()).year
        yob = _as_int(person, "year_of_birth")
        for check, cond, exp in (
            ("plausibleValueLow(year_of_birth)", yob < th.min_birth_year, f">= {th.min_birth_year}"),
            ("plausibleValueHigh(year_of_birth)", yob > year, f"<= {year}"),
        ):
            bad = int(person.select(cond.sum()).item() or 0)
            ck.add("person", check, Severity.WARNING, failing=bad, total=person.height, expected=exp,
                   details=f"{bad} person(s) with an implausible year_of_birth", column="year_of_birth",
                   threshold=th.plausibility)
    if person_ids is not None and "observation_period" in pl_frames:
        op = pl_frames["observation_period"]
        if "person_id" in op.columns:
            with_op = op.select(_as_int(op, "person_id").alias("person_id")).drop_nulls().unique()
            bad = pl.DataFrame({"person_id": person_ids}).join(with_op, on="person_id", how="anti").height
            ck.add("person", "measurePersonCompleteness(observation_period)", Severity.WARNING, failing=bad,
                   total=person_ids.len(), expected="every person has an observation period",
                   details=f"{bad} person(s) without an observation period", threshold=th.person_completeness)
    return ck.out

