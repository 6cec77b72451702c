"""CT extractor against synthetic ground truth (a few series here; bench/ct_accuracy.py runs >= 50)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.ct_accuracy import ct_cases, score, summarise, synthetic_case
from tasks.biomarkers.extract import measure_volume

N_SERIES = 6


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    rows = []
    for p, s, thick in ct_cases(N_SERIES, seed=11):
        case = synthetic_case(p, s, 11, thick=thick)
        res = measure_volume(case.volume, with_qc=False, with_fracture=False)
        tables = res.tables()
        assert tables["extraction_runs"].num_rows == 1
        rows.append(score(case, res))
    return summarise(rows)


def test_regression_bounds(summary: dict[str, Any]) -> None:
    """What the classical pipeline achieves today on these series (guards against regressions)."""
    assert summary["vertebrae"] >= 30
    assert summary["level_accuracy"] >= 0.45  # 0.50 measured on these 6 series
    assert summary["l1_mae_hu"] <= 10.0  # 5.2 HU measured
    assert summary["L3_sat_median_rel_err"] <= 0.15


@pytest.mark.xfail(strict=True, reason="issue-4 targets not reached yet: labels ~60-70% on coarse-pixel series")
def test_level_accuracy_target(summary: dict[str, Any]) -> None:
    assert summary["level_accuracy"] >= 0.98


@pytest.mark.xfail(strict=True, reason="issue-4 target not reached yet: body composition areas err ~10-18%")
def test_body_composition_target(summary: dict[str, Any]) -> None:
    for key in ("L3_muscle_median_rel_err", "L3_vat_median_rel_err", "L3_sat_median_rel_err"):
        assert summary[key] <= 0.05


@pytest.mark.xfail(strict=True, reason="issue-4 target not reached yet: L1 MAE ~5-9 HU, some L1 ROIs empty")
def test_l1_mae_target(summary: dict[str, Any]) -> None:
    assert np.isfinite(summary["l1_mae_hu"])
    assert summary["l1_mae_hu"] <= 5.0 and summary["l1_missing"] == 0
