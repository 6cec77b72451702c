"""Clinical tables: the OMOP CDM v5.4 source layout and the staged, pseudonymous clinical tables.

``OMOP_CDM`` describes the *source* (what a site's OMOP extract looks like; it holds raw identifiers and
birth dates and never enters the warehouse). ``TABLES`` declares what staging produces: persons, fracture
events and risk-factor records keyed by ``person_key``, and the cohort marts (``cohort``, ``features``,
``attrition``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from schemas.core import PHI, Column, Layer, Table


@dataclass(frozen=True)
class OmopColumn:
    """One column of an OMOP CDM v5.4 table: OHDSI name, logical type and whether staging needs it.

    ``kind`` is one of ``int``, ``float``, ``str``, ``date``, ``datetime``.
    """

    name: str
    kind: str
    required: bool = False


def _cols(spec: str) -> tuple[OmopColumn, ...]:
    # "name:kind[!]" separated by blanks; "!" marks a column staging requires.
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(OmopColumn(name, kind.rstrip("!"), kind.endswith("!")))
    return tuple(out)


OMOP_CDM: dict[str, tuple[OmopColumn, ...]] = {
    "person": _cols(
        "person_id:int! gender_concept_id:int! year_of_birth:int! month_of_birth:int day_of_birth:int "
        "birth_datetime:datetime race_concept_id:int ethnicity_concept_id:int location_id:int provider_id:int "
        "care_site_id:int person_source_value:str! gender_source_value:str gender_source_concept_id:int "
        "race_source_value:str race_source_concept_id:int ethnicity_source_value:str "
        "ethnicity_source_concept_id:int"
    ),
    "observation_period": _cols(
        "observation_period_id:int! person_id:int! observation_period_start_date:date! "
        "observation_period_end_date:date! period_type_concept_id:int"
    ),
    "visit_occurrence": _cols(
        "visit_occurrence_id:int! person_id:int! visit_concept_id:int! visit_start_date:date! "
        "visit_start_datetime:datetime visit_end_date:date visit_end_datetime:datetime visit_type_concept_id:int "
        "provider_id:int care_site_id:int visit_source_value:str visit_source_concept_id:int "
        "admitted_from_concept_id:int admitted_from_source_value:str discharged_to_concept_id:int "
        "discharged_to_source_value:str preceding_visit_occurrence_id:int"
    ),
    "condition_occurrence": _cols(
        "condition_occurrence_id:int! person_id:int! condition_concept_id:int! condition_start_date:date! "
        "condition_start_datetime:datetime condition_end_date:date condition_end_datetime:datetime "
        "condition_type_concept_id:int condition_status_concept_id:int stop_reason:str provider_id:int "
        "visit_occurrence_id:int visit_detail_id:int condition_source_value:str! condition_source_concept_id:int "
        "condition_status_source_value:str"
    ),
    "procedure_occurrence": _cols(
        "procedure_occurrence_id:int! person_id:int! procedure_concept_id:int! procedure_date:date! "
        "procedure_datetime:datetime procedure_end_date:date procedure_end_datetime:datetime "
        "procedure_type_concept_id:int modifier_concept_id:int quantity:int provider_id:int "
        "visit_occurrence_id:int visit_detail_id:int procedure_source_value:str procedure_source_concept_id:int "
        "modifier_source_value:str"
    ),
    "measurement": _cols(
        "measurement_id:int! person_id:int! measurement_concept_id:int! measurement_date:date! "
        "measurement_datetime:datetime measurement_time:str measurement_type_concept_id:int "
        "operator_concept_id:int value_as_number:float value_as_concept_id:int unit_concept_id:int "
        "range_low:float range_high:float provider_id:int visit_occurrence_id:int visit_detail_id:int "
        "measurement_source_value:str measurement_source_concept_id:int unit_source_value:str "
        "unit_source_concept_id:int value_source_value:str measurement_event_id:int "
        "meas_event_field_concept_id:int"
    ),
    "observation": _cols(
        "observation_id:int! person_id:int! observation_concept_id:int! observation_date:date! "
        "observation_datetime:datetime observation_type_concept_id:int value_as_number:float "
        "value_as_string:str value_as_concept_id:int qualifier_concept_id:int unit_concept_id:int "
        "provider_id:int visit_occurrence_id:int visit_detail_id:int observation_source_value:str "
        "observation_source_concept_id:int unit_source_value:str qualifier_source_value:str "
        "value_source_value:str observation_event_id:int obs_event_field_concept_id:int"
    ),
    "drug_exposure": _cols(
        "drug_exposure_id:int! person_id:int! drug_concept_id:int! drug_exposure_start_date:date! "
        "drug_exposure_start_datetime:datetime drug_exposure_end_date:date! drug_exposure_end_datetime:datetime "
        "verbatim_end_date:date drug_type_concept_id:int stop_reason:str refills:int quantity:float "
        "days_supply:int sig:str route_concept_id:int lot_number:str provider_id:int visit_occurrence_id:int "
        "visit_detail_id:int drug_source_value:str drug_source_concept_id:int route_source_value:str "
        "dose_unit_source_value:str"
    ),
    "death": _cols(
        "person_id:int! death_date:date! death_datetime:datetime death_type_concept_id:int cause_concept_id:int "
        "cause_source_value:str cause_source_concept_id:int"
    ),
    "care_site": _cols(
        "care_site_id:int! care_site_name:str place_of_service_concept_id:int location_id:int "
        "care_site_source_value:str! place_of_service_source_value:str"
    ),
}
OMOP_REQUIRED_TABLES: tuple[str, ...] = (
    "person", "observation_period", "visit_occurrence", "condition_occurrence", "procedure_occurrence",
    "measurement", "observation", "drug_exposure", "death",
)
OMOP_OPTIONAL_TABLES: tuple[str, ...] = ("care_site",)

FRACTURE_SITES = ("hip", "vertebral", "forearm", "humerus", "other")
RISK_FACTORS = (
    "height_cm", "weight_kg", "fn_bmd_g_cm2", "fn_tscore", "smoking_current", "alcohol_units_day",
    "parental_hip_fracture", "falls", "glucocorticoids", "rheumatoid_arthritis", "secondary_osteoporosis",
    "osteoporosis_treatment",
)
_PK = Column("person_key", pa.string(), "keyed pseudonym of the person (tasks.privacy.person_key)",
             nullable=False, phi=PHI.PSEUDONYMOUS)

OMOP_PERSONS = Table(
    name="omop_persons",
    layer=Layer.SILVER,
    grain="one row per OMOP person",
    description=(
        "Staged OMOP persons without identifiers or birth dates: sex, site, observation period and death. "
        "person_source_value went through person_key with the same issuer as the DICOM PatientID."
    ),
    key=("person_key",),
    columns=(
        _PK,
        Column("is_female", pa.bool_(), "sex recorded female (OMOP gender 8532)"),
        Column("site", pa.string(), "care site (care_site_source_value), for site-split validation"),
        Column("observation_start_date", pa.date32(), "start of the (covering) observation period",
               nullable=False, phi=PHI.QUASI),
        Column("observation_end_date", pa.date32(), "end of the observation period", nullable=False,
               phi=PHI.QUASI),
        Column("death_date", pa.date32(), "date of death, if recorded", phi=PHI.QUASI),
        Column("n_observation_periods", pa.int32(), "observation periods of the person", nullable=False, min=1),
    ),
)

FRACTURE_EVENTS = Table(
    name="fracture_events",
    layer=Layer.SILVER,
    grain="one row per person, fracture site and date (fracture episode start)",
    description=(
        "Fractures found by the versioned phenotypes (tasks/clinical/phenotypes/*.yaml): site, whether it "
        "counts as a major osteoporotic fracture, and whether a high-trauma mechanism was coded the same day."
    ),
    key=("person_key", "event_date", "site"),
    columns=(
        _PK,
        Column("event_date", pa.date32(), "first day of the fracture episode", nullable=False, phi=PHI.QUASI),
        Column("site", pa.string(), "fracture site", nullable=False, allowed=FRACTURE_SITES),
        Column("is_mof", pa.bool_(), "hip, clinical vertebral, distal forearm or proximal humerus", nullable=False),
        Column("is_high_trauma", pa.bool_(), "a high-trauma external cause was coded the same day",
               nullable=False),
        Column("is_fragility", pa.bool_(), "fracture that counts as fragility (not high trauma)", nullable=False),
        Column("source_code", pa.string(), "ICD-10-CM (or other) source code of the first record"),
        Column("concept_id", pa.int64(), "OMOP condition_concept_id of the first record"),
        Column("phenotype", pa.string(), "phenotype name and version, e.g. hip_fracture@1.0.0", nullable=False),
    ),
)

RISK_FACTOR_RECORDS = Table(
    name="risk_factors",
    layer=Layer.SILVER,
    grain="one row per person, risk factor and record (date)",
    description=(
        "Risk-factor records found by the phenotypes: measurements (height, weight, femoral-neck BMD and "
        "T-score), observations (smoking, alcohol, parental hip fracture, falls), conditions (rheumatoid "
        "arthritis, secondary osteoporosis) and drug exposures (glucocorticoids, osteoporosis treatment)."
    ),
    key=("person_key", "factor", "start_date", "source_table"),
    columns=(
        _PK,
        Column("factor", pa.string(), "risk factor", nullable=False, allowed=RISK_FACTORS),
        Column("start_date", pa.date32(), "date of the record (start of exposure)", nullable=False,
               phi=PHI.QUASI),
        Column("end_date", pa.date32(), "end of exposure (drugs); else the start date", phi=PHI.QUASI),
        Column("value_number", pa.float64(), "numeric value (measurement, units/day, exposure days)"),
        Column("value_flag", pa.bool_(), "whether the record asserts the factor (e.g. current smoker)"),
        Column("source_table", pa.string(), "OMOP table of the record", nullable=False),
        Column("phenotype", pa.string(), "phenotype name and version", nullable=False),
    ),
)

COHORT = Table(
    name="cohort",
    layer=Layer.MARTS,
    grain="one row per person in the cohort",
    description=(
        "Persons entering at their first eligible imaging study (index), with follow-up to the first "
        "incident major osteoporotic fracture, censored at death, end of observation or data cut-off."
    ),
    key=("person_key",),
    columns=(
        _PK,
        Column("index_date", pa.date32(), "date of the index imaging study", nullable=False, phi=PHI.QUASI),
        Column("index_study_instance_uid", pa.string(), "StudyInstanceUID of the index study", nullable=False,
               phi=PHI.QUASI),
        Column("index_series_instance_uid", pa.string(), "eligible series of the index study", phi=PHI.QUASI),
        Column("site", pa.string(), "care site"),
        Column("age_at_index_years", pa.float64(), "age at index", unit="years", nullable=False, min=0, max=120,
               phi=PHI.QUASI),
        Column("is_female", pa.bool_(), "sex recorded female"),
        Column("followup_end_date", pa.date32(), "first of MOF, death, end of observation, data cut-off",
               nullable=False, phi=PHI.QUASI),
        Column("time_mof_years", pa.float64(), "index to MOF or censoring", unit="years", nullable=False, min=0),
        Column("is_event_mof", pa.bool_(), "follow-up ended with an incident MOF", nullable=False),
        Column("time_hip_years", pa.float64(), "index to hip fracture or censoring (a non-hip MOF censors)",
               unit="years", nullable=False, min=0),
        Column("is_event_hip", pa.bool_(), "follow-up ended with an incident hip fracture", nullable=False),
        Column("is_death", pa.bool_(), "follow-up ended by death", nullable=False),
        Column("mof_site", pa.string(), "site of the incident MOF", allowed=FRACTURE_SITES),
        Column("censor_reason", pa.string(), "why follow-up ended", nullable=False,
               allowed=("mof", "death", "end_of_observation", "data_cutoff")),
        Column("cohort_definition", pa.string(), "name@version of the cohort definition", nullable=False),
    ),
)

FEATURES = Table(
    name="features",
    layer=Layer.MARTS,
    grain="one row per person in the cohort, at the index date",
    description="Clinical risk factors and imaging biomarkers at the index date (no information after it).",
    key=("person_key",),
    columns=(
        _PK,
        Column("age_years", pa.float64(), "age at index", unit="years", min=0, max=120, phi=PHI.QUASI),
        Column("is_female", pa.bool_(), "sex recorded female"),
        Column("bmi_kg_m2", pa.float64(), "latest weight / latest height^2 at or before index", unit="kg/m2",
               min=8, max=90),
        Column("has_prior_fracture", pa.bool_(), "prior fragility fracture (any site, vertebral included)"),
        Column("has_parental_hip_fracture", pa.bool_(), "parent had a hip fracture"),
        Column("is_current_smoker", pa.bool_(), "latest smoking status before index is current"),
        Column("has_glucocorticoids", pa.bool_(), "oral glucocorticoids for >= 90 days before index"),
        Column("has_rheumatoid_arthritis", pa.bool_(), "rheumatoid arthritis recorded before index"),
        Column("has_secondary_osteoporosis", pa.bool_(), "a cause of secondary osteoporosis recorded"),
        Column("has_alcohol_3u", pa.bool_(), "latest alcohol intake >= 3 units/day"),
        Column("fn_bmd_g_cm2", pa.float64(), "latest femoral-neck BMD in the lookback", unit="g/cm2", min=0.1,
               max=2.0),
        Column("fn_tscore", pa.float64(), "latest femoral-neck T-score in the lookback", min=-7, max=5),
        Column("is_treated", pa.bool_(), "osteoporosis treatment started before index"),
        Column("has_falls", pa.bool_(), "history of falls recorded before index"),
        Column("l1_trabecular_hu", pa.float64(), "L1 trabecular attenuation, index series", unit="HU"),
        Column("l1_vbmd_mg_cm3", pa.float64(), "L1 volumetric BMD, index series", unit="mg/cm3"),
        Column("has_prevalent_vf", pa.bool_(), "a vertebral fracture (Genant >= 1) on the index study"),
        Column("max_genant_grade", pa.int32(), "highest Genant grade on the index study", min=0, max=3),
        Column("muscle_hu_l3", pa.float64(), "L3 skeletal muscle attenuation", unit="HU"),
        Column("muscle_area_l3_cm2", pa.float64(), "L3 skeletal muscle area", unit="cm2", min=0),
        Column("smi_cm2_m2", pa.float64(), "skeletal muscle index (L3 area / height^2)", unit="cm2/m2", min=0),
        Column("deep_risk_score", pa.float64(), "deep-model risk score of the index study"),
        Column("has_recorded_vf", pa.bool_(), "a vertebral fracture recorded in the clinical record before index"),
    ),
)

ATTRITION = Table(
    name="attrition",
    layer=Layer.MARTS,
    grain="one row per cohort step",
    description="How many persons remain after each step of the cohort definition, and how many left.",
    key=("cohort_definition", "step"),
    columns=(
        Column("cohort_definition", pa.string(), "name@version of the cohort definition", nullable=False),
        Column("step", pa.int32(), "order of the step", nullable=False, min=0),
        Column("rule", pa.string(), "what the step requires", nullable=False),
        Column("n_persons", pa.int64(), "persons remaining after the step", nullable=False, min=0),
        Column("n_excluded", pa.int64(), "persons who left at this step", nullable=False, min=0),
    ),
)

TABLES: list[Table] = [OMOP_PERSONS, FRACTURE_EVENTS, RISK_FACTOR_RECORDS, COHORT, FEATURES, ATTRITION]
