"""Staging: OMOP tables -> pseudonymous persons, observation periods and one long frame of clinical events.

``person_source_value`` goes through :func:`tasks.privacy.person_key` with the same issuer as the DICOM
PatientID, so the clinical record joins the images on ``person_key``. The birth date stays inside
:class:`StagedOmop` (for age at index); nothing it exports holds a raw identifier or a birth date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import pyarrow as pa

from schemas.tables.clinical import OMOP_PERSONS, OMOP_REQUIRED_TABLES
from tasks.clinical.source import OmopSource, OmopValidationError, read_all
from tasks.privacy import check_key, person_key
from tasks.quality.results import CheckKind, CheckResult, Severity

FEMALE_CONCEPT = 8532
#: (table, domain, date, end date, concept, source value, value number, value concept, value source)
_EVENT_COLUMNS: dict[str, tuple[str, str, str | None, str, str, str | None, str | None, str | None]] = {
    "condition_occurrence": ("condition", "condition_start_date", "condition_end_date", "condition_concept_id",
                             "condition_source_value", None, None, None),
    "measurement": ("measurement", "measurement_date", None, "measurement_concept_id",
                    "measurement_source_value", "value_as_number", "value_as_concept_id", "value_source_value"),
    "observation": ("observation", "observation_date", None, "observation_concept_id",
                    "observation_source_value", "value_as_number", "value_as_concept_id", "value_source_value"),
    "drug_exposure": ("drug", "drug_exposure_start_date", "drug_exposure_end_date", "drug_concept_id",
                      "drug_source_value", "days_supply", None, None),
    "procedure_occurrence": ("procedure", "procedure_date", None, "procedure_concept_id",
                             "procedure_source_value", None, None, None),
}


@dataclass
class StagedOmop:
    """Staged clinical record.

    ``persons``: person_key, person_id, is_female, birth_date (private: never export), site, death_date.
    ``periods``: person_key, observation_start_date, observation_end_date (valid periods only).
    ``events``: person_key, domain, event_date, end_date, concept_id, source_value, value_number,
    value_concept_id, value_source_value.
    ``issues``: data-quality results of staging (tables ``omop.<table>``).
    """

    persons: pl.LazyFrame
    periods: pl.LazyFrame
    events: pl.LazyFrame
    issues: list[CheckResult] = field(default_factory=list)
    n_source_persons: int = 0

    def persons_table(self) -> pa.Table:
        """The ``omop_persons`` warehouse table (no person_id, no birth date)."""
        per = self.periods.group_by("person_key").agg(
            pl.col("observation_start_date").min(), pl.col("observation_end_date").max(),
            pl.len().cast(pl.Int32).alias("n_observation_periods"),
        )
        df = (self.persons.join(per, on="person_key", how="inner")
              .select(OMOP_PERSONS.column_names).sort("person_key").collect())
        return OMOP_PERSONS.conform(df.to_arrow())


def _issue(table: str, check: str, severity: Severity, failing: int, total: int, expected: str,
           details: str, column: str | None = None) -> CheckResult:
    return CheckResult(table=f"omop.{table}", check=check, severity=severity, success=failing == 0,
                       kind=CheckKind.OMOP, column=column, observed=str(failing), expected=expected,
                       details=details if failing else None, failing_count=failing, element_count=total,
                       stage="staging")


def _birth_date(y: int | None, m: int | None, d: int | None) -> date | None:
    if y is None:
        return None
    try:
        return date(y, m or 7, d or 1)  # OHDSI convention for a missing month: mid-year
    except ValueError:
        return date(y, m or 7, 1)


def stage_omop(source: OmopSource | Mapping[str, pl.LazyFrame | pl.DataFrame], key: bytes,
               issuer: str | None) -> StagedOmop:
    """Validate and stage an OMOP extract.

    Parameters
    ----------
    source
        An :class:`~tasks.clinical.source.OmopSource`, or already read tables by name (validated frames).
    key
        The pseudonym key (``OSTEOLAKE_PSEUDONYM_KEY``).
    issuer
        IssuerOfPatientID of the MRNs in ``person_source_value`` (the same as for the DICOM PatientID).

    Returns
    -------
    StagedOmop
        Persons with at least one valid observation period; the others are dropped and reported in
        ``issues`` (persons without an observation period, periods ending before they start, records dated
        after death are reported but kept).

    Raises
    ------
    OmopValidationError
        A required table or column is missing, or values have the wrong type (see ``source.conform``);
        two persons share a person_source_value.
    """
    check_key(key)
    frames = read_all(source) if not isinstance(source, Mapping) else {
        k: (v.lazy() if isinstance(v, pl.DataFrame) else v) for k, v in source.items()}
    missing = [t for t in OMOP_REQUIRED_TABLES if t not in frames]
    if missing:
        raise OmopValidationError(f"OMOP input: required table(s) {missing} missing")
    issues: list[CheckResult] = []
    person = frames["person"].collect()
    n = person.height
    blank = person.filter(pl.col("person_source_value").is_null()
                          | (pl.col("person_source_value").str.strip_chars() == ""))
    issues.append(_issue("person", "personSourceValueMissing", Severity.CRITICAL, blank.height, n,
                         "every person has a person_source_value (MRN) to link images",
                         f"{blank.height} person(s) without person_source_value; dropped",
                         "person_source_value"))
    person = person.filter(~pl.col("person_id").is_in(blank["person_id"].to_list()))
    dup = person.filter(pl.col("person_source_value").is_duplicated())
    if dup.height:
        raise OmopValidationError(
            f"OMOP table 'person': {dup.height} rows share a person_source_value (first person_id "
            f"{dup['person_id'][0]}); persons cannot be linked to images unambiguously")
    keys = [person_key(key, v, issuer) for v in person["person_source_value"].to_list()]
    births = [_birth_date(y, m, d) for y, m, d in zip(person["year_of_birth"].to_list(),
                                                      person["month_of_birth"].to_list(),
                                                      person["day_of_birth"].to_list(), strict=True)]
    sites = pl.DataFrame({"care_site_id": [], "site": []}, schema={"care_site_id": pl.Int64, "site": pl.Utf8})
    if "care_site" in frames:
        sites = frames["care_site"].select("care_site_id", pl.col("care_site_source_value").alias("site")).collect()
    death = frames["death"].group_by("person_id").agg(pl.col("death_date").min()).collect()
    persons = (person.with_columns(pl.Series("person_key", keys, dtype=pl.Utf8),
                                   pl.Series("birth_date", births, dtype=pl.Date),
                                   (pl.col("gender_concept_id") == FEMALE_CONCEPT).alias("is_female"))
               .join(sites, on="care_site_id", how="left")
               .join(death, on="person_id", how="left")
               .select("person_key", "person_id", "is_female", "birth_date", "site", "death_date"))
    ids = persons.select("person_id", "person_key")

    op = frames["observation_period"].collect()
    bad = op.filter(pl.col("observation_period_end_date") < pl.col("observation_period_start_date"))
    issues.append(_issue("observation_period", "plausibleStartBeforeEnd", Severity.CRITICAL, bad.height,
                         op.height, "observation_period_start_date <= observation_period_end_date",
                         f"{bad.height} observation period(s) end before they start; dropped",
                         "observation_period_end_date"))
    periods = (op.filter(pl.col("observation_period_end_date") >= pl.col("observation_period_start_date"))
               .join(ids, on="person_id", how="inner")
               .select("person_key", pl.col("observation_period_start_date").alias("observation_start_date"),
                       pl.col("observation_period_end_date").alias("observation_end_date")))
    without = persons.join(periods, on="person_key", how="anti")
    issues.append(_issue("observation_period", "measurePersonCompleteness", Severity.CRITICAL, without.height,
                         persons.height, "every person has a valid observation period",
                         f"{without.height} person(s) without a valid observation period; dropped"))
    persons = persons.join(periods.select("person_key").unique(), on="person_key", how="semi")

    parts = []
    for table, (domain, d, e, concept, src, num, vcon, vsrc) in _EVENT_COLUMNS.items():
        t = frames[table]
        parts.append(t.join(ids.lazy(), on="person_id", how="inner").select(
            "person_key", pl.lit(domain).alias("domain"), pl.col(d).alias("event_date"),
            (pl.col(e) if e else pl.col(d)).alias("end_date"), pl.col(concept).alias("concept_id"),
            pl.col(src).str.strip_chars().alias("source_value"),
            (pl.col(num).cast(pl.Float64) if num else pl.lit(None, pl.Float64)).alias("value_number"),
            (pl.col(vcon) if vcon else pl.lit(None, pl.Int64)).alias("value_concept_id"),
            (pl.col(vsrc) if vsrc else pl.lit(None, pl.Utf8)).alias("value_source_value"),
        ))
    events = pl.concat(parts).join(persons.lazy().select("person_key"), on="person_key", how="semi")
    ev = events.select("domain", "event_date", "end_date").collect()
    order = ev.filter(pl.col("end_date") < pl.col("event_date"))
    issues.append(_issue("events", "plausibleStartBeforeEnd", Severity.WARNING, order.height, ev.height,
                         "records end on or after they start",
                         f"{order.height} record(s) end before they start (end taken as start)"))
    events = events.with_columns(
        pl.when(pl.col("end_date") < pl.col("event_date")).then(pl.col("event_date"))
        .otherwise(pl.col("end_date")).alias("end_date"))
    return StagedOmop(persons=persons.lazy(), periods=periods.lazy(), events=events, issues=issues,
                      n_source_persons=n)
