"""Validation metrics of a survival model at a horizon.

Discrimination (Harrell's C, Uno's C, time-dependent AUC) and the Brier score come from scikit-survival;
the calibration slope is the coefficient of a one-covariate Cox model (checked against lifelines in the
tests). Calibration intercept and O/E, the survival NRI and the decision curve have no well-kept Python
implementation, so they are written here from their published definitions (Crowson 2016, Pencina 2011,
Vickers 2008) and each says which.

All functions take follow-up already truncated at the horizon (``time <= horizon``, events after the
horizon censored at it); see :func:`truncate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

Array = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class SurvData:
    """Follow-up truncated at ``horizon``: ``time`` (years) and ``event`` (bool) per person."""

    time: Array
    event: BoolArray
    horizon: float

    def __post_init__(self) -> None:
        if self.time.shape != self.event.shape:
            raise ValueError(f"time {self.time.shape} and event {self.event.shape} differ in shape")

    def take(self, idx: NDArray[np.int64]) -> SurvData:
        return SurvData(self.time[idx], self.event[idx], self.horizon)

    def surv(self) -> NDArray[np.void]:
        return Surv.from_arrays(event=self.event, time=self.time)  # type: ignore[no-any-return]


def truncate(time: Array, event: BoolArray, horizon: float) -> SurvData:
    """Administrative censoring at ``horizon``: events after it become censored at it."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("follow-up times must be finite and >= 0")
    return SurvData(np.minimum(t, horizon), e & (t <= horizon), float(horizon))


def km_risk(data: SurvData, at: float | None = None) -> float:
    """Kaplan-Meier cumulative incidence (1 - S) at ``at`` (default: the horizon)."""
    if data.time.size == 0:
        return float("nan")
    t_at = data.horizon if at is None else at
    times, surv = kaplan_meier_estimator(data.event, data.time)
    idx = np.searchsorted(times, t_at, side="right") - 1
    return float(1.0 - surv[idx]) if idx >= 0 else 0.0


def harrell_c(data: SurvData, score: Array) -> float:
    """Harrell's C of ``score`` (higher = higher risk); NaN when no pair is comparable."""
    if not data.event.any():
        return float("nan")
    return float(concordance_index_censored(data.event, data.time, score)[0])


def _tau(train: SurvData, test: SurvData) -> float:
    # scikit-survival needs the evaluation time strictly inside both follow-up ranges.
    hi = min(test.time.max(), train.time.max(), test.horizon)
    return float(np.nextafter(hi, 0.0)) if hi >= test.horizon else float(hi)


def uno_c(train: SurvData, test: SurvData, score: Array) -> float:
    """Uno's IPCW C up to the horizon (censoring distribution from ``train``)."""
    if not test.event.any():
        return float("nan")
    try:
        return float(concordance_index_ipcw(train.surv(), test.surv(), score, tau=_tau(train, test))[0])
    except ValueError:
        return float("nan")


def td_auc(train: SurvData, test: SurvData, score: Array) -> float:
    """Cumulative/dynamic AUC at the horizon (IPCW, censoring from ``train``)."""
    if not test.event.any() or test.event.all():
        return float("nan")
    try:
        auc, _ = cumulative_dynamic_auc(train.surv(), test.surv(), score, [_tau(train, test)])
    except ValueError:
        return float("nan")
    return float(np.asarray(auc).ravel()[0])


def brier(train: SurvData, test: SurvData, risk: Array) -> float:
    """IPCW Brier score at the horizon of predicted risk ``risk`` (= 1 - survival)."""
    try:
        _, score = brier_score(train.surv(), test.surv(), (1.0 - risk)[:, None], [_tau(train, test)])
    except ValueError:
        return float("nan")
    return float(np.asarray(score).ravel()[0])


def cox_slope(data: SurvData, x: Array, max_iter: int = 50) -> float:
    """Coefficient of ``x`` in a one-covariate Cox model (Breslow ties) by Newton-Raphson.

    Written out here because it runs inside every bootstrap resample, where a lifelines fit costs ~50x
    more; the tests check it against ``lifelines.CoxPHFitter``.
    """
    if not data.event.any():
        return float("nan")
    order = np.argsort(data.time, kind="stable")
    t, e, xs = data.time[order], data.event[order], x[order]
    start = np.searchsorted(t, t[e], side="left")  # first index of each event's risk set
    xe = xs[e]
    b = 0.0
    for _ in range(max_iter):
        w = np.exp(np.clip(b * xs, -700, 700))
        s0 = np.cumsum(w[::-1])[::-1][start]
        s1 = np.cumsum((w * xs)[::-1])[::-1][start]
        s2 = np.cumsum((w * xs * xs)[::-1])[::-1][start]
        m1 = s1 / s0
        grad = float(np.sum(xe - m1))
        info = float(np.sum(s2 / s0 - m1 * m1))
        if info <= 1e-12:
            return float("nan")
        step = grad / info
        b += float(np.clip(step, -5, 5))
        if abs(step) < 1e-9:
            break
    return b


def cloglog(risk: Array) -> Array:
    """log(-log(1 - risk)), the scale on which a Cox model is linear."""
    r = np.clip(risk, 1e-10, 1 - 1e-10)
    return np.asarray(np.log(-np.log1p(-r)), dtype=float)


@dataclass(frozen=True)
class Calibration:
    """Calibration at the horizon: slope, intercept (log O/E of cumulative hazards) and O/E of risk."""

    slope: float
    intercept: float
    oe_ratio: float


def calibration(data: SurvData, risk: Array, cumhaz: Array) -> Calibration:
    """Calibration of predicted ``risk`` at the horizon.

    Parameters
    ----------
    data
        Validation follow-up, truncated at the horizon.
    risk
        Predicted risk at the horizon per person.
    cumhaz
        Predicted cumulative hazard at each person's own (truncated) follow-up time.

    Notes
    -----
    slope: Cox regression of the outcome on cloglog(risk) (Royston & Altman 2013); 1 is ideal.
    intercept: Poisson calibration-in-the-large with the expected cumulative hazard as offset (Crowson
    2016), which has the closed form log(events / sum(cumhaz)); 0 is ideal.
    oe_ratio: Kaplan-Meier risk at the horizon over the mean predicted risk; 1 is ideal.
    """
    slope = cox_slope(data, cloglog(risk))
    expected = float(np.sum(cumhaz))
    n_events = int(data.event.sum())
    intercept = float(np.log(n_events / expected)) if n_events > 0 and expected > 0 else float("nan")
    mean_risk = float(np.mean(risk))
    oe = km_risk(data) / mean_risk if mean_risk > 0 else float("nan")
    return Calibration(slope=slope, intercept=intercept, oe_ratio=oe)


def calibration_curve(data: SurvData, risk: Array, groups: int = 10) -> tuple[Array, Array]:
    """Mean predicted and Kaplan-Meier observed risk per quantile group of predicted risk."""
    groups = max(1, min(groups, int(data.time.size // 10) or 1))
    edges = np.quantile(risk, np.linspace(0, 1, groups + 1))
    label = np.clip(np.searchsorted(edges[1:-1], risk, side="right"), 0, groups - 1)
    pred, obs = [], []
    for g in range(groups):
        m = label == g
        if m.sum() == 0:
            continue
        pred.append(float(risk[m].mean()))
        obs.append(km_risk(SurvData(data.time[m], data.event[m], data.horizon)))
    return np.asarray(pred), np.asarray(obs)


def _km_risk_subset(data: SurvData, mask: BoolArray) -> float:
    if not mask.any():
        return 0.0
    return km_risk(SurvData(data.time[mask], data.event[mask], data.horizon))


def nri(data: SurvData, risk_new: Array, risk_old: Array, threshold: float) -> tuple[float, float]:
    """Event and non-event NRI at one risk threshold, for censored data (Pencina 2011, KM form).

    Returns ``(nri_events, nri_nonevents)``: net proportion of persons with an event by the horizon moved
    up across ``threshold``, and net proportion of persons without one moved down. Written here from the
    published formula (no maintained Python implementation).
    """
    n = data.time.size
    up = (risk_new >= threshold) & (risk_old < threshold)
    down = (risk_new < threshold) & (risk_old >= threshold)
    p_event = km_risk(data)
    if n == 0 or not 0 < p_event < 1:
        return float("nan"), float("nan")
    p_up, p_down = up.mean(), down.mean()
    ev_up = _km_risk_subset(data, up) * p_up / p_event
    ev_down = _km_risk_subset(data, down) * p_down / p_event
    ne_up = (1 - _km_risk_subset(data, up)) * p_up / (1 - p_event)
    ne_down = (1 - _km_risk_subset(data, down)) * p_down / (1 - p_event)
    return float(ev_up - ev_down), float(ne_down - ne_up)


def net_benefit(data: SurvData, risk: Array, thresholds: Array) -> tuple[Array, Array]:
    """Decision curve: net benefit of treating persons with risk >= pt, and of treating all.

    Survival form of Vickers (2008): true positives are Kaplan-Meier events by the horizon among those
    above the threshold. Returns ``(model, treat_all)`` arrays aligned with ``thresholds``.
    """
    p_all = km_risk(data)
    model, treat_all = [], []
    for pt in np.asarray(thresholds, dtype=float):
        above = risk >= pt
        frac = above.mean()
        r = _km_risk_subset(data, above)
        odds = pt / (1 - pt)
        model.append(r * frac - (1 - r) * frac * odds)
        treat_all.append(p_all - (1 - p_all) * odds)
    return np.asarray(model), np.asarray(treat_all)
