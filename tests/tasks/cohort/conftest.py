"""Fixtures: a small synthetic hospital (OMOP files + imaging series shaped like truth/series.parquet)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from synthetic.omop import write_omop
from synthetic.population import ISSUER, Patient, make_population
from tasks.clinical.source import omop_source
from tasks.clinical.staging import StagedOmop, stage_omop
from tasks.cohort.imaging import ImagingInputs, inputs_from_truth

KEY = b"cohort-test-key-0123456789"
_SERIES = {"ct_abdomen": [("ct_axial_thin", 1.0), ("ct_localizer", None)], "ct_chest": [("ct_axial_thick", 5.0)],
           "dx_spine": [("dx_lateral_spine", None)], "dxa": [("dxa_hip", None), ("dxa_spine", None)],
           "mr": [("mr", 4.0)]}


def truth_like_series(patients: list[Patient]) -> pl.DataFrame:
    """Series rows with the columns of truth/series.parquet that the cohort uses, one study per
    ``patient.studies`` entry (used when the imaging renderer's truth is not at hand)."""
    rows = []
    for p in patients:
        for s in p.studies:
            study = f"2.25.{p.index + 1}.{s.index + 1}"
            for k, (kind, slice_mm) in enumerate(_SERIES[s.kind]):
                rows.append({"patient_id": p.patient_id, "study_instance_uid": study,
                             "series_instance_uid": f"{study}.{k + 1}", "kind": kind, "slice_mm": slice_mm,
                             "study_date": s.study_date})
    return pl.DataFrame(rows, schema={"patient_id": pl.Utf8, "study_instance_uid": pl.Utf8,
                                      "series_instance_uid": pl.Utf8, "kind": pl.Utf8, "slice_mm": pl.Float64,
                                      "study_date": pl.Date})


def truth_like_vertebrae(patients: list[Patient], series: pl.DataFrame) -> pl.DataFrame:
    """L1..L3 rows for CT axial series: true HU at the study date and the latent Genant grades."""
    by_id = {p.patient_id: p for p in patients}
    rows = []
    for r in series.filter(pl.col("kind").str.starts_with("ct_axial")).iter_rows(named=True):
        p = by_id[r["patient_id"]]
        for level in ("T12", "L1", "L2", "L3"):
            f = p.fracture_at(level)
            rows.append({"series_instance_uid": r["series_instance_uid"], "level": level,
                         "trabecular_hu": p.hu_level_120(level, r["study_date"]),
                         "genant_grade": f.grade if f else 0})
    return pl.DataFrame(rows)


@pytest.fixture(scope="session")
def population() -> list[Patient]:
    return make_population(60, 11)


@pytest.fixture(scope="session")
def omop_dir(tmp_path_factory: pytest.TempPathFactory, population: list[Patient]) -> Path:
    root = tmp_path_factory.mktemp("hospital")
    write_omop(population, root / "omop", root / "truth")
    return root


@pytest.fixture(scope="session")
def staged(omop_dir: Path) -> StagedOmop:
    return stage_omop(omop_source(omop_dir / "omop"), KEY, ISSUER)


@pytest.fixture(scope="session")
def imaging(population: list[Patient]) -> ImagingInputs:
    series = truth_like_series(population)
    return inputs_from_truth(series, KEY, ISSUER, vertebrae=truth_like_vertebrae(population, series))
