"""Clinical record and cohort: OMOP CDM in, fracture events, risk factors, cohort, features, attrition out.

Reads the OMOP CDM v5.4 source (a folder of CSV/Parquet or ``postgresql://...[?schema=cdm]``) and the imaging
tables of the snapshot being built (``series``, ``vertebra_measurements``, ``vertebral_fractures``,
``body_composition``, ``deep_risk``). Writes ``omop_persons``, ``fracture_events`` and ``risk_factors``
(replaced: the clinical record is re-read in full each night) and ``cohort``, ``features``, ``attrition``
(gold: rebuilt from the new snapshot; the same inputs give the same cohort). Needs the pseudonymisation key
and the issuer of the site's MRNs (``OSTEOLAKE_ISSUER``) so that OMOP persons join their images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from flows.frames import read_frame
from tasks.clinical.fractures import fracture_events
from tasks.clinical.risk_factors import risk_factor_records
from tasks.clinical.source import OmopValidationError, omop_source, read_all
from tasks.clinical.staging import StagedOmop, stage_omop
from tasks.cohort.build import build_cohort
from tasks.cohort.definition import load_definition
from tasks.cohort.imaging import ImagingInputs
from tasks.quality.gate import check_omop_input
from tasks.quality.results import CheckKind, CheckResult, Severity
from warehouse.lake import SnapshotBuilder


@dataclass
class ClinicalStage:
    """The staged record for the cohort, or ``None`` when the OMOP input was unusable (see ``checks``)."""

    staged: StagedOmop | None
    fractures: pl.LazyFrame | None
    risk_records: pl.LazyFrame | None
    counts: dict[str, Any] = field(default_factory=dict)
    checks: list[Any] = field(default_factory=list)


def run_clinical(builder: SnapshotBuilder, omop: str, key: bytes, *, issuer: str | None) -> ClinicalStage:
    """Read, check and stage the OMOP source; write the clinical silver tables to ``builder``."""
    from schemas import get_table

    try:
        frames = {name: lf.collect() for name, lf in read_all(omop_source(omop)).items()}
    except (OmopValidationError, FileNotFoundError) as e:
        # Unusable input is a critical data-quality failure: the run reports it and does not publish.
        failure = CheckResult(
            table="omop", check="omop_input_is_readable", severity=Severity.CRITICAL, success=False,
            kind=CheckKind.OMOP, details=str(e)[:2000], stage="clinical",
        )
        return ClinicalStage(None, None, None, counts={"error": str(e)[:200]}, checks=[failure])
    checks = list(check_omop_input(frames))
    staged = stage_omop(frames, key, issuer)
    checks += staged.issues
    fractures = fracture_events(staged).collect()
    risks = risk_factor_records(staged).collect()
    persons = staged.persons_table()
    builder.replace("omop_persons", persons)
    builder.replace("fracture_events", get_table("fracture_events").conform(fractures.to_arrow()))
    builder.replace("risk_factors", get_table("risk_factors").conform(risks.to_arrow()))
    return ClinicalStage(
        staged=staged,
        fractures=fractures.lazy(),
        risk_records=risks.lazy(),
        counts={"persons": persons.num_rows, "fracture_events": fractures.height, "risk_factors": risks.height},
        checks=checks,
    )


def run_cohort(builder: SnapshotBuilder, definition_path: Path | None, clinical: ClinicalStage) -> dict[str, Any]:
    """Build ``cohort``, ``features`` and ``attrition`` from the staged record and the imaging tables."""
    if clinical.staged is None:
        return {"skipped": "no usable clinical record"}
    imaging = ImagingInputs(
        series=read_frame(builder, "series"),
        vertebra_measurements=read_frame(builder, "vertebra_measurements"),
        vertebral_fractures=read_frame(builder, "vertebral_fractures"),
        body_composition=read_frame(builder, "body_composition"),
        deep_risk=read_frame(builder, "deep_risk"),
    )
    result = build_cohort(
        clinical.staged, imaging, load_definition(definition_path),
        fractures=clinical.fractures, risk_records=clinical.risk_records,
    )
    builder.replace("cohort", result.cohort)
    builder.replace("features", result.features)
    builder.replace("attrition", result.attrition)
    cohort = pl.from_arrow(result.cohort)
    assert isinstance(cohort, pl.DataFrame)
    return {
        "persons": cohort.height,
        "mof_events": int(cohort["is_event_mof"].sum()) if cohort.height else 0,
        "hip_events": int(cohort["is_event_hip"].sum()) if cohort.height else 0,
        "definition": result.definition.label if hasattr(result.definition, "label") else "",
    }
