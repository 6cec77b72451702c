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
        res = measure_volume(case.volume, with_qc=False, with_fracture=False, with_texture=False)
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
    """Issue 4: VAT and SAT at L3 within 5%: median relative error, and the share of series within 5%."""
    assert summary["L3_vat_median_rel_err"] <= 0.05
    assert summary["L3_sat_median_rel_err"] <= 0.02  # the skin partial-volume rim is counted
    assert summary["L3_vat_within5pct"] >= 0.75
    assert summary["L3_sat_within5pct"] >= 0.95


def test_muscle_area_target(summary: dict[str, Any]) -> None:
    """Issue 4: L3 muscle area within 5% (median), most series within 5% (kidney and bowel touching psoas
    and quadratus lumborum split off by the distance-transform watershed; bowel loops against the front of
    the vertebral body are not psoas). On these 8 series: median 1.6%, 8/8 within 5%."""
    assert summary["L3_muscle_median_rel_err"] <= 0.02
    assert summary["L3_muscle_within5pct"] >= 0.875


def test_l1_body_composition_bounds(summary: dict[str, Any]) -> None:
    """L1 (kidneys, liver and spleen against the posterior muscles): adipose within 5%; muscle median 1.0%
    and 6/8 series within 5% here (a kidney merged with the quadratus lumborum counts behind the
    vertebral body only)."""
    assert summary["L1_vat_median_rel_err"] <= 0.05
    assert summary["L1_sat_median_rel_err"] <= 0.02
    assert summary["L1_muscle_median_rel_err"] <= 0.03
    assert summary["L1_muscle_within5pct"] >= 0.75


def test_fracture_and_texture_rows_come_with_the_extraction() -> None:
    """``CTResult.tables()`` carries CT vertebral-fracture and texture rows; the fracture rows are the
    assessment behind the JSON (computed once), and the heights are close to the synthetic truth."""
    p, s, thick = ct_cases(1, seed=11)[0]
    case = synthetic_case(p, s, 11, thick=thick, mix="clinical")
    res = measure_volume(case.volume, with_qc=False)
    tables = res.tables()
    frac, tex = tables["vertebral_fractures"], tables["texture"]
    out = res.to_json()
    levels = [v["level"] for v in out["vertebrae"]]
    assert frac.column("level").to_pylist() == [a.level for a in res.assessments] == levels
    assert set(frac.column("source").to_pylist()) == {"ct"}
    by_json = {v["level"]: v["height_posterior_mm"] for v in out["vertebrae"]}
    for lv, h in zip(frac.column("level").to_pylist(), frac.column("height_posterior_mm").to_pylist(), strict=True):
        assert h is None or abs(round(h, 2) - by_json[lv]) < 1e-6
    truth = {r["level"]: r["height_posterior_mm"] for r in case.vertebrae}
    errs = [abs(h - truth[lv]) for lv, h in zip(frac.column("level").to_pylist(),
                                                frac.column("height_posterior_mm").to_pylist(), strict=True)
            if h is not None and lv in truth]
    assert errs and float(np.median(errs)) <= 2.0  # mm
    assert tex.num_rows == len(levels) and set(tex.column("region").to_pylist()) == set(levels)
    assert all(c is not None for c in tex.column("glcm_contrast").to_pylist())
