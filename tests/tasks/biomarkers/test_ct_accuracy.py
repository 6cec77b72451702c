"""CT extractor against synthetic ground truth (8 series here; bench/ct_accuracy.py runs >= 50).

The series are the first 8 of the bench's fixed set (clinical scanner mix: mostly 512x512, 1-5 mm slices,
kVp 80-140, contrast phases, four vendors); rendered volumes are cached under ``.bench/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.ct_accuracy import ct_cases, score, summarise, synthetic_case
from tasks.biomarkers.extract import measure_volume

N_SERIES = 8


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    rows = []
    for p, s, thick in ct_cases(N_SERIES, seed=11):
        case = synthetic_case(p, s, 11, thick=thick, mix="clinical")
        res = measure_volume(case.volume, with_qc=False, with_fracture=False)
        tables = res.tables()
        assert tables["extraction_runs"].num_rows == 1
        rows.append(score(case, res))
    return summarise(rows)


def test_level_accuracy_target(summary: dict[str, Any]) -> None:
    """Issue 4: >= 98% of vertebrae labelled correctly (within 10 mm of the true centre)."""
    assert summary["vertebrae"] >= 50
    assert summary["level_accuracy"] >= 0.98


def test_l1_mae_target(summary: dict[str, Any]) -> None:
    """Issue 4: L1 trabecular HU MAE <= 5 HU, and L1 measured on every series that covers it."""
    assert np.isfinite(summary["l1_mae_hu"])
    assert summary["l1_mae_hu"] <= 5.0 and summary["l1_missing"] == 0


def test_adipose_areas_target(summary: dict[str, Any]) -> None:
    """VAT and SAT at L3 within 5% (median relative error)."""
    assert summary["L3_vat_median_rel_err"] <= 0.05
    assert summary["L3_sat_median_rel_err"] <= 0.05


def test_muscle_area_regression_bound(summary: dict[str, Any]) -> None:
    """Muscle at L3: what the classical segmentation achieves today (guards against regressions)."""
    assert summary["L3_muscle_median_rel_err"] <= 0.12


@pytest.mark.xfail(strict=True, reason="issue-4 target not reached yet: L3 muscle area median error ~6% "
                   "(kidney/bowel touching psoas and QL are not separated reliably)")
def test_muscle_area_target(summary: dict[str, Any]) -> None:
    assert summary["L3_muscle_median_rel_err"] <= 0.05
