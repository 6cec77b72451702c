"""Build ``cohort``, ``features`` and image crops straight from the latent patient model.

For the model benchmarks and tests only (production code never imports ``synthetic``): it stands in for
the imaging + OMOP + cohort pipeline with realistic measurement noise on each imaging feature, so the
models can be checked against the true linear predictor ``lp``.

Noise model: L1 trabecular HU +- 5 HU (SD), femoral-neck T-score +- 0.5 SD (DXA precision plus site
discordance), L3 muscle HU +- 3 HU, muscle area +- 5 cm2; prevalent vertebral fractures are found with
sensitivity 0.85 (grade 1) / 0.97 (grade >= 2) and 2% false positives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from synthetic.population import DATA_CUTOFF, ISSUER, Patient, make_population
from tasks.privacy import person_key

BENCH_KEY = b"osteolake-bench-key-0123456789"


@dataclass
class SyntheticCohort:
    """Cohort and features tables, image crops by person_key, and the true linear predictor."""

    cohort: pl.DataFrame
    features: pl.DataFrame
    images: dict[str, np.ndarray]
    lp: dict[str, float]


def _years(a: date, b: date) -> float:
    return (b - a).days / 365.25


def _crop(rng: np.random.Generator, p: Patient, hu_l1: float) -> np.ndarray:
    """Mid-sagittal crop centred on L1 (T12, L1, L2 bodies), ~1 mm pixels, HU with noise."""
    h, w = int(rng.integers(60, 69)), int(rng.integers(44, 53))
    img = 40.0 + rng.normal(0.0, 18.0, size=(h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    body_h, gap = 17.0, 5.0
    x0, x1 = w / 2 - 15.0, w / 2 + 15.0
    for k, level in enumerate(("T12", "L1", "L2")):
        top = h / 2 - body_h / 2 + (k - 1) * (body_h + gap)
        frac = p.fracture_at(level)
        loss = frac.height_loss if frac is not None else 0.0
        kind = frac.kind if frac is not None else "none"
        # Height lost along the anterior-posterior axis (x: 0 = anterior).
        rel = (xx - x0) / (x1 - x0)
        if kind == "wedge":
            lost = loss * (1.0 - rel) * 1.6
        elif kind == "biconcave":
            lost = loss * (1.0 - np.abs(rel - 0.5) * 2.0) * 1.6
        else:
            lost = np.full_like(rel, loss)
        height = body_h * (1.0 - np.clip(lost, 0.0, 0.8))
        inside = (xx >= x0) & (xx <= x1) & (yy >= top + (body_h - height)) & (yy <= top + body_h)
        hu = hu_l1 + {"T12": 4.0, "L1": 0.0, "L2": -3.0}[level]
        img[inside] = hu + rng.normal(0.0, 18.0, size=int(inside.sum()))
    return img.astype(np.float32)


def build(n: int, seed: int, with_images: bool = True) -> SyntheticCohort:
    """``n`` patients of the synthetic population as cohort/features tables (one row per person)."""
    rng = np.random.default_rng([seed, 0xB0B])
    cohort_rows, feature_rows = [], []
    images: dict[str, np.ndarray] = {}
    lps: dict[str, float] = {}
    for p in make_population(n, seed):
        assert p.outcome is not None
        key = person_key(BENCH_KEY, p.patient_id, ISSUER)
        end = p.outcome.end_date
        t = _years(p.baseline, end)
        is_mof = p.outcome.mof_date is not None
        age = p.age_at(p.baseline)
        cohort_rows.append(
            {
                "person_key": key, "index_date": p.baseline, "index_study_instance_uid": f"1.2.826.0.1.{p.index}",
                "index_series_instance_uid": f"1.2.826.0.1.{p.index}.1", "site": p.site,
                "age_at_index_years": round(age, 1), "is_female": p.female, "followup_end_date": end,
                "time_mof_years": t, "is_event_mof": is_mof, "time_hip_years": t,
                "is_event_hip": is_mof and p.outcome.mof_site == "hip",
                "is_death": p.outcome.death_date is not None and p.outcome.death_date <= DATA_CUTOFF,
            }
        )
        hu_true = p.hu_l1_120(p.baseline)
        hu = hu_true + rng.normal(0.0, 5.0)
        grade = max((f.grade for f in p.fractures), default=0)
        sens = 0.85 if grade == 1 else 0.97
        seen = grade if (grade > 0 and rng.random() < sens) else (1 if rng.random() < 0.02 else 0)
        tscore = p.dxa_tscore(p.baseline) + rng.normal(0.0, 0.5)
        area = (150.0 if not p.female else 105.0) + (18.0 if not p.female else 13.0) * p.muscle_z
        area = max(area + rng.normal(0.0, 5.0), 40.0)
        feature_rows.append(
            {
                "person_key": key, "age_years": round(age, 1), "is_female": p.female, "bmi_kg_m2": p.bmi,
                "has_prior_fracture": p.prior_fracture_date is not None,
                "has_parental_hip_fracture": p.parental_hip_fracture, "is_current_smoker": p.smoker,
                "has_glucocorticoids": p.glucocorticoids, "has_rheumatoid_arthritis": p.rheumatoid_arthritis,
                "has_secondary_osteoporosis": p.secondary_osteoporosis, "has_alcohol_3u": p.alcohol_3u,
                "fn_bmd_g_cm2": 0.858 + 0.12 * tscore, "fn_tscore": tscore, "is_treated": p.treated,
                "has_falls": p.falls, "l1_trabecular_hu": hu, "l1_vbmd_mg_cm3": 0.8 * hu + 5.0,
                "has_prevalent_vf": seen > 0, "max_genant_grade": seen,
                "muscle_hu_l3": p.muscle_hu + rng.normal(0.0, 3.0), "muscle_area_l3_cm2": area,
                "smi_cm2_m2": area / (p.height_cm / 100.0) ** 2, "deep_risk_score": None,
            }
        )
        if with_images:
            images[key] = _crop(rng, p, hu_true)
        lps[key] = p.lp
    cohort = pl.DataFrame(cohort_rows)
    features = pl.DataFrame(feature_rows, schema_overrides={"deep_risk_score": pl.Float64})
    return SyntheticCohort(cohort=cohort, features=features, images=images, lp=lps)
