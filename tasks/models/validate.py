"""Validate one model's held-out predictions: point estimates, paired bootstrap intervals, curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tasks.models import metrics as m
from tasks.models.cox import Coefficient

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Predictions:
    """A model's predictions for the validation persons."""

    lp: Array  # linear predictor (ranking score)
    risk: Array  # risk at the horizon
    cumhaz: Array  # expected cumulative hazard at each person's own truncated follow-up


@dataclass
class Validation:
    """Validation result: scalar estimates with intervals, curves, and metric rows for ``model_metrics``."""

    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    calibration_curve: tuple[Array, Array]
    decision_curve: tuple[Array, Array, Array]  # thresholds, model, treat-all
    rows: list[dict[str, Any]] = field(default_factory=list)


def scalar_metrics(
    train: m.SurvData, valid: m.SurvData, pred: Predictions, threshold: float, ref: Predictions | None
) -> dict[str, float]:
    """All scalar metrics of ``pred`` on ``valid`` (and NRI/delta C against ``ref`` when given)."""
    cal = m.calibration(valid, pred.risk, pred.cumhaz)
    out = {
        "c_harrell": m.harrell_c(valid, pred.lp),
        "c_uno": m.uno_c(train, valid, pred.lp),
        "auc_td": m.td_auc(train, valid, pred.lp),
        "brier": m.brier(train, valid, pred.risk),
        "calibration_slope": cal.slope,
        "calibration_intercept": cal.intercept,
        "oe_ratio": cal.oe_ratio,
    }
    if ref is not None:
        ev, ne = m.nri(valid, pred.risk, ref.risk, threshold)
        out["nri_events"], out["nri_nonevents"] = ev, ne
        out["delta_c_harrell"] = out["c_harrell"] - m.harrell_c(valid, ref.lp)
    return out


def _take(p: Predictions, idx: NDArray[np.int64]) -> Predictions:
    return Predictions(p.lp[idx], p.risk[idx], p.cumhaz[idx])


def validate(
    train: m.SurvData,
    valid: m.SurvData,
    pred: Predictions,
    *,
    threshold: float,
    ref: Predictions | None = None,
    ref_name: str | None = None,
    n_bootstrap: int = 100,
    seed: int = 0,
    decision_thresholds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3),
    coefficients: tuple[Coefficient, ...] = (),
) -> Validation:
    """Metrics on the validation set with percentile intervals from ``n_bootstrap`` resamples.

    The resamples are drawn from ``seed`` alone, so two models validated with the same seed share them
    (paired bootstrap for the NRI and the C difference). Hazard ratios get Wald intervals from the
    development fit (per SD for continuous predictors, per presence for 0/1 ones).
    """
    est = scalar_metrics(train, valid, pred, threshold, ref)
    rng = np.random.default_rng(seed)
    n = valid.time.size
    boot: dict[str, list[float]] = {k: [] for k in est}
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        vb = valid.take(idx)
        if not vb.event.any():
            continue
        sb = scalar_metrics(train, vb, _take(pred, idx), threshold, None if ref is None else _take(ref, idx))
        for k, v in sb.items():
            boot[k].append(v)
    intervals: dict[str, tuple[float, float]] = {}
    used = 0
    for k, vals in boot.items():
        arr = np.asarray(vals, dtype=float)
        arr = arr[np.isfinite(arr)]
        used = max(used, arr.size)
        intervals[k] = (
            (float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975))) if arr.size >= 10 else (np.nan, np.nan)
        )
    rows: list[dict[str, Any]] = []
    for k, v in est.items():
        term = ref_name if k in ("nri_events", "nri_nonevents", "delta_c_harrell") else None
        thr = threshold if k.startswith("nri") else None
        lo, hi = intervals[k]
        rows.append(_row(k, v, lo, hi, used, threshold=thr, term=term))
    curve = m.calibration_curve(valid, pred.risk)
    for i, (p, o) in enumerate(zip(*curve, strict=True)):
        rows.append(_row("calibration_predicted", p, term=f"group_{i + 1:02d}"))
        rows.append(_row("calibration_observed", o, term=f"group_{i + 1:02d}"))
    thr_arr = np.asarray(decision_thresholds, dtype=float)
    nb, nb_all = m.net_benefit(valid, pred.risk, thr_arr)
    for t, a, b in zip(thr_arr, nb, nb_all, strict=True):
        rows.append(_row("net_benefit", a, threshold=float(t)))
        rows.append(_row("net_benefit_all", b, threshold=float(t)))
    for c in coefficients:
        rows.append(
            _row(
                "hazard_ratio_per_sd", np.exp(c.estimate), np.exp(c.estimate - 1.96 * c.standard_error),
                np.exp(c.estimate + 1.96 * c.standard_error), 0, term=c.name,
            )
        )
    return Validation(est, intervals, curve, (thr_arr, nb, nb_all), rows)


def _row(
    metric: str, estimate: float, lo: float = np.nan, hi: float = np.nan, n_boot: int = 0,
    threshold: float | None = None, term: str | None = None,
) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return float(x) if x is not None and np.isfinite(x) else None

    return {
        "metric": metric, "threshold": threshold, "term": term, "estimate": clean(estimate),
        "ci_lower": clean(lo), "ci_upper": clean(hi), "n_bootstrap": int(n_boot),
    }
