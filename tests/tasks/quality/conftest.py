"""Small declared tables and OMOP frames for the quality tests (built here, independent of the real
declarations, which other modules are still adding)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from schemas.core import PHI, Column, Layer, Table

STUDIES = Table(
    name="studies", layer=Layer.BRONZE, grain="one row per study", description="test studies",
    columns=(
        Column("study_instance_uid", pa.string(), "study", nullable=False, phi=PHI.QUASI),
        Column("person_key", pa.string(), "person", nullable=False, phi=PHI.PSEUDONYMOUS),
        Column("age_at_study_years", pa.float64(), "age", min=0, max=120, phi=PHI.QUASI),
    ),
    key=("study_instance_uid",),
)
SERIES = Table(
    name="series", layer=Layer.BRONZE, grain="one row per series", description="test series",
    columns=(
        Column("series_instance_uid", pa.string(), "series", nullable=False, phi=PHI.QUASI),
        Column("study_instance_uid", pa.string(), "study", nullable=False, phi=PHI.QUASI),
        Column("modality", pa.string(), "modality", allowed=("CT", "DX", "MR")),
        Column("n_instances", pa.int32(), "files", min=1),
    ),
    key=("series_instance_uid",),
)
VERTEBRA = Table(
    name="vertebra_measurements", layer=Layer.SILVER, grain="one row per series and level",
    description="test measurements",
    columns=(
        Column("series_instance_uid", pa.string(), "series", nullable=False, phi=PHI.QUASI),
        Column("level", pa.string(), "level", nullable=False, allowed=("T12", "L1", "L2", "L3")),
        Column("trabecular_hu_mean", pa.float64(), "HU", unit="HU", min=-1000, max=3000),
    ),
    key=("series_instance_uid", "level"),
)
DECLARED = {t.name: t for t in (STUDIES, SERIES, VERTEBRA)}


@pytest.fixture
def declared() -> dict[str, Table]:
    return dict(DECLARED)


@pytest.fixture
def clean_tables() -> dict[str, pa.Table]:
    """Consistent studies, series and measurements: every check passes on them."""
    studies = pa.table({
        "study_instance_uid": ["1.2.1", "1.2.2"],
        "person_key": ["a" * 32, "b" * 32],
        "age_at_study_years": [61.5, 74.0],
    }, schema=STUDIES.arrow_schema())
    series = pa.table({
        "series_instance_uid": ["1.2.1.1", "1.2.1.2", "1.2.2.1"],
        "study_instance_uid": ["1.2.1", "1.2.1", "1.2.2"],
        "modality": ["CT", "CT", "DX"],
        "n_instances": pa.array([120, 3, 1], pa.int32()),
    }, schema=SERIES.arrow_schema())
    vm = pa.table({
        "series_instance_uid": ["1.2.1.1"] * 4 + ["1.2.2.1"] * 2,
        "level": ["T12", "L1", "L2", "L3", "L1", "L2"],
        "trabecular_hu_mean": [165.0, 158.0, 150.0, 141.0, 96.0, None],
    }, schema=VERTEBRA.arrow_schema())
    return {"studies": studies, "series": series, "vertebra_measurements": vm}


@pytest.fixture
def omop_frames() -> dict[str, pa.Table]:
    """A tiny, plausible OMOP CDM extract (three persons, one death)."""
    return {
        "person": pa.table({
            "person_id": [1, 2, 3], "gender_concept_id": [8532, 8507, 8532], "year_of_birth": [1950, 1942, 1961],
            "month_of_birth": [5, None, 11], "day_of_birth": [17, None, 2],
            "race_concept_id": [0, 0, 0], "ethnicity_concept_id": [0, 0, 0],
            "person_source_value": ["MRN001", "MRN002", "MRN003"],
        }),
        "observation_period": pa.table({
            "observation_period_id": [1, 2, 3], "person_id": [1, 2, 3],
            "observation_period_start_date": [date(2010, 1, 1), date(2011, 3, 1), date(2012, 6, 1)],
            "observation_period_end_date": [date(2026, 6, 30), date(2020, 2, 1), date(2026, 6, 30)],
            "period_type_concept_id": [32817] * 3,
        }),
        "condition_occurrence": pa.table({
            "condition_occurrence_id": [10, 11, 12], "person_id": [1, 2, 3],
            "condition_concept_id": [4300192, 4138412, 80502],
            "condition_start_date": ["2015-04-02", "2018-09-30", "2019-01-15"],
            "condition_end_date": [None, None, "2019-03-01"],
            "condition_type_concept_id": [32020] * 3,
        }),
        "visit_occurrence": pa.table({
            "visit_occurrence_id": [100, 101], "person_id": [1, 2], "visit_concept_id": [9202, 9201],
            "visit_start_date": [date(2015, 4, 2), date(2019, 12, 1)],
            "visit_end_date": [date(2015, 4, 2), date(2019, 12, 5)], "visit_type_concept_id": [32817, 32817],
        }),
        "measurement": pa.table({
            "measurement_id": [1000, 1001], "person_id": [1, 3], "measurement_concept_id": [3025315, 3036277],
            "measurement_date": [date(2016, 1, 1), date(2020, 1, 1)], "measurement_type_concept_id": [32817] * 2,
            "value_as_number": [61.0, 158.0],
        }),
        "death": pa.table({"person_id": [2], "death_date": [date(2020, 2, 1)]}),
    }
