"""The synthetic hospital's clinical record: an OMOP CDM v5.4 extract rendered from the latent patients.

``write_omop`` writes one CSV per OMOP table (OHDSI column names, ``schemas.tables.clinical.OMOP_CDM``)
and the ground truth ``truth/persons.parquet`` and ``truth/outcomes.parquet`` (docs/interfaces.md).

What is in the record (concepts: ``synthetic/concepts.py``):

- person (``person_source_value`` = DICOM PatientID, the MRN), care_site (north, south), death;
- one observation period per person from several years before baseline (and before every recorded
  event) to death or the data cut-off; no loss to follow-up, so the truth's ``end_date`` is the end of
  follow-up for every outcome;
- an outpatient visit and a CPT procedure for every imaging study; DXA femoral-neck BMD (g/cm2) and T-score
  (with measurement noise, SD 0.3 T) at DXA studies and, for about a quarter of patients, before baseline;
  height and weight at baseline and once earlier;
- risk factors before baseline: smoking status (latest record wins), alcohol units/day, parental hip
  fracture, history of falling, rheumatoid arthritis, a cause of secondary osteoporosis, glucocorticoids
  for >= 3 months (split into several prescriptions), osteoporosis treatment;
- prior fragility fractures (``patient.prior_fracture_*``), recorded prevalent vertebral fractures (only
  ``recorded=True``), incident MOF (``patient.outcome``), each with a later subsequent-encounter code;
- traps a correct pipeline must handle: high-trauma fractures (a transport or fall-from-building external
  cause the same day) before and after baseline, short glucocorticoid courses, glucocorticoids and
  treatment started after baseline, type 2 diabetes (not a secondary cause), old smoking records
  contradicted by newer ones.

Notes
-----
Random draws use a generator seeded from each patient's identifier, so a patient's record does not depend
on how many patients are written. The incident MOF is the only fracture the latent model simulates after
baseline; the hip outcome of the truth is therefore "the first MOF was a hip fracture", censored at the
first MOF of another site (the cause-specific view of the latent model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from schemas.tables.clinical import OMOP_CDM
from synthetic import concepts as C
from synthetic.population import DATA_CUTOFF, Patient

SITES = {"north": 1, "south": 2}
_POLARS: dict[str, pl.DataType] = {"int": pl.Int64(), "float": pl.Float64(), "str": pl.Utf8(), "date": pl.Date(), "datetime": pl.Datetime("us")}
TRUTH_PERSONS_COLUMNS = (
    "patient_id", "person_id", "sex", "birth_date", "height_cm", "weight_kg", "bmd_z", "hu_l1_baseline", "lp",
    "site", "baseline_date", "mof_date", "mof_site", "death_date", "end_date", "n_studies",
)
TRUTH_OUTCOMES_COLUMNS = ("patient_id", "outcome", "event", "time_years", "event_date")


def tscore_to_bmd(tscore: float) -> float:
    """Femoral-neck BMD (g/cm2) for a T-score, on the NHANES III young white female reference
    (mean 0.858 g/cm2, SD 0.120 g/cm2; Looker 1998)."""
    return 0.858 + 0.120 * tscore


@dataclass
class _Record:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in OMOP_CDM})
    visits: dict[tuple[int, date, int], int] = field(default_factory=dict)

    def _next(self, table: str) -> int:
        return len(self.rows[table]) + 1

    def visit(self, pid: int, d: date, kind: C.Concept, care_site_id: int) -> int:
        k = (pid, d, kind.concept_id)
        if k not in self.visits:
            vid = self._next("visit_occurrence")
            end = d + timedelta(days=3) if kind is C.INPATIENT else d
            self.rows["visit_occurrence"].append({
                "visit_occurrence_id": vid, "person_id": pid, "visit_concept_id": kind.concept_id,
                "visit_start_date": d, "visit_end_date": end, "visit_type_concept_id": C.EHR.concept_id,
                "care_site_id": care_site_id, "visit_source_value": kind.code,
            })
            self.visits[k] = vid
        return self.visits[k]

    def condition(self, pid: int, d: date, c: C.Concept, vid: int | None, code: str | None = None) -> None:
        self.rows["condition_occurrence"].append({
            "condition_occurrence_id": self._next("condition_occurrence"), "person_id": pid,
            "condition_concept_id": c.concept_id, "condition_start_date": d,
            "condition_type_concept_id": C.EHR.concept_id, "visit_occurrence_id": vid,
            "condition_source_value": code or c.code, "condition_source_concept_id": 0,
        })

    def procedure(self, pid: int, d: date, c: C.Concept, vid: int) -> None:
        self.rows["procedure_occurrence"].append({
            "procedure_occurrence_id": self._next("procedure_occurrence"), "person_id": pid,
            "procedure_concept_id": c.concept_id, "procedure_date": d,
            "procedure_type_concept_id": C.EHR.concept_id, "quantity": 1, "visit_occurrence_id": vid,
            "procedure_source_value": c.code, "procedure_source_concept_id": 0,
        })

    def measurement(self, pid: int, d: date, c: C.Concept, value: float, unit: C.Concept | None,
                    vid: int | None) -> None:
        self.rows["measurement"].append({
            "measurement_id": self._next("measurement"), "person_id": pid, "measurement_concept_id": c.concept_id,
            "measurement_date": d, "measurement_type_concept_id": C.EHR.concept_id, "value_as_number": value,
            "unit_concept_id": unit.concept_id if unit else 0, "visit_occurrence_id": vid,
            "measurement_source_value": c.code, "measurement_source_concept_id": 0,
            "unit_source_value": unit.code if unit else None, "value_source_value": f"{value}",
        })

    def observation(self, pid: int, d: date, c: C.Concept, vid: int | None, *, number: float | None = None,
                    value: C.Concept | None = None) -> None:
        self.rows["observation"].append({
            "observation_id": self._next("observation"), "person_id": pid, "observation_concept_id": c.concept_id,
            "observation_date": d, "observation_type_concept_id": C.EHR.concept_id, "value_as_number": number,
            "value_as_concept_id": value.concept_id if value else None, "visit_occurrence_id": vid,
            "observation_source_value": c.code, "observation_source_concept_id": 0,
            "value_source_value": value.code if value else None,
        })

    def drug(self, pid: int, start: date, days: int, c: C.Concept) -> None:
        self.rows["drug_exposure"].append({
            "drug_exposure_id": self._next("drug_exposure"), "person_id": pid, "drug_concept_id": c.concept_id,
            "drug_exposure_start_date": start, "drug_exposure_end_date": start + timedelta(days=days - 1),
            "drug_type_concept_id": C.EHR.concept_id, "days_supply": days, "quantity": float(days),
            "drug_source_value": c.code, "drug_source_concept_id": 0,
        })


def _days(rng: np.random.Generator, lo: int, hi: int) -> timedelta:
    return timedelta(days=int(rng.integers(lo, hi + 1)))


def _dxa(rec: _Record, rng: np.random.Generator, p: Patient, pid: int, d: date, vid: int | None) -> None:
    t = round(p.dxa_tscore(d) + float(rng.normal(0.0, 0.3)), 1)
    rec.measurement(pid, d, C.FN_BMD, round(tscore_to_bmd(t), 3), C.G_CM2, vid)
    rec.measurement(pid, d, C.FN_TSCORE, t, None, vid)


def _vertebral_code(rng: np.random.Generator, level: str) -> str:
    options = [C.VERT_FX_OSTEOPOROTIC.code]
    options.append(C.VERT_FX_THORACIC.code if level.startswith("T") else C.VERT_FX_LUMBAR.code)
    options.append("M48.54XA" if level.startswith("T") else C.VERT_COLLAPSE.code)
    return str(rng.choice(options))


def _fracture(rec: _Record, rng: np.random.Generator, pid: int, d: date, site: str, cs: int, *,
              level: str = "L1", cause: C.Concept | None = None, followup_until: date | None = None) -> None:
    """A fracture record (initial encounter) with its mechanism and a subsequent-encounter code."""
    kind = C.INPATIENT if site in ("hip", "vertebral") else C.EMERGENCY
    vid = rec.visit(pid, d, kind, cs)
    if site == "vertebral":
        code = _vertebral_code(rng, level)
        concept = {c.code: c for c in (C.VERT_FX_OSTEOPOROTIC, C.VERT_FX_THORACIC, C.VERT_FX_LUMBAR,
                                         C.VERT_COLLAPSE)}.get(code, C.VERT_COLLAPSE)
    else:
        concept = C.FRACTURE_BY_SITE[site]
        code = concept.code
    rec.condition(pid, d, concept, vid, code)
    if site == "hip" and cause is None:
        rec.procedure(pid, d, C.HIP_ARTHROPLASTY, vid)
    if cause is not None:
        rec.observation(pid, d, cause, vid)
    elif rng.random() < 0.5:
        rec.observation(pid, d, C.FALL_SAME_LEVEL, vid)
    later = d + _days(rng, 20, 90)
    if followup_until is not None and later <= followup_until:
        rec.condition(pid, later, concept, rec.visit(pid, later, C.OUTPATIENT, cs), code[:-1] + "D")


def _patient(rec: _Record, p: Patient) -> None:
    assert p.outcome is not None, f"patient {p.patient_id}: no outcome drawn"
    rng = np.random.default_rng([int(p.patient_id[3:]), 0x0305])
    pid, cs, base = p.index + 1, SITES[p.site], p.baseline
    end = p.outcome.death_date or DATA_CUTOFF
    rec.rows["person"].append({
        "person_id": pid, "gender_concept_id": (C.FEMALE if p.female else C.MALE).concept_id,
        "year_of_birth": p.birth_date.year, "month_of_birth": p.birth_date.month,
        "day_of_birth": p.birth_date.day, "race_concept_id": 0, "ethnicity_concept_id": 0,
        "care_site_id": cs, "person_source_value": p.patient_id, "gender_source_value": p.sex,
        "gender_source_concept_id": 0,
    })
    # Imaging studies, with height and weight at the baseline visit.
    for s in p.studies:
        vid = rec.visit(pid, s.study_date, C.OUTPATIENT, cs)
        rec.procedure(pid, s.study_date, C.IMAGING_PROCEDURES[s.kind], vid)
        if s.kind == "dxa":
            _dxa(rec, rng, p, pid, s.study_date, vid)
    vid0 = rec.visit(pid, base, C.OUTPATIENT, cs)
    rec.measurement(pid, base, C.HEIGHT, p.height_cm, C.CM, vid0)
    rec.measurement(pid, base, C.WEIGHT, p.weight_kg, C.KG, vid0)
    old = base - _days(rng, 365, 1100)
    vid_old = rec.visit(pid, old, C.OUTPATIENT, cs)
    rec.measurement(pid, old, C.HEIGHT, round(p.height_cm + 0.5, 1), C.CM, vid_old)
    rec.measurement(pid, old, C.WEIGHT, round(p.weight_kg + float(rng.normal(0, 2.5)), 1), C.KG, vid_old)
    if rng.random() < 0.25:
        d = base - _days(rng, 30, 700)
        _dxa(rec, rng, p, pid, d, rec.visit(pid, d, C.OUTPATIENT, cs))
    # Lifestyle and history (observations); the latest smoking record before baseline is the truth.
    d = base - _days(rng, 0, 700)
    status = C.CURRENT_SMOKER if p.smoker else (C.FORMER_SMOKER if rng.random() < 0.35 else C.NEVER_SMOKER)
    if status is C.FORMER_SMOKER:
        rec.observation(pid, d - _days(rng, 400, 2000), C.SMOKING_STATUS, None, value=C.CURRENT_SMOKER)
    elif status is C.CURRENT_SMOKER and rng.random() < 0.3:
        rec.observation(pid, d - _days(rng, 400, 2000), C.SMOKING_STATUS, None, value=C.NEVER_SMOKER)
    rec.observation(pid, d, C.SMOKING_STATUS, None, value=status)
    if p.alcohol_3u or rng.random() < 0.7:
        units = float(rng.uniform(3.0, 8.0)) if p.alcohol_3u else float(rng.uniform(0.0, 2.5))
        rec.observation(pid, base - _days(rng, 0, 700), C.ALCOHOL_UNITS, None, number=round(units, 1))
    if p.parental_hip_fracture:
        rec.observation(pid, base - _days(rng, 0, 1500), C.PARENTAL_HIP, None)
    if p.falls:
        rec.observation(pid, base - _days(rng, 30, 900), C.HISTORY_OF_FALLING, None)
    # Conditions.
    if p.rheumatoid_arthritis:
        rec.condition(pid, base - _days(rng, 100, 3000), C.RHEUMATOID_ARTHRITIS, None)
    if p.secondary_osteoporosis:
        cause = C.SECONDARY_CAUSES[int(rng.integers(len(C.SECONDARY_CAUSES)))]
        rec.condition(pid, base - _days(rng, 100, 3000), cause, None)
    if rng.random() < 0.35:
        rec.condition(pid, base - _days(rng, 100, 3000), C.HYPERTENSION, None)
    if rng.random() < 0.12:
        rec.condition(pid, base - _days(rng, 100, 3000), C.TYPE2_DIABETES, None)
    # Drugs.
    if p.glucocorticoids:
        start = base - _days(rng, 120, 1500)
        total = int(rng.integers(100, 500))
        drug = C.GLUCOCORTICOIDS[int(rng.integers(len(C.GLUCOCORTICOIDS)))]
        while total > 0:
            n = min(total, int(rng.integers(30, 91)))
            rec.drug(pid, start, n, drug)
            start, total = start + timedelta(days=n), total - n
    else:
        if rng.random() < 0.10:
            rec.drug(pid, base - _days(rng, 30, 1500), int(rng.integers(5, 15)), C.PREDNISOLONE)
        if rng.random() < 0.04 and end - base > timedelta(days=200):
            rec.drug(pid, base + _days(rng, 10, 100), 120, C.PREDNISONE)
    if p.treated:
        start = base - _days(rng, 30, 700)
        rec.condition(pid, start, C.OSTEOPOROSIS, rec.visit(pid, start, C.OUTPATIENT, cs))
        rec.drug(pid, start, int(rng.integers(180, 720)), C.OSTEOPOROSIS_DRUGS[int(rng.integers(3))])
    elif rng.random() < 0.05 and end - base > timedelta(days=200):
        rec.drug(pid, base + _days(rng, 10, 150), 180, C.ALENDRONATE)
    # Fractures: prior fragility, recorded prevalent vertebral, incident MOF, high-trauma (not fragility).
    if p.prior_fracture_date is not None and p.prior_fracture_site is not None:
        _fracture(rec, rng, pid, p.prior_fracture_date, p.prior_fracture_site, cs, followup_until=base)
    for f in p.fractures:
        if f.recorded:
            _fracture(rec, rng, pid, base - _days(rng, 200, 1500), "vertebral", cs, level=f.level,
                      followup_until=base)
    if p.outcome.mof_date is not None and p.outcome.mof_site is not None:
        level = str(rng.choice(["T12", "L1", "L2"]))
        _fracture(rec, rng, pid, p.outcome.mof_date, p.outcome.mof_site, cs, level=level, followup_until=end)
    sites = ["hip", "forearm", "humerus", "ankle"]
    span = (p.outcome.end_date - base).days
    if span > 30 and rng.random() < 0.08:
        d = base + _days(rng, 1, span - 1)
        cause = C.HIGH_TRAUMA_CAUSES[int(rng.integers(2))]
        _fracture(rec, rng, pid, d, str(rng.choice(sites)), cs, cause=cause)
    if rng.random() < 0.04:
        d = base - _days(rng, 200, 2500)
        _fracture(rec, rng, pid, d, str(rng.choice(sites)), cs, cause=C.CAR_DRIVER_COLLISION)
    if p.outcome.death_date is not None:
        rec.rows["death"].append({
            "person_id": pid, "death_date": p.outcome.death_date, "death_type_concept_id": C.EHR.concept_id,
        })


def _observation_periods(rec: _Record, patients: list[Patient]) -> None:
    """One period per person: before every recorded date (and >= 2 years before baseline) to the end."""
    first: dict[int, date] = {}
    for table, cols in OMOP_CDM.items():
        date_cols = [c.name for c in cols if c.kind == "date" and c.name.endswith(("start_date", "_date"))
                     and "end" not in c.name]
        for row in rec.rows[table]:
            for c in date_cols:
                d = row.get(c)
                if isinstance(d, date) and "person_id" in row:
                    pid = row["person_id"]
                    first[pid] = min(first.get(pid, d), d)
    for p in patients:
        assert p.outcome is not None
        pid = p.index + 1
        rng = np.random.default_rng([int(p.patient_id[3:]), 0x0B5E])
        start = min(first.get(pid, p.baseline), p.baseline - _days(rng, 730, 1825)) - _days(rng, 1, 180)
        rec.rows["observation_period"].append({
            "observation_period_id": pid, "person_id": pid, "observation_period_start_date": start,
            "observation_period_end_date": p.outcome.death_date or DATA_CUTOFF,
            "period_type_concept_id": C.EHR.concept_id,
        })


def omop_frame(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows of OMOP ``table`` as a frame with every v5.4 column, in order, with its logical type."""
    schema = {c.name: _POLARS[c.kind] for c in OMOP_CDM[table]}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


def _truth(patients: list[Patient]) -> tuple[pl.DataFrame, pl.DataFrame]:
    persons, outcomes = [], []
    for p in patients:
        o = p.outcome
        assert o is not None
        persons.append({
            "patient_id": p.patient_id, "person_id": p.index + 1, "sex": p.sex, "birth_date": p.birth_date,
            "height_cm": p.height_cm, "weight_kg": p.weight_kg, "bmd_z": p.bmd_z,
            "hu_l1_baseline": p.hu_l1_120(p.baseline), "lp": p.lp, "site": p.site, "baseline_date": p.baseline,
            "mof_date": o.mof_date, "mof_site": o.mof_site, "death_date": o.death_date, "end_date": o.end_date,
            "n_studies": len(p.studies),
        })
        t = (o.end_date - p.baseline).days / 365.25
        outcomes.append({"patient_id": p.patient_id, "outcome": "mof", "event": o.mof_date is not None,
                         "time_years": t, "event_date": o.mof_date})
        hip = o.mof_site == "hip"
        outcomes.append({"patient_id": p.patient_id, "outcome": "hip", "event": hip, "time_years": t,
                         "event_date": o.mof_date if hip else None})
    ps = pl.DataFrame(persons, schema={
        "patient_id": pl.Utf8, "person_id": pl.Int64, "sex": pl.Utf8, "birth_date": pl.Date,
        "height_cm": pl.Float64, "weight_kg": pl.Float64, "bmd_z": pl.Float64, "hu_l1_baseline": pl.Float64,
        "lp": pl.Float64, "site": pl.Utf8, "baseline_date": pl.Date, "mof_date": pl.Date, "mof_site": pl.Utf8,
        "death_date": pl.Date, "end_date": pl.Date, "n_studies": pl.Int64,
    }, orient="row")
    os_ = pl.DataFrame(outcomes, schema={
        "patient_id": pl.Utf8, "outcome": pl.Utf8, "event": pl.Boolean, "time_years": pl.Float64,
        "event_date": pl.Date,
    }, orient="row")
    return ps, os_


def write_omop(patients: list[Patient], omop_dir: Path, truth_dir: Path) -> dict[str, int]:
    """Write the OMOP CDM v5.4 extract of ``patients`` and its ground truth.

    Parameters
    ----------
    patients
        Latent patients from :func:`synthetic.population.make_population` (with outcomes drawn).
    omop_dir
        Folder for ``<table>.csv`` (person, observation_period, visit_occurrence, condition_occurrence,
        procedure_occurrence, measurement, observation, drug_exposure, death, care_site); created if needed.
    truth_dir
        Folder for ``persons.parquet`` and ``outcomes.parquet``; created if needed.

    Returns
    -------
    dict[str, int]
        Rows written per OMOP table, plus ``truth_persons`` and ``truth_outcomes``.

    Notes
    -----
    Deterministic: the same patients give byte-identical files.
    """
    omop_dir, truth_dir = Path(omop_dir), Path(truth_dir)
    omop_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    rec = _Record()
    for name, cid in SITES.items():
        rec.rows["care_site"].append({"care_site_id": cid, "care_site_name": f"Osteolake General {name}",
                                      "place_of_service_concept_id": 0, "care_site_source_value": name})
    for p in patients:
        _patient(rec, p)
    _observation_periods(rec, patients)
    counts: dict[str, int] = {}
    for table in OMOP_CDM:
        frame = omop_frame(table, rec.rows[table])
        frame.write_csv(omop_dir / f"{table}.csv", date_format="%Y-%m-%d", datetime_format="%Y-%m-%d %H:%M:%S")
        counts[table] = frame.height
    persons, outcomes = _truth(patients)
    persons.write_parquet(truth_dir / "persons.parquet")
    outcomes.write_parquet(truth_dir / "outcomes.parquet")
    counts["truth_persons"], counts["truth_outcomes"] = persons.height, outcomes.height
    return counts
