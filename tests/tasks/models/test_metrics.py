"""Validation metrics against lifelines, scikit-survival and closed forms on uncensored data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc

from tasks.models import metrics as m


def _sim(n: int, seed: int, beta: float = 0.8, censor: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(1.0 / (0.08 * np.exp(beta * x)))
    c = rng.uniform(2, 15, size=n) if censor else np.full(n, np.inf)
    return x, np.minimum(t, c), t <= c


def test_cox_slope_matches_lifelines() -> None:
    x, t, e = _sim(400, 1)
    d = m.truncate(t, e, 10.0)
    cph = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": d.time, "e": d.event}), "t", "e")
    assert m.cox_slope(d, x) == pytest.approx(float(cph.params_["x"]), abs=1e-4)


def test_harrell_c_matches_lifelines_and_uno_c_matches_sksurv() -> None:
    x, t, e = _sim(300, 2)
    d = m.truncate(t, e, 10.0)
    assert m.harrell_c(d, x) == pytest.approx(concordance_index(d.time, -x, d.event), abs=1e-9)
    tr = m.truncate(*_sim(300, 3)[1:], 10.0)
    ref = concordance_index_ipcw(tr.surv(), d.surv(), x, tau=np.nextafter(10.0, 0))[0]
    assert m.uno_c(tr, d, x) == pytest.approx(ref, abs=1e-12)
    auc, _ = cumulative_dynamic_auc(tr.surv(), d.surv(), x, [np.nextafter(10.0, 0)])
    assert m.td_auc(tr, d, x) == pytest.approx(float(auc[0]), abs=1e-12)


def test_uno_equals_harrell_and_brier_is_plain_without_censoring() -> None:
    x, t, e = _sim(300, 4, censor=False)
    d = m.truncate(t, e, 10.0)  # censoring only at the horizon: IPCW weights are constant before it
    assert m.uno_c(d, d, x) == pytest.approx(m.harrell_c(d, x), abs=0.01)
    risk = 1 / (1 + np.exp(-x))
    assert m.brier(d, d, risk) == pytest.approx(np.mean((d.event - risk) ** 2), abs=1e-9)


def test_km_risk_matches_lifelines() -> None:
    _, t, e = _sim(300, 5)
    d = m.truncate(t, e, 8.0)
    km = KaplanMeierFitter().fit(t, e)
    assert m.km_risk(d) == pytest.approx(1 - float(km.survival_function_at_times(8.0).iloc[0]), abs=1e-9)


def test_calibration_of_true_and_overconfident_risks() -> None:
    rng = np.random.default_rng(6)
    n, h = 4000, 10.0
    lp = rng.normal(0, 0.8, n)
    rate = 0.03 * np.exp(lp)
    t = rng.exponential(1 / rate)
    c = rng.uniform(5, 20, n)
    d = m.truncate(np.minimum(t, c), t <= c, h)
    risk = 1 - np.exp(-rate * h)
    cal = m.calibration(d, risk, rate * d.time)
    assert cal.slope == pytest.approx(1.0, abs=0.1)
    assert cal.intercept == pytest.approx(0.0, abs=0.08)
    assert cal.oe_ratio == pytest.approx(1.0, abs=0.08)
    rate2 = 0.03 * np.exp(2 * lp)  # twice the true spread: slope should halve
    cal2 = m.calibration(d, 1 - np.exp(-rate2 * h), rate2 * d.time)
    assert cal2.slope == pytest.approx(0.5, abs=0.06)
    rate3 = 2 * rate  # twice the risk everywhere: O/E about 1/2 on the cumulative-hazard scale
    cal3 = m.calibration(d, 1 - np.exp(-rate3 * h), rate3 * d.time)
    assert cal3.intercept == pytest.approx(np.log(0.5), abs=0.08)


def test_nri_and_net_benefit_reduce_to_counts_without_censoring() -> None:
    rng = np.random.default_rng(7)
    n = 500
    ev = rng.random(n) < 0.3
    d = m.SurvData(np.where(ev, 3.0, 10.0), ev, 10.0)
    old = np.clip(0.2 + rng.normal(0, 0.1, n), 0.01, 0.99)
    new = np.clip(old + np.where(ev, 0.08, -0.05) + rng.normal(0, 0.05, n), 0.01, 0.99)
    up, down = (new >= 0.2) & (old < 0.2), (new < 0.2) & (old >= 0.2)
    nri_e, nri_ne = m.nri(d, new, old, 0.2)
    assert nri_e == pytest.approx(up[ev].mean() - down[ev].mean(), abs=1e-9)
    assert nri_ne == pytest.approx(down[~ev].mean() - up[~ev].mean(), abs=1e-9)
    nb, nb_all = m.net_benefit(d, new, np.array([0.1, 0.2, 0.3]))
    for pt, got in zip((0.1, 0.2, 0.3), nb, strict=True):
        tp, fp = np.sum((new >= pt) & ev) / n, np.sum((new >= pt) & ~ev) / n
        assert got == pytest.approx(tp - fp * pt / (1 - pt), abs=1e-9)
    assert nb_all[1] == pytest.approx(ev.mean() - (1 - ev.mean()) * 0.25, abs=1e-9)


def test_truncate_rejects_negative_times() -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        m.truncate(np.array([1.0, -1.0]), np.array([True, False]), 5.0)
